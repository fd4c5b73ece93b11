using System.Globalization;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Ledger;

/// <summary>A validated deduction (Art 10), as the caller sent it and as the rules read it.</summary>
internal sealed record DeductionRequest(
    DeductRequest Sent, string By, string Provider, long GrantId, string InvoiceNo, Fen InvoiceAmount, DateOnly InvoiceDate)
{
    public string RequestId => Sent.RequestId;

    public InvoiceClaim Claim => new(Provider, GrantId, InvoiceNo, InvoiceAmount, InvoiceDate);
}

/// <summary>What a provider claims against a grant: an invoice, by number, amount and date.</summary>
public readonly record struct InvoiceClaim(string Provider, long GrantId, string InvoiceNo, Fen InvoiceAmount, DateOnly InvoiceDate);

/// <summary>What the deduction rules read of a grant once its unit-year is locked. <see cref="BalanceFen"/> is the
/// running balance: a batch lowers it as it applies the grant's deductions one after another.</summary>
public sealed class GrantFacts
{
    public required long Id { get; init; }
    public required long ContractId { get; init; }
    public required long UnitYearId { get; init; }
    public required long AccountId { get; init; }
    public required string Provider { get; init; }
    public required string Unit { get; init; }
    public required int Year { get; init; }
    public required int RatioBp { get; init; }
    public required GrantState State { get; set; }
    public required DateTimeOffset ExpiresAt { get; init; }
    public required Dealing Dealing { get; init; }

    /// <summary>When the policy of the grant's year takes effect (Art 19).</summary>
    public required DateOnly EffectiveFrom { get; init; }
    public required long BalanceFen { get; set; }
}

/// <summary>A contract as the write rules read it: its amount and terms, and, running, what has been granted on it and
/// invoiced against it.</summary>
public sealed class ContractFacts
{
    public required long Id { get; init; }
    public required long AmountFen { get; init; }
    public required long InvoicedFen { get; set; }
    public string Provider { get; init; } = "";
    public string ContractNo { get; init; } = "";
    public string Unit { get; init; } = "";
    public long GrantedFen { get; set; }
    public bool SelfControllable { get; init; }
    public bool UsesInnovationVoucher { get; init; }
}

/// <summary>The deduction that already took an invoice number: what a DUPLICATE_INVOICE refusal names.</summary>
public readonly record struct EarlierDeduction(long DeductionId, long GrantId);

/// <summary>What the rules decided for one deduction: its refusal, or the voucher share and what the grant covers.</summary>
public readonly record struct DeductionDecision(LedgerException? Refusal, Fen Requested, Fen Applied)
{
    public static DeductionDecision Refuse(LedgerException refusal) => new(refusal, Fen.Zero, Fen.Zero);
}

/// <summary>The deduction rules (Art 10, and every eligibility rule of POLICY.md): one pure function, no I/O, no clock of
/// its own. The write engine (<c>Engine.WriteBatch</c>) reads the facts under the unit-year lock, calls it for each deduction in turn
/// and writes what it decided; a single deduction is a batch of one, so every path runs these same checks in this
/// same order.</summary>
public static class Deductions
{
    /// <summary>Decides one claim: <paramref name="earlier"/> is the deduction that already took its invoice number, if one did.</summary>
    public static DeductionDecision Decide(InvoiceClaim request, GrantFacts? grant, ContractFacts? contract, EarlierDeduction? earlier, DateTimeOffset now)
    {
        // Another provider's grant is refused exactly as a missing one: a write tells nothing of what is not the caller's.
        if (grant is null || contract is null || grant.Provider != request.Provider)
        {
            return DeductionDecision.Refuse(Grants.Unknown(request.GrantId));
        }

        if (Grants.ClosedRefusal(grant.Id, grant.State, grant.ExpiresAt, now, "deduction") is { } closed)
        {
            return DeductionDecision.Refuse(closed);
        }

        if (EligibilityRule.Refusal(grant.Dealing) is { } ineligible)
        {
            return DeductionDecision.Refuse(ineligible);
        }

        if (request.InvoiceDate < grant.EffectiveFrom)
        {
            return DeductionDecision.Refuse(new LedgerException(Reason.YearNotOpen,
                $"Invoice '{request.InvoiceNo}' is dated {request.InvoiceDate:yyyy-MM-dd}, before the {grant.Year} policy took effect on {grant.EffectiveFrom:yyyy-MM-dd} (Art 19)."));
        }

        if (earlier is { } taken)
        {
            return DeductionDecision.Refuse(DuplicateInvoice(request.Provider, request.InvoiceNo, taken));
        }

        var requested = VoucherShare(request.InvoiceAmount, grant);
        if (!requested.IsPositive)
        {
            return DeductionDecision.Refuse(new LedgerException(Reason.InvalidAmount,
                $"The voucher share of a {request.InvoiceAmount.Value}-fen invoice at {grant.RatioBp} bp rounds down to 0 fen."));
        }

        var held = new Fen(grant.BalanceFen);
        if (!held.IsPositive)
        {
            return DeductionDecision.Refuse(new LedgerException(Reason.GrantEmpty, $"Grant {grant.Id} holds nothing more to deduct."));
        }

        if (contract.InvoicedFen + request.InvoiceAmount.Value > contract.AmountFen)
        {
            return DeductionDecision.Refuse(new LedgerException(Reason.InvoiceExceedsContract,
                $"Invoice '{request.InvoiceNo}' would take the invoices against the grant's contract past the contract amount."));
        }

        return new DeductionDecision(null, requested, Fen.Min(requested, held));
    }

    /// <summary>The voucher share of an invoice (Art 10): the invoice amount at the grant's ratio, rounded down to the fen.
    /// The deduction and its dry run both ask here.</summary>
    public static Fen VoucherShare(Fen invoiceAmount, GrantFacts grant) => invoiceAmount.ShareAt(new BasisPoints(grant.RatioBp));

    /// <summary>The refusal of an invoice number the provider has deducted before, naming that deduction in its metadata
    /// (deductionId, grantId, invoiceNo). <paramref name="message"/>: the refusal's message as first recorded, when an
    /// earlier refusal is replayed.</summary>
    public static LedgerException DuplicateInvoice(string provider, string invoiceNo, EarlierDeduction earlier, string? message = null) =>
        new(Reason.DuplicateInvoice, message
            ?? $"Provider {provider} has already deducted invoice '{invoiceNo}' (deduction {earlier.DeductionId}, grant {earlier.GrantId}); an invoice is accepted once.")
        {
            Metadata = new Dictionary<string, string>
            {
                ["deductionId"] = earlier.DeductionId.ToString(CultureInfo.InvariantCulture),
                ["grantId"] = earlier.GrantId.ToString(CultureInfo.InvariantCulture),
                ["invoiceNo"] = invoiceNo,
            },
        };
}
