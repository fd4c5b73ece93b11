using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;
using UnitKind = QuotaLedger.Server.Storage.UnitKind;

namespace QuotaLedger.Server.Ledger;

/// <summary>A validated grant request (Art 9).</summary>
internal sealed record GrantCall(string Provider, string ContractNo, Fen Amount, string RequestId, string By);

/// <summary>Granting quota (Art 9): against an approved unit and an eligible contract, the provider moves quota from the
/// year's pool to a new grant, within the contract's quota, the unit-year's cap and the pool.</summary>
internal static class Granting
{
    /// <summary>The real grant: reads the facts under the unit-year lock, decides with <see cref="GrantRules.Decide"/>,
    /// and writes what it decided. The contract's quota and the pool are guarded again by the writes themselves.</summary>
    public static async Task<GrantResponse> GrantAsync(LedgerDb db, GrantCall call, DateTimeOffset now, CancellationToken ct)
    {
        // The times the grant is stored with (PostgreSQL keeps microseconds): the answer says what a later read says.
        now = Chain.ToStoredPrecision(now);
        var facts = await ReadFactsAsync(db, call, now, lockUnitYear: true, ct);
        var decision = GrantRules.Decide(call, facts, now);
        if (decision.Refusal is { } refusal)
        {
            throw refusal;
        }

        var (contract, year, amount) = (facts.Contract!, facts.Year, call.Amount);
        var (ratio, quota) = (decision.Ratio, decision.ContractQuota);
        var committedOnContract = await db.Contracts
            .Where(c => c.Id == contract.Id && c.GrantedFen + amount.Value <= quota.Value)
            .ExecuteUpdateAsync(s => s.SetProperty(c => c.GrantedFen, c => c.GrantedFen + amount.Value), ct);
        if (committedOnContract == 0)
        {
            throw GrantRules.ContractQuotaExceeded(call, contract, ratio, quota);
        }

        var grant = new GrantRow
        {
            ContractId = contract.Id,
            ProviderUscc = call.Provider,
            UnitUscc = contract.UnitUscc,
            Year = year,
            UnitYearId = facts.UnitYearId!.Value,
            Account = new AccountRow { Kind = AccountKind.Grant, Year = year },
            RatioBp = ratio.Value,
            AmountFen = amount.Value,
            GrantedAt = now,
            ExpiresAt = decision.ExpiresAt,
        };
        db.Grants.Add(grant);
        await db.SaveChangesAsync(ct);

        var entry = new JournalEntryRow
        {
            Kind = EntryKind.Grant,
            CreatedAt = now,
            Year = year,
            UnitUscc = grant.UnitUscc,
            ProviderUscc = call.Provider,
            GrantId = grant.Id,
            RequestId = call.RequestId,
            Caller = call.By,
            Memo = $"grant on contract {call.ContractNo}",
        };
        await Journal.PostAsync(db, entry,
        [
            Leg.Debit(grant.AccountId, AccountKind.Grant, amount),
            Leg.Credit(facts.PoolId!.Value, AccountKind.Pool, amount, Reason.BudgetExhausted),
        ], ct);

        var before = facts.Figures;
        return new GrantResponse
        {
            GrantId = grant.Id,
            AmountFen = amount.Value,
            ExpiresAt = grant.ExpiresAt.ToTimestamp(),
            GrantedAt = now.ToTimestamp(),
            RatioBp = ratio.Value,
            UnitYear = (before with { GrantedOpen = before.GrantedOpen + amount }).ToApi(),
            Receipt = entry.ToReceipt(),
        };
    }

    /// <summary>A dry run of a grant: the same facts, read in one read-only REPEATABLE READ snapshot without taking the
    /// unit-year lock or creating anything, decided by the same <see cref="GrantRules.Decide"/>. Nothing is written.</summary>
    public static async Task<Explanation> ExplainAsync(LedgerDb db, GrantCall call, DateTimeOffset now, CancellationToken ct)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct);
        await db.Database.ExecuteSqlRawAsync("SET TRANSACTION READ ONLY", ct);
        var facts = await ReadFactsAsync(db, call, now, lockUnitYear: false, ct);
        await transaction.RollbackAsync(ct);

        var decision = GrantRules.Decide(call, facts, now);
        var explanation = new Explanation
        {
            WouldApply = decision.Refusal is null,
            Reason = decision.Refusal?.Reason.Word() ?? "",
            Message = decision.Refusal?.Message ?? "",
            RequestedFen = call.Amount.Value,
            AppliedFen = decision.Refusal is null ? call.Amount.Value : 0,
            EvaluatedAt = now.ToTimestamp(),
        };
        if (facts.Contract is not { } contract)
        {
            // No contract of the caller's: nothing of anyone else's is shown.
            return explanation;
        }

        explanation.UnitUscc = contract.UnitUscc;
        explanation.Year = facts.Year;
        if (facts.Policy is not { } policy)
        {
            // No policy for the year: no ratio, cap or validity to measure against.
            return explanation;
        }

        explanation.UnitYearHeadroomFen = facts.Figures.Headroom.Value;
        explanation.PoolFen = facts.Pool?.Value ?? 0;
        explanation.RatioBp = decision.Ratio.Value;
        explanation.ContractQuotaRemainingFen = Fen.Max(Fen.Zero, decision.ContractQuota - facts.ContractCommitted).Value;
        explanation.ExpiresAt = policy.ExpiryOf(now).ToTimestamp();
        return explanation;
    }

    /// <summary>Everything the grant rules read, as it stands at <paramref name="now"/>. With <paramref name="lockUnitYear"/>
    /// (the real call) the unit-year is created if new and locked before anything it checks is read, as a deduction
    /// reads it, so a change of standing, relation or approval that committed while this call waited is seen; without
    /// (a dry run) nothing is created or locked. Expiry counts at expires_at: what due grants still hold is not
    /// committed on the contract and is in the pool, whether or not a sweep has moved it.</summary>
    public static async Task<GrantingFacts> ReadFactsAsync(LedgerDb db, GrantCall call, DateTimeOffset now, bool lockUnitYear, CancellationToken ct)
    {
        var year = ChinaCalendar.YearOf(now);
        var contract = await db.Contracts.AsNoTracking().SingleOrDefaultAsync(c => c.ProviderUscc == call.Provider && c.ContractNo == call.ContractNo, ct);
        if (contract is null)
        {
            return new GrantingFacts { Year = year, ProviderKnown = await db.Providers.AnyAsync(p => p.Uscc == call.Provider, ct) };
        }

        var policy = await Policies.FindAsync(db, year, ct);
        if (policy is null)
        {
            return new GrantingFacts { Year = year, ProviderKnown = true, Contract = contract };
        }

        long? unitYearId = lockUnitYear ? (await UnitYears.LockOrCreateAsync(db, contract.UnitUscc, year, ct)).Id : null;
        var dealing = await Eligibility.ReadAsync(db, call.Provider, contract.UnitUscc, ct);
        var unit = await db.Units.AsNoTracking().Where(u => u.Uscc == contract.UnitUscc).Select(u => new { u.Sme, u.Kind }).SingleAsync(ct);
        var granted = await db.Contracts.AsNoTracking().Where(c => c.Id == contract.Id).Select(c => c.GrantedFen).SingleAsync(ct);
        var lapsedOnContract = await Grants.LapsedAsync(db.Grants.Where(g => g.ContractId == contract.Id), now, ct);
        var figures = await UnitYears.FiguresAsync(db, contract.UnitUscc, year, now, ct);
        var pool = await db.Accounts.AsNoTracking().Where(a => a.Kind == AccountKind.Pool && a.Year == year)
            .Select(a => new { a.Id, a.BalanceFen }).SingleOrDefaultAsync(ct);
        var lapsedInYear = pool is null ? 0 : await Grants.LapsedAsync(db.Grants.Where(g => g.Year == year), now, ct);
        return new GrantingFacts
        {
            Year = year,
            ProviderKnown = true,
            Contract = contract,
            Policy = policy,
            UnitYearId = unitYearId,
            Dealing = dealing,
            Sme = unit.Sme && unit.Kind == UnitKind.Enterprise,
            ContractCommitted = new Fen(granted - lapsedOnContract),
            Figures = figures,
            PoolId = pool?.Id,
            Pool = pool is null ? null : new Fen(pool.BalanceFen + lapsedInYear),
        };
    }
}
