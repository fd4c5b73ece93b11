using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

/// <summary>A validated grant request (Art 9).</summary>
public sealed record GrantCall(string Provider, string ContractNo, Fen Amount, string RequestId, string By);

/// <summary>What the grant rules read, at one moment (the write engine's facts, read under its locks). A fact the rules cannot
/// reach is left unset: without a contract nothing else is read, without a policy nothing past it.</summary>
public sealed record GrantingFacts
{
    /// <summary>The year a grant made now belongs to (China time).</summary>
    public required int Year { get; init; }

    /// <summary>The provider is registered (it tells UNKNOWN_PROVIDER from UNKNOWN_CONTRACT).</summary>
    public required bool ProviderKnown { get; init; }

    public ContractRow? Contract { get; init; }
    public VoucherPolicy? Policy { get; init; }

    /// <summary>The unit-year the real call locked (null on a dry run).</summary>
    public long? UnitYearId { get; init; }

    public Dealing Dealing { get; init; }

    /// <summary>The unit gets the SME bonus: an enterprise that filed the SME declaration.</summary>
    public bool Sme { get; init; }

    /// <summary>What the contract's unexpired grants hold committed (due grants no longer count).</summary>
    public Fen ContractCommitted { get; init; }

    public UnitYearFigures Figures { get; init; } = null!;


    /// <summary>What the pool has available: its balance and what due grants still hold (reclaimed at expires_at).</summary>
    public Fen? Pool { get; init; }
}

/// <summary>What the grant rules decided: the refusal, or the ratio, the contract's quota and when the grant expires.</summary>
public readonly record struct GrantDecision(LedgerException? Refusal, VoucherPolicy? Policy, BasisPoints Ratio, Fen ContractQuota, DateTimeOffset ExpiresAt)
{
    public static GrantDecision Refuse(LedgerException refusal, VoucherPolicy? policy = null, BasisPoints ratio = default, Fen quota = default) =>
        new(refusal, policy, ratio, quota, default);
}

/// <summary>The grant rules (Art 9, Art 19, Art 15, eligibility, the contract's quota, the unit-year cap, the pool): one
/// pure function, no I/O, no clock of its own, a fixed order of early returns each with its named refusal. The real
/// grant and its dry run (both in the write engine) decide here.</summary>
public static class GrantRules
{
    public static GrantDecision Decide(GrantCall call, GrantingFacts facts, DateTimeOffset now)
    {
        if (facts.Contract is not { } contract)
        {
            return GrantDecision.Refuse(facts.ProviderKnown
                ? new LedgerException(Reason.UnknownContract, $"Provider {call.Provider} has no contract '{call.ContractNo}'; call RegisterContract first.")
                : new LedgerException(Reason.UnknownProvider, $"No provider is registered with USCC {call.Provider}."));
        }

        if (facts.Policy is not { } policy)
        {
            return GrantDecision.Refuse(new LedgerException(Reason.YearNotOpen,
                $"There is no policy for {facts.Year}; the bureau must call SetYearPolicy (and FundBudget) first."));
        }

        var today = ChinaCalendar.DateOf(now);
        if (!policy.InForceOn(today))
        {
            return GrantDecision.Refuse(new LedgerException(Reason.YearNotOpen,
                $"The {facts.Year} policy takes effect on {policy.EffectiveFrom:yyyy-MM-dd} (Art 19); nothing is granted before it (today is {today:yyyy-MM-dd})."), policy);
        }

        var ratio = policy.RatioFor(contract.SelfControllable, facts.Sme);
        var quota = VoucherPolicy.ContractQuota(new Fen(contract.AmountFen), ratio);
        if (contract.UsesInnovationVoucher)
        {
            return GrantDecision.Refuse(new LedgerException(Reason.InnovationVoucherConflict,
                $"Contract '{call.ContractNo}' already enjoys the science-and-technology innovation voucher, so it gets no compute-voucher quota (Art 15)."),
                policy, ratio, quota);
        }

        if (EligibilityRule.Refusal(facts.Dealing) is { } ineligible)
        {
            return GrantDecision.Refuse(ineligible, policy, ratio, quota);
        }

        if (facts.ContractCommitted + call.Amount > quota)
        {
            return GrantDecision.Refuse(ContractQuotaExceeded(call, contract, ratio, quota), policy, ratio, quota);
        }

        var figures = facts.Figures;
        if (UnitYearCap.Refusal($"Unit {contract.UnitUscc}", facts.Year, figures.Cap, figures.GrantedOpen, figures.Deducted, call.Amount, "granted") is { } overCap)
        {
            return GrantDecision.Refuse(overCap, policy, ratio, quota);
        }

        if (facts.Pool is not { } pool)
        {
            return GrantDecision.Refuse(new LedgerException(Reason.BudgetExhausted,
                $"The {facts.Year} budget pool has not been funded; the bureau calls FundBudget."), policy, ratio, quota);
        }

        if (pool < call.Amount)
        {
            return GrantDecision.Refuse(new LedgerException(Reason.BudgetExhausted,
                $"The {facts.Year} budget pool holds {pool}; {call.Amount} cannot be granted from it."), policy, ratio, quota);
        }

        return new GrantDecision(null, policy, ratio, quota, policy.ExpiryOf(now));
    }

    public static LedgerException ContractQuotaExceeded(GrantCall call, ContractRow contract, BasisPoints ratio, Fen quota) =>
        new(Reason.ContractQuotaExceeded,
            $"Contract '{call.ContractNo}' allows {quota} of quota ({contract.AmountFen} fen at {ratio}); {call.Amount} more would exceed it.");
}
