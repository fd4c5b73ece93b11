using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;
using RedemptionState = QuotaLedger.Server.Storage.RedemptionState;

namespace QuotaLedger.Server.Redemption;

/// <summary>Claw-back (Art 17): the bureau reverses what fraud obtained with new entries that reference the original,
/// never by editing it, and sets the party's standing. Each reversal takes at most what its target still holds:
/// <list type="bullet">
/// <item>a grant's open quota (gifted grants too): Pool ← Grant;</item>
/// <item>a deduction not yet applied for: Pool ← Deducted;</item>
/// <item>an application under review: Pool ← Pending; approved and not paid: Pool ← Redeemed;</item>
/// <item>a payment: Receivable ← Disbursed, owed by the unit and visible in the books until settled.</item>
/// </list>
/// What a grant loses this way is its <c>clawed_back_fen</c>, kept apart from what expiry or release returns.</summary>
internal static class ClawBacks
{
    /// <summary>The target kind of a deduction's claw-back (claw_backs.target_kind).</summary>
    public const string DeductionTarget = "deduction";

    private sealed record Reversal(string Kind, long TargetId, string Unit, string? Provider, long? GrantId, int Year, long? OriginalEntryId, List<Leg> Legs);

    public static async Task<ClawBackResponse> ReverseAsync(LedgerDb db, ClawBackRequest request, Fen amount, string reason,
        string? party, PartyStanding standing, DateTimeOffset now, string by, CancellationToken ct)
    {
        var reversal = request.TargetCase switch
        {
            ClawBackRequest.TargetOneofCase.DeductionId => await DeductionAsync(db, request.DeductionId, amount, ct),
            ClawBackRequest.TargetOneofCase.GrantId => await GrantAsync(db, request.GrantId, amount, now, ct),
            _ => await ApplicationAsync(db, request.RedemptionId, amount, ct),
        };

        var memo = $"claw-back of {reversal.Kind} {reversal.TargetId}: {reason}";
        var entry = new JournalEntryRow
        {
            Kind = EntryKind.ClawBack,
            CreatedAt = now,
            Year = reversal.Year,
            UnitUscc = reversal.Unit,
            ProviderUscc = reversal.Provider,
            GrantId = reversal.GrantId,
            ReversesEntryId = reversal.OriginalEntryId,
            RequestId = request.RequestId,
            Caller = by,
            Memo = memo,
        };
        await Journal.PostAsync(db, entry, reversal.Legs, ct);

        var partyUscc = party ?? reversal.Unit;
        await Standings.SetAsync(db, partyUscc, standing, memo, now, request.RequestId, by, ct);
        var row = new ClawBackRow
        {
            TargetKind = reversal.Kind,
            TargetId = reversal.TargetId,
            AmountFen = amount.Value,
            Reason = reason,
            PartyUscc = partyUscc,
            Standing = standing,
            At = now,
        };
        db.ClawBacks.Add(row);
        await db.SaveChangesAsync(ct);
        return new ClawBackResponse
        {
            ClawBackId = row.Id,
            OriginalEntryId = reversal.OriginalEntryId ?? 0,
            EntryId = entry.Id,
            AmountFen = amount.Value,
            PartyUscc = partyUscc,
            Standing = standing.ToApi(),
            Receipt = entry.ToReceipt(),
        };
    }

    private static async Task<Reversal> DeductionAsync(LedgerDb db, long deductionId, Fen amount, CancellationToken ct)
    {
        var deduction = await db.Deductions.AsNoTracking().SingleOrDefaultAsync(d => d.Id == deductionId, ct)
            ?? throw new LedgerException(Reason.UnknownDeduction, $"There is no deduction {deductionId}.");
        var (unitYear, grant) = (await Grants.LockAsync(db, deduction.GrantId, ct))!.Value;
        var already = await db.ClawBacks.Where(c => c.TargetKind == DeductionTarget && c.TargetId == deductionId).SumAsync(c => c.AmountFen, ct);
        if (amount.Value > deduction.AppliedFen - already)
        {
            throw new LedgerException(Reason.InvalidAmount,
                $"Deduction {deductionId} applied {new Fen(deduction.AppliedFen)}, of which {new Fen(already)} is already clawed back.");
        }

        var original = await db.JournalEntries.Where(e => e.DeductionId == deductionId).Select(e => e.Id).SingleAsync(ct);
        return new Reversal(DeductionTarget, deductionId, grant.UnitUscc, grant.ProviderUscc, grant.Id, grant.Year, original,
        [
            Leg.Debit(await PoolAsync(db, grant.Year, ct), AccountKind.Pool, amount),
            // Only what is not applied for can be reversed here; an application is clawed back as an application.
            Leg.Credit(unitYear.DeductedAccountId, AccountKind.Deducted, amount, Reason.RedemptionExceedsDeducted),
        ]);
    }

    private static async Task<Reversal> GrantAsync(LedgerDb db, long grantId, Fen amount, DateTimeOffset now, CancellationToken ct)
    {
        var (_, grant) = await Grants.LockAsync(db, grantId, ct) ?? throw Grants.Unknown(grantId);
        // Past its expiry a grant holds nothing: what it held is reclaimed already, whether or not the pass has run.
        Grants.EnsureOpen(grant, now, "claw-back");
        if (amount.Value > grant.Account!.BalanceFen)
        {
            throw new LedgerException(Reason.GrantEmpty, $"Grant {grantId} holds {new Fen(grant.Account.BalanceFen)}; {amount} cannot be clawed back from it.");
        }

        await db.Grants.Where(g => g.Id == grantId).ExecuteUpdateAsync(s => s.SetProperty(g => g.ClawedBackFen, g => g.ClawedBackFen + amount.Value), ct);
        await db.Contracts.Where(c => c.Id == grant.ContractId).ExecuteUpdateAsync(s => s.SetProperty(c => c.GrantedFen, c => c.GrantedFen - amount.Value), ct);
        return new Reversal("grant", grantId, grant.UnitUscc, grant.ProviderUscc, grant.Id, grant.Year, await Grants.OriginEntryAsync(db, grantId, ct),
        [
            Leg.Debit(await PoolAsync(db, grant.Year, ct), AccountKind.Pool, amount),
            Leg.Credit(grant.AccountId, AccountKind.Grant, amount, Reason.GrantEmpty),
        ]);
    }

    /// <summary>An application at whatever stage it is: what it still holds there leaves that stage's account.</summary>
    private static async Task<Reversal> ApplicationAsync(LedgerDb db, long redemptionId, Fen amount, CancellationToken ct)
    {
        var key = await db.Redemptions.AsNoTracking().Where(r => r.Id == redemptionId).Select(r => new { r.UnitUscc, r.Year }).SingleOrDefaultAsync(ct)
            ?? throw new LedgerException(Reason.UnknownRedemption, $"There is no redemption {redemptionId}.");
        // The year's pool (the quota returns there), then the unit-year: the one lock order.
        var unitYearId = await UnitYears.EnsureAsync(db, key.UnitUscc, key.Year, ct);
        await LockOrder.TakeAsync(db, new LockSet { PoolYears = [key.Year], UnitYearIds = [unitYearId] }, ct);
        var row = await db.Redemptions.AsNoTracking().SingleAsync(r => r.Id == redemptionId, ct);
        if (amount.Value > row.OutstandingFen)
        {
            throw new LedgerException(Reason.InvalidAmount,
                $"Redemption {redemptionId} holds {new Fen(row.OutstandingFen)} ({row.State.ToString().ToUpperInvariant()}) not yet clawed back; {amount} cannot be.");
        }

        await db.Redemptions.Where(r => r.Id == redemptionId && r.OutstandingFen >= amount.Value)
            .ExecuteUpdateAsync(s => s
                .SetProperty(r => r.OutstandingFen, r => r.OutstandingFen - amount.Value)
                .SetProperty(r => r.ClawedBackFen, r => r.ClawedBackFen + amount.Value), ct);
        var accounts = await UnitYears.RedemptionAccountsAsync(db, key.UnitUscc, key.Year, ct);
        var (kind, original, legs) = row.State switch
        {
            RedemptionState.Submitted => ("application", row.SubmittedEntryId, new List<Leg>
            {
                Leg.Debit(await PoolAsync(db, row.Year, ct), AccountKind.Pool, amount),
                Leg.Credit(accounts[AccountKind.Pending], AccountKind.Pending, amount),
            }),
            RedemptionState.Reviewed => ("approved application", row.ReviewedEntryId, new List<Leg>
            {
                Leg.Debit(await PoolAsync(db, row.Year, ct), AccountKind.Pool, amount),
                Leg.Credit(accounts[AccountKind.Redeemed], AccountKind.Redeemed, amount),
            }),
            _ => ("disbursement", row.DisbursementEntryId, new List<Leg>
            {
                Leg.Debit(accounts[AccountKind.Receivable], AccountKind.Receivable, amount),
                Leg.Credit(accounts[AccountKind.Disbursed], AccountKind.Disbursed, amount),
            }),
        };
        return new Reversal(kind, redemptionId, key.UnitUscc, null, null, key.Year, original, legs);
    }

    /// <summary>Where clawed-back quota returns: the year's pool, or, once the year is closed (its pool settled and
    /// taking no more grants), the year's settled account, so the closed pool stays empty. The database refuses a
    /// closed year's pool growing (migration PeriodClose), so a claw-back racing the year's close is refused and,
    /// retried, returns its quota here.</summary>
    private static async Task<long> PoolAsync(LedgerDb db, int year, CancellationToken ct)
    {
        if (await db.PeriodClosings.AnyAsync(c => c.Year == year && c.Month == 0, ct))
        {
            return await Pools.SettledAccountAsync(db, year, ct);
        }

        return await db.Accounts.Where(a => a.Kind == AccountKind.Pool && a.Year == year).Select(a => (long?)a.Id).SingleOrDefaultAsync(ct)
            ?? throw new InvalidOperationException($"The {year} pool account is missing although quota of {year} was granted.");
    }
}
