namespace QuotaLedger.Server.Rules;

/// <summary>What the eligibility rules read of one provider and one unit about to deal with each other: a grant, a
/// deduction, or a gift (both the operator's side and the resident's).</summary>
/// <param name="Provider">The provider's USCC.</param>
/// <param name="Unit">The unit's USCC.</param>
/// <param name="ProviderGood">The provider is in good standing.</param>
/// <param name="UnitGood">The unit is in good standing.</param>
/// <param name="Related">They are related parties: declared so and not ended, or one USCC registered as both.</param>
/// <param name="Approved">The provider's latest review of the unit approves it.</param>
public readonly record struct Dealing(string Provider, string Unit, bool ProviderGood, bool UnitGood, bool Related, bool Approved);

/// <summary>Who may deal with whom (Art 4, 5, 7, 17; POLICY.md, Decision "every path"): the same rules wherever
/// quota reaches or leaves a unit, checked in one fixed order.</summary>
public static class EligibilityRule
{
    /// <summary>The refusal of the first rule the pair breaks, or null when they may deal.</summary>
    public static LedgerException? Refusal(in Dealing dealing)
    {
        if (!dealing.ProviderGood)
        {
            return Suspended("provider", dealing.Provider);
        }

        if (!dealing.UnitGood)
        {
            return Suspended("unit", dealing.Unit);
        }

        if (dealing.Related)
        {
            return new LedgerException(Reason.RelatedParties, dealing.Provider == dealing.Unit
                ? $"{dealing.Provider} is registered both as provider and as unit, and may not deal with itself (Art 5.6)."
                : $"Provider {dealing.Provider} and unit {dealing.Unit} are declared related parties and may not deal with each other (Art 5.6).");
        }

        if (!dealing.Approved)
        {
            return new LedgerException(Reason.UnitNotApproved,
                $"Unit {dealing.Unit} has no approved qualification review from provider {dealing.Provider} (Art 7); the provider calls ReviewUnit first.");
        }

        return null;
    }

    public static LedgerException Suspended(string party, string uscc) =>
        new(Reason.PartySuspended, $"The {party} {uscc} is not in good standing (suspended or blacklisted, Art 4, 5, 17) and can neither grant, receive, deduct, give nor redeem quota.");
}
