using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Grpc;

/// <summary>Translations between the stored rows and the API's messages.</summary>
internal static class Mapping
{
    public static Timestamp ToTimestamp(this DateTimeOffset value) => Timestamp.FromDateTimeOffset(value);

    /// <summary>The receipt of an entry just written: its id, hash and chain.</summary>
    public static V1.Receipt ToReceipt(this JournalEntryRow entry) => new()
    {
        EntryId = entry.Id,
        EntryHash = Google.Protobuf.ByteString.CopyFrom(entry.Hash),
        ChainKey = entry.ChainKey,
    };

    public static string ToApiDate(this DateOnly date) => date.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    public static V1.Standing ToApi(this PartyStanding standing) => standing switch
    {
        PartyStanding.Good => V1.Standing.Good,
        PartyStanding.Suspended => V1.Standing.Suspended,
        PartyStanding.Blacklisted => V1.Standing.Blacklisted,
        _ => V1.Standing.Unspecified,
    };

    /// <summary>The standing a request names; STANDING_UNSPECIFIED is <paramref name="unspecified"/> where the call has a
    /// default (ClawBack: BLACKLISTED) and refused where it has none (SetStanding).</summary>
    public static PartyStanding FromApi(this V1.Standing standing, PartyStanding? unspecified) => standing switch
    {
        V1.Standing.Good => PartyStanding.Good,
        V1.Standing.Suspended => PartyStanding.Suspended,
        V1.Standing.Blacklisted => PartyStanding.Blacklisted,
        V1.Standing.Unspecified when unspecified is { } fallback => fallback,
        _ => throw new LedgerException(Reason.InvalidArgument, "standing must be GOOD, SUSPENDED or BLACKLISTED."),
    };

    public static V1.UnitKind ToApi(this UnitKind kind) => kind switch
    {
        UnitKind.Enterprise => V1.UnitKind.Enterprise,
        UnitKind.ResearchInstitute => V1.UnitKind.ResearchInstitute,
        UnitKind.University => V1.UnitKind.University,
        UnitKind.OpcOperator => V1.UnitKind.OpcOperator,
        _ => V1.UnitKind.Unspecified,
    };

    public static UnitKind? FromApi(this V1.UnitKind kind) => kind switch
    {
        V1.UnitKind.Enterprise => UnitKind.Enterprise,
        V1.UnitKind.ResearchInstitute => UnitKind.ResearchInstitute,
        V1.UnitKind.University => UnitKind.University,
        V1.UnitKind.OpcOperator => UnitKind.OpcOperator,
        _ => null,
    };

    public static V1.AccountKind ToApi(this AccountKind kind) => kind switch
    {
        AccountKind.Funding => V1.AccountKind.Funding,
        AccountKind.Pool => V1.AccountKind.Pool,
        AccountKind.Grant => V1.AccountKind.Grant,
        AccountKind.Deducted => V1.AccountKind.Deducted,
        AccountKind.Pending => V1.AccountKind.Pending,
        AccountKind.Redeemed => V1.AccountKind.Redeemed,
        AccountKind.Disbursed => V1.AccountKind.Disbursed,
        AccountKind.Receivable => V1.AccountKind.Receivable,
        AccountKind.Settled => V1.AccountKind.Settled,
        _ => V1.AccountKind.Unspecified,
    };

    public static V1.EntryKind ToApi(this EntryKind kind) => kind switch
    {
        EntryKind.Funding => V1.EntryKind.Funding,
        EntryKind.Grant => V1.EntryKind.Grant,
        EntryKind.Deduction => V1.EntryKind.Deduction,
        EntryKind.Expiry => V1.EntryKind.Expiry,
        EntryKind.Release => V1.EntryKind.Release,
        EntryKind.Gift => V1.EntryKind.Gift,
        EntryKind.RedemptionSubmitted => V1.EntryKind.RedemptionSubmitted,
        EntryKind.RedemptionReviewed => V1.EntryKind.RedemptionReviewed,
        EntryKind.Disbursement => V1.EntryKind.Disbursement,
        EntryKind.ClawBack => V1.EntryKind.ClawBack,
        EntryKind.YearSettlement => V1.EntryKind.YearSettlement,
        _ => V1.EntryKind.Unspecified,
    };

    public static V1.Provider ToApi(this ProviderRow row) => new()
    {
        ProviderUscc = row.Uscc,
        Name = row.Name,
        Licences = { row.Licences },
        Standing = row.Standing.ToApi(),
        RegisteredAt = row.RegisteredAt.ToTimestamp(),
    };

    public static V1.Contract ToApi(this ContractRow row) => new()
    {
        ContractNo = row.ContractNo,
        ProviderUscc = row.ProviderUscc,
        UnitUscc = row.UnitUscc,
        Accelerator = row.Accelerator,
        SelfControllable = row.SelfControllable,
        ServiceMode = (V1.ServiceMode)row.ServiceMode,
        UnitPriceFen = row.UnitPriceFen,
        AmountFen = row.AmountFen,
        Purpose = row.Purpose,
        UsesInnovationVoucher = row.UsesInnovationVoucher,
        SignedOn = row.SignedOn.ToApiDate(),
        GrantedFen = row.GrantedFen,
        InvoicedFen = row.InvoicedFen,
        RegisteredAt = row.RegisteredAt.ToTimestamp(),
    };
}
