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
/// never by editing it, and sets the party's standing.
/// A deduction: Pool ← Deducted (its quota goes back to the year's pool). A grant's open quota: Pool ← Grant.
/// A disbursement: Receivable ← Disbursed, owed by the unit and visible in the books until settled.</summary>
internal static class ClawBacks
{
    public static async Task<ClawBackResponse> ReverseAsync(LedgerDb db, ClawBackRequest request, Fen amount, string reason,
        string? party, PartyStanding standing, DateTimeOffset now, string by, CancellationToken ct)
    {
        var (kind, targetId, unit, year, original, legs) = request.TargetCase switch
        {
            ClawBackRequest.TargetOneofCase.DeductionId => await DeductionAsync(db, request.DeductionId, amount, ct),
            ClawBackRequest.TargetOneofCase.GrantId => await GrantAsync(db, request.GrantId, amount, ct),
            _ => await DisbursementAsync(db, request.RedemptionId, amount, ct),
        };

        var entry = new JournalEntryRow
        {
            Kind = EntryKind.ClawBack,
            CreatedAt = now,
            Year = year,
            UnitUscc = unit,
            ReversesEntryId = original,
            RequestId = request.RequestId,
            Caller = by,
            Memo = $"claw-back of {kind} {targetId}: {reason}",
        };
        await Journal.PostAsync(db, entry, legs, ct);

        var partyUscc = party ?? unit;
        await Standings.SetAsync(db, partyUscc, standing, $"claw-back of {kind} {targetId}: {reason}", now, request.RequestId, by, ct);
        var row = new ClawBackRow
        {
            TargetKind = kind,
            TargetId = targetId,
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
            OriginalEntryId = original,
            EntryId = entry.Id,
            AmountFen = amount.Value,
            PartyUscc = partyUscc,
            Standing = standing.ToApi(),
        };
    }

    private static async Task<(string, long, string, int, long, List<Leg>)> DeductionAsync(LedgerDb db, long deductionId, Fen amount, CancellationToken ct)
    {
        var deduction = await db.Deductions.AsNoTracking().SingleOrDefaultAsync(d => d.Id == deductionId, ct)
            ?? throw new LedgerException(Reason.InvalidArgument, $"There is no deduction {deductionId}.");
        var (unitYear, grant) = (await Grants.LockAsync(db, deduction.GrantId, ct))!.Value;
        var already = await db.ClawBacks.Where(c => c.TargetKind == "deduction" && c.TargetId == deductionId).SumAsync(c => c.AmountFen, ct);
        if (amount.Value > deduction.AppliedFen - already)
        {
            throw new LedgerException(Reason.InvalidAmount,
                $"Deduction {deductionId} applied {new Fen(deduction.AppliedFen)}, of which {new Fen(already)} is already clawed back.");
        }

        var pool = await PoolAsync(db, grant.Year, ct);
        var original = await db.JournalEntries.Where(e => e.DeductionId == deductionId).Select(e => e.Id).SingleAsync(ct);
        return ("deduction", deductionId, grant.UnitUscc, grant.Year, original,
        [
            Leg.Debit(pool, AccountKind.Pool, amount),
            // Only what is not applied for or redeemed can be reversed here; a paid redemption is clawed back as a disbursement.
            Leg.Credit(unitYear.DeductedAccountId, AccountKind.Deducted, amount, Reason.RedemptionExceedsDeducted),
        ]);
    }

    private static async Task<(string, long, string, int, long, List<Leg>)> GrantAsync(LedgerDb db, long grantId, Fen amount, CancellationToken ct)
    {
        var (_, grant) = await Grants.LockAsync(db, grantId, ct) ?? throw LedgerGrpcService.UnknownGrant(grantId);
        if (amount.Value > grant.Account!.BalanceFen)
        {
            throw new LedgerException(Reason.GrantEmpty, $"Grant {grantId} holds {new Fen(grant.Account.BalanceFen)}; {amount} cannot be clawed back from it.");
        }

        await db.Grants.Where(g => g.Id == grantId).ExecuteUpdateAsync(s => s.SetProperty(g => g.ReturnedFen, g => g.ReturnedFen + amount.Value), ct);
        await db.Contracts.Where(c => c.Id == grant.ContractId).ExecuteUpdateAsync(s => s.SetProperty(c => c.GrantedFen, c => c.GrantedFen - amount.Value), ct);
        var pool = await PoolAsync(db, grant.Year, ct);
        var original = await db.JournalEntries.Where(e => e.GrantId == grantId && e.Kind == EntryKind.Grant).Select(e => e.Id).SingleAsync(ct);
        return ("grant", grantId, grant.UnitUscc, grant.Year, original,
        [
            Leg.Debit(pool, AccountKind.Pool, amount),
            Leg.Credit(grant.AccountId, AccountKind.Grant, amount, Reason.GrantEmpty),
        ]);
    }

    private static async Task<(string, long, string, int, long, List<Leg>)> DisbursementAsync(LedgerDb db, long redemptionId, Fen amount, CancellationToken ct)
    {
        var key = await db.Redemptions.AsNoTracking().Where(r => r.Id == redemptionId).Select(r => new { r.UnitUscc, r.Year }).SingleOrDefaultAsync(ct)
            ?? throw new LedgerException(Reason.UnknownRedemption, $"There is no redemption {redemptionId}.");
        await UnitYears.LockOrCreateAsync(db, key.UnitUscc, key.Year, ct);
        var row = await db.Redemptions.AsNoTracking().SingleAsync(r => r.Id == redemptionId, ct);
        if (row.State != RedemptionState.Disbursed || amount.Value > (row.ApprovedFen ?? 0) - row.ClawedBackFen)
        {
            throw new LedgerException(Reason.InvalidAmount,
                $"Redemption {redemptionId} has {new Fen(row.State == RedemptionState.Disbursed ? (row.ApprovedFen ?? 0) - row.ClawedBackFen : 0)} disbursed and not yet clawed back.");
        }

        await db.Redemptions.Where(r => r.Id == redemptionId)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.ClawedBackFen, r => r.ClawedBackFen + amount.Value), ct);
        var accounts = await UnitYears.RedemptionAccountsAsync(db, key.UnitUscc, key.Year, ct);
        return ("disbursement", redemptionId, key.UnitUscc, key.Year, row.DisbursementEntryId ?? 0,
        [
            Leg.Debit(accounts[AccountKind.Receivable], AccountKind.Receivable, amount),
            Leg.Credit(accounts[AccountKind.Disbursed], AccountKind.Disbursed, amount),
        ]);
    }

    private static Task<long> PoolAsync(LedgerDb db, int year, CancellationToken ct) =>
        db.Accounts.Where(a => a.Kind == AccountKind.Pool && a.Year == year).Select(a => a.Id).SingleAsync(ct);
}
