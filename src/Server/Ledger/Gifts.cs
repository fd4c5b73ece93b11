using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Registry;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;
using ResidencyStatus = QuotaLedger.Server.Storage.ResidencyStatus;
using UnitKind = QuotaLedger.Server.Storage.UnitKind;

namespace QuotaLedger.Server.Ledger;

/// <summary>The one transfer the measures allow (Art 15): an OPC community operator gives open quota of its grant to
/// a resident one-person company on its list. The operator's status and the residency are confirmed by the bureau, and
/// the resident is approved by the grant's provider and not related to it, as a grant's unit would be. The resident's
/// new grant keeps the original's provider, contract, ratio, year and expiry; the operator's unit-year commitment goes
/// down and the resident's goes up, within its cap.</summary>
internal static class Gifts
{
    public static async Task<GiftResponse> GiveAsync(LedgerDb db, DateTimeOffset now, string requestId, string by,
        string operatorUscc, long grantId, string residentUscc, Fen amount, CancellationToken ct)
    {
        var operatorKind = await db.Units.Where(u => u.Uscc == operatorUscc).Select(u => (UnitKind?)u.Kind).SingleOrDefaultAsync(ct)
            ?? throw UnknownUnit(operatorUscc);
        if (!await db.Units.AnyAsync(u => u.Uscc == residentUscc, ct))
        {
            throw UnknownUnit(residentUscc);
        }

        if (operatorKind != UnitKind.OpcOperator || operatorUscc == residentUscc || !await OpcCommunity.OperatorConfirmedAsync(db, operatorUscc, ct))
        {
            throw new LedgerException(Reason.NotTransferable,
                $"Quota cannot be transferred, sold, lent or given (Art 15); the only exception is a gift by an OPC community operator the bureau has confirmed, and {operatorUscc} is not one.");
        }

        if (await OpcCommunity.ResidencyAsync(db, operatorUscc, residentUscc, ct) != ResidencyStatus.Confirmed)
        {
            throw new LedgerException(Reason.NotResident,
                $"{residentUscc} is not a resident on {operatorUscc}'s list confirmed by the bureau (Art 15); the operator declares it with AddResidentOpc and the bureau confirms it with ConfirmResidentOpc.");
        }

        // A grant made to another unit is unknown to the operator, as one that does not exist.
        var source = await db.Grants.AsNoTracking().SingleOrDefaultAsync(g => g.Id == grantId && g.UnitUscc == operatorUscc, ct)
            ?? throw Grants.Unknown(grantId);

        var residentUnitYear = await UnitYears.EnsureAsync(db, residentUscc, source.Year, ct);
        await UnitYears.LockAllAsync(db, [source.UnitYearId, residentUnitYear], ct);

        source = await db.Grants.AsNoTracking().Include(g => g.Account).SingleAsync(g => g.Id == grantId, ct);
        Grants.EnsureOpen(source, now, "gift");
        // Quota leaves the operator and reaches the resident: each side must be one the grant's provider may deal with.
        await Eligibility.EnsureMayDealAsync(db, source.ProviderUscc, operatorUscc, ct);
        await Eligibility.EnsureMayDealAsync(db, source.ProviderUscc, residentUscc, ct);

        var held = new Fen(source.Account!.BalanceFen);
        if (amount > held)
        {
            throw new LedgerException(Reason.GrantEmpty, $"Grant {grantId} holds {held}; it cannot give {amount}.");
        }

        var residentBefore = await UnitYears.FiguresAsync(db, residentUscc, source.Year, now, ct);
        if (UnitYearCap.Refusal($"Resident {residentUscc}", source.Year, residentBefore.Cap, residentBefore.GrantedOpen, residentBefore.Deducted, amount, "given") is { } overCap)
        {
            throw overCap;
        }

        var gift = new GrantRow
        {
            ContractId = source.ContractId,
            ProviderUscc = source.ProviderUscc,
            UnitUscc = residentUscc,
            Year = source.Year,
            UnitYearId = residentUnitYear,
            Account = new AccountRow { Kind = AccountKind.Grant, Year = source.Year },
            RatioBp = source.RatioBp,
            AmountFen = amount.Value,
            GrantedAt = now,
            ExpiresAt = source.ExpiresAt,
            GiftedFromGrantId = source.Id,
        };
        db.Grants.Add(gift);
        await db.SaveChangesAsync(ct);

        var entry = new JournalEntryRow
        {
            Kind = EntryKind.Gift,
            CreatedAt = now,
            Year = source.Year,
            UnitUscc = operatorUscc,
            ProviderUscc = source.ProviderUscc,
            GrantId = source.Id,
            CounterpartyUscc = residentUscc,
            CounterpartyGrantId = gift.Id,
            RequestId = requestId,
            Caller = by,
            Memo = $"OPC gift to resident {residentUscc}",
        };
        await Journal.PostAsync(db, entry,
        [
            Leg.Debit(gift.AccountId, AccountKind.Grant, amount),
            Leg.Credit(source.AccountId, AccountKind.Grant, amount, Reason.GrantEmpty),
        ], ct);

        return new GiftResponse
        {
            Grant = await Grants.InfoAsync(db, gift.Id, now, ct),
            SourceGrantId = source.Id,
            SourceRemainingFen = (held - amount).Value,
            OperatorUnitYear = (await UnitYears.FiguresAsync(db, operatorUscc, source.Year, now, ct)).ToApi(),
            ResidentUnitYear = (residentBefore with { GrantedOpen = residentBefore.GrantedOpen + amount }).ToApi(),
            Receipt = entry.ToReceipt(),
        };
    }

    private static LedgerException UnknownUnit(string uscc) => new(Reason.UnknownUnit, $"No unit is registered with USCC {uscc}.");
}
