namespace QuotaLedger.Server.Rules;

/// <summary>What the eligibility rules read of one provider and one unit about to deal with each other: a grant, a
/// deduction, or a gift (both the operator's side and the resident's).</summary>
/// <param name="Provider">The provider's USCC.</param>
/// <param name="Unit">The unit's USCC.</param>
/// <param name="ProviderGood">The provider is in good standing.</param>
/// <param name="UnitGood">The unit is in good standing.</param>
/// <param name="Related">They are declared related parties and the relation is not ended (one USCC on both sides is
/// <see cref="RelatedParties"/>' to see).</param>
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

        if (RelatedParties.Refusal(dealing.Provider, dealing.Unit, dealing.Related) is { } related)
        {
            return related;
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

/// <summary>The related-party rule (Art 5.6; POLICY.md, Decision "every path"): a provider and a unit declared related
/// may not deal with each other, and a USCC on both sides is its own related party. Quota (grant, deduction, gift), a
/// review, a contract and the end of a relation all refuse here.</summary>
public static class RelatedParties
{
    /// <summary>The refusal, or null when the two may deal.</summary>
    /// <param name="provider">The provider's USCC.</param>
    /// <param name="unit">The unit's USCC.</param>
    /// <param name="declared">A declared relation between them is in force (false where it is not read yet).</param>
    /// <param name="what">What they would deal in ("review", "contract"...); null for quota.</param>
    public static LedgerException? Refusal(string provider, string unit, bool declared, string? what = null)
    {
        if (provider == unit)
        {
            return new LedgerException(Reason.RelatedParties, what is null
                ? $"{provider} is registered both as provider and as unit, and may not deal with itself (Art 5.6)."
                : $"{provider} cannot be both provider and unit of one {what} (Art 5.6).");
        }

        if (declared)
        {
            return new LedgerException(Reason.RelatedParties, what is null
                ? $"Provider {provider} and unit {unit} are declared related parties and may not deal with each other (Art 5.6)."
                : $"Provider {provider} and unit {unit} are declared related parties (Art 5.6); a {what} between them would never get quota.");
        }

        return null;
    }
}
