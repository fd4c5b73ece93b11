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
    /// <summary>The contract the grant is against, for the checks that come before the transaction.</summary>
    public static async Task<ContractRow> ContractAsync(LedgerDb db, string provider, string contractNo, CancellationToken ct) =>
        await db.Contracts.AsNoTracking().SingleOrDefaultAsync(c => c.ProviderUscc == provider && c.ContractNo == contractNo, ct)
        ?? throw (await db.Providers.AnyAsync(p => p.Uscc == provider, ct)
            ? new LedgerException(Reason.UnknownContract, $"Provider {provider} has no contract '{contractNo}'; call RegisterContract first.")
            : new LedgerException(Reason.UnknownProvider, $"No provider is registered with USCC {provider}."));

    /// <summary>The year's policy, when it is in force on <paramref name="now"/>'s day (Art 19); YEAR_NOT_OPEN otherwise.</summary>
    public static async Task<VoucherPolicy> PolicyInForceAsync(LedgerDb db, int year, DateTimeOffset now, CancellationToken ct)
    {
        var policy = await Policies.FindAsync(db, year, ct)
            ?? throw new LedgerException(Reason.YearNotOpen, $"There is no policy for {year}; the bureau must call SetYearPolicy (and FundBudget) first.");
        var today = ChinaCalendar.DateOf(now);
        return policy.InForceOn(today)
            ? policy
            : throw new LedgerException(Reason.YearNotOpen,
                $"The {year} policy takes effect on {policy.EffectiveFrom:yyyy-MM-dd} (Art 19); nothing is granted before it (today is {today:yyyy-MM-dd}).");
    }

    public static async Task<GrantResponse> GrantAsync(LedgerDb db, GrantCall call, DateTimeOffset now, CancellationToken ct)
    {
        var contract = await ContractAsync(db, call.Provider, call.ContractNo, ct);
        var year = ChinaCalendar.YearOf(now);
        var policy = await PolicyInForceAsync(db, year, now, ct);
        if (contract.UsesInnovationVoucher)
        {
            throw new LedgerException(Reason.InnovationVoucherConflict,
                $"Contract '{call.ContractNo}' already enjoys the science-and-technology innovation voucher, so it gets no compute-voucher quota (Art 15).");
        }

        // Eligibility is read once the unit-year is locked, as a deduction reads it: a change of standing, relation or
        // approval that committed while this call waited for the lock is seen.
        var unitYear = await UnitYears.LockOrCreateAsync(db, contract.UnitUscc, year, ct);
        await Eligibility.EnsureMayDealAsync(db, call.Provider, contract.UnitUscc, ct);
        var unit = await db.Units.AsNoTracking().Where(u => u.Uscc == contract.UnitUscc).Select(u => new { u.Sme, u.Kind }).SingleAsync(ct);

        var ratio = policy.RatioFor(contract.SelfControllable, sme: unit.Sme && unit.Kind == UnitKind.Enterprise);
        var quota = VoucherPolicy.ContractQuota(new Fen(contract.AmountFen), ratio);
        var amount = call.Amount;
        var committedOnContract = await db.Contracts
            .Where(c => c.Id == contract.Id && c.GrantedFen + amount.Value <= quota.Value)
            .ExecuteUpdateAsync(s => s.SetProperty(c => c.GrantedFen, c => c.GrantedFen + amount.Value), ct);
        if (committedOnContract == 0)
        {
            throw new LedgerException(Reason.ContractQuotaExceeded,
                $"Contract '{call.ContractNo}' allows {quota} of quota ({contract.AmountFen} fen at {ratio}); {amount} more would exceed it.");
        }

        var before = await UnitYears.FiguresAsync(db, contract.UnitUscc, year, now, ct);
        if (!UnitYearCap.Allows(before.Cap, before.GrantedOpen, before.Deducted, amount))
        {
            throw new LedgerException(Reason.UnitYearCapExceeded,
                $"Unit {contract.UnitUscc} has committed {before.GrantedOpen + before.Deducted} of its {before.Cap} cap for {year}; at most {before.Headroom} more can be granted.");
        }

        var poolId = await db.Accounts.Where(a => a.Kind == AccountKind.Pool && a.Year == year).Select(a => (long?)a.Id).SingleOrDefaultAsync(ct)
            ?? throw new LedgerException(Reason.BudgetExhausted, $"The {year} budget pool has not been funded; the bureau calls FundBudget.");

        var grant = new GrantRow
        {
            ContractId = contract.Id,
            ProviderUscc = call.Provider,
            UnitUscc = contract.UnitUscc,
            Year = year,
            UnitYearId = unitYear.Id,
            Account = new AccountRow { Kind = AccountKind.Grant, Year = year },
            RatioBp = ratio.Value,
            AmountFen = amount.Value,
            GrantedAt = now,
            ExpiresAt = policy.ExpiryOf(now),
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
            Leg.Credit(poolId, AccountKind.Pool, amount, Reason.BudgetExhausted),
        ], ct);

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
}
