using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Server.Ledger;

/// <summary>A validated deduction (Art 10), as the caller sent it and as the rules read it.</summary>
internal sealed record DeductionRequest(
    DeductRequest Sent, string By, string Provider, long GrantId, string InvoiceNo, Fen InvoiceAmount, DateOnly InvoiceDate)
{
    public string RequestId => Sent.RequestId;
}

/// <summary>The deduction rules, one deduction per transaction. <see cref="DeductionQueue"/> applies the same rules to
/// many deductions in one transaction and falls back to this path when a coalesced transaction fails as a whole.</summary>
internal static class Deductions
{
    public static Task<DeductResponse> OneAsync(LedgerDb db, Idempotency idempotency, TimeProvider time, DeductionRequest request, CancellationToken ct) =>
        idempotency.RunAsync(request.By, request.RequestId, nameof(LedgerGrpcService.Deduct), request.Sent,
            c => ApplyAsync(db, time, request, c), ct);

    private static async Task<DeductResponse> ApplyAsync(LedgerDb db, TimeProvider time, DeductionRequest request, CancellationToken ct)
    {
        var (unitYear, grant) = await Grants.LockOwnAsync(db, request.Provider, request.GrantId, ct);

        var now = time.GetUtcNow();
        LedgerGrpcService.EnsureOpen(grant, now, "deduction");
        await Eligibility.EnsureGoodStandingAsync(db, request.Provider, grant.UnitUscc, ct);

        if (await db.Deductions.AnyAsync(d => d.ProviderUscc == request.Provider && d.InvoiceNo == request.InvoiceNo, ct))
        {
            throw DuplicateInvoice(request);
        }

        var requested = ShareOf(request, grant.RatioBp);
        var held = new Fen(grant.Account!.BalanceFen);
        EnsureHolds(grant.Id, held);
        var applied = Fen.Min(requested, held);
        var invoiced = await db.Contracts
            .Where(c => c.Id == grant.ContractId && c.InvoicedFen + request.InvoiceAmount.Value <= c.AmountFen)
            .ExecuteUpdateAsync(s => s.SetProperty(c => c.InvoicedFen, c => c.InvoicedFen + request.InvoiceAmount.Value), ct);
        if (invoiced == 0)
        {
            throw ExceedsContract(request);
        }

        var deduction = NewDeduction(request, requested, applied, now);
        try
        {
            await Journal.PostAsync(db, NewEntry(request, grant, deduction, now),
            [
                Leg.Debit(unitYear.DeductedAccountId, AccountKind.Deducted, applied),
                Leg.Credit(grant.AccountId, AccountKind.Grant, applied, Reason.GrantEmpty),
            ], ct);
        }
        catch (DbUpdateException e) when (Postgres.IsUniqueViolation(e))
        {
            // The same invoice number, deducted concurrently from another unit-year, committed first.
            throw DuplicateInvoice(request);
        }

        var after = await UnitYears.FiguresAsync(db, grant.UnitUscc, grant.Year, now, ct);
        return new DeductResponse
        {
            DeductionId = deduction.Id,
            RequestedFen = requested.Value,
            AppliedFen = applied.Value,
            GrantRemainingFen = (held - applied).Value,
            UnitYear = after.ToApi(),
        };
    }

    /// <summary>The voucher's share of the invoice at the grant's ratio; refused when it rounds down to nothing.</summary>
    public static Fen ShareOf(DeductionRequest request, int ratioBp)
    {
        var requested = request.InvoiceAmount.ShareAt(new BasisPoints(ratioBp));
        return requested.IsPositive
            ? requested
            : throw new LedgerException(Reason.InvalidAmount, $"The voucher share of a {request.InvoiceAmount.Value}-fen invoice at {ratioBp} bp rounds down to 0 fen.");
    }

    public static void EnsureHolds(long grantId, Fen held)
    {
        if (!held.IsPositive)
        {
            throw new LedgerException(Reason.GrantEmpty, $"Grant {grantId} holds nothing more to deduct.");
        }
    }

    public static DeductionRow NewDeduction(DeductionRequest request, Fen requested, Fen applied, DateTimeOffset now) => new()
    {
        GrantId = request.GrantId,
        ProviderUscc = request.Provider,
        InvoiceNo = request.InvoiceNo,
        InvoiceAmountFen = request.InvoiceAmount.Value,
        InvoiceDate = request.InvoiceDate,
        RequestedFen = requested.Value,
        AppliedFen = applied.Value,
        CreatedAt = now,
    };

    public static JournalEntryRow NewEntry(DeductionRequest request, GrantRow grant, DeductionRow deduction, DateTimeOffset now) => new()
    {
        Kind = EntryKind.Deduction,
        CreatedAt = now,
        Year = grant.Year,
        UnitUscc = grant.UnitUscc,
        ProviderUscc = request.Provider,
        GrantId = grant.Id,
        Deduction = deduction,
        RequestId = request.RequestId,
        Caller = request.By,
        Memo = $"invoice {request.InvoiceNo}",
    };

    public static LedgerException DuplicateInvoice(DeductionRequest request) =>
        new(Reason.DuplicateInvoice, $"Provider {request.Provider} has already deducted invoice '{request.InvoiceNo}'; an invoice is accepted once.");

    public static LedgerException ExceedsContract(DeductionRequest request) =>
        new(Reason.InvoiceExceedsContract,
            $"Invoice '{request.InvoiceNo}' would take the invoices against the grant's contract past the contract amount.");
}
