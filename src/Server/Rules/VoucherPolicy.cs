namespace QuotaLedger.Server.Rules;

/// <summary>One year's values of the policy (POLICY.md, Art 6). Values, not constants, because Art 19 lets them change.</summary>
public sealed record VoucherPolicy(
    int Year,
    BasisPoints SelfControllableRatio,
    BasisPoints OtherRatio,
    BasisPoints SmeBonus,
    Fen UnitYearCap,
    Fen UnitYearFloor,
    Fen YearTotal,
    int ValidityMonths,
    DateOnly EffectiveFrom)
{
    /// <summary>The day the revised measures take effect (Art 19).</summary>
    public static readonly DateOnly MeasuresTakeEffect = new(2026, 5, 13);

    /// <summary>The 2026 figures of the Chengdu measures.</summary>
    public static readonly VoucherPolicy Chengdu2026 = new(
        Year: 2026,
        SelfControllableRatio: new BasisPoints(5_000),
        OtherRatio: new BasisPoints(3_000),
        SmeBonus: new BasisPoints(1_000),
        UnitYearCap: new Fen(5_000_000_00),
        UnitYearFloor: new Fen(10_000_00),
        YearTotal: new Fen(100_000_000_00),
        ValidityMonths: 1,
        EffectiveFrom: MeasuresTakeEffect);

    /// <summary>When a year's policy takes effect unless the bureau says otherwise: the year's first day, but never
    /// before the measures themselves.</summary>
    public static DateOnly DefaultEffectiveFrom(int year)
    {
        var first = new DateOnly(year, 1, 1);
        return first < MeasuresTakeEffect ? MeasuresTakeEffect : first;
    }

    /// <summary>The effective-date rule (Art 19): whether the policy is in force on <paramref name="day"/> (China time).</summary>
    public bool InForceOn(DateOnly day) => day >= EffectiveFrom;

    /// <summary>The ratio rule: the share of the service fee the voucher may cover, by the contract's
    /// self-controllable flag, plus the SME bonus.</summary>
    public BasisPoints RatioFor(bool selfControllable, bool sme) =>
        (selfControllable ? SelfControllableRatio : OtherRatio) + (sme ? SmeBonus : new BasisPoints(0));

    /// <summary>The contract quota rule: quota on a contract never exceeds its amount times the ratio.</summary>
    public static Fen ContractQuota(Fen contractAmount, BasisPoints ratio) => contractAmount.ShareAt(ratio);

    /// <summary>The validity rule: a grant made at <paramref name="grantedAt"/> expires this many calendar months later, China time.</summary>
    public DateTimeOffset ExpiryOf(DateTimeOffset grantedAt) => ChinaCalendar.AddMonths(grantedAt, ValidityMonths);

    /// <summary>Checks that the values make a coherent policy; names the first field that does not.</summary>
    public void EnsureCoherent()
    {
        Validate.Year(Year);
        CheckRatio(SelfControllableRatio, "self_controllable_ratio_bp");
        CheckRatio(OtherRatio, "other_ratio_bp");
        CheckRatio(SmeBonus, "sme_bonus_bp");
        CheckRatio(SelfControllableRatio + SmeBonus, "self_controllable_ratio_bp + sme_bonus_bp");
        CheckRatio(OtherRatio + SmeBonus, "other_ratio_bp + sme_bonus_bp");
        Validate.Amount(UnitYearCap.Value, "unit_year_cap_fen");
        Validate.Amount(YearTotal.Value, "year_total_fen");
        if (UnitYearFloor.Value < 0 || UnitYearFloor > UnitYearCap)
        {
            throw new LedgerException(Reason.InvalidAmount, "unit_year_floor_fen must be between 0 and unit_year_cap_fen.");
        }

        if (ValidityMonths is < 1 or > 24)
        {
            throw new LedgerException(Reason.InvalidArgument, "validity_months must be from 1 to 24.");
        }

        if (EffectiveFrom.Year != Year)
        {
            throw new LedgerException(Reason.InvalidArgument,
                $"effective_from must be a day of {Year}; got {EffectiveFrom:yyyy-MM-dd}. The measures take effect on {MeasuresTakeEffect:yyyy-MM-dd} (Art 19).");
        }
    }

    private static void CheckRatio(BasisPoints ratio, string field)
    {
        if (ratio.Value is < 0 or > 10_000)
        {
            throw new LedgerException(Reason.InvalidArgument, $"{field} must be from 0 to 10000 basis points; got {ratio.Value}.");
        }
    }
}

/// <summary>The unit-year cap rule (POLICY.md, Decision): what a unit-year has committed, the open balance of its
/// unexpired grants plus everything deducted, never exceeds the year's cap.</summary>
public static class UnitYearCap
{
    public static Fen Headroom(Fen cap, Fen grantedOpen, Fen deducted) => Fen.Max(Fen.Zero, cap - grantedOpen - deducted);

    public static bool Allows(Fen cap, Fen grantedOpen, Fen deducted, Fen amount) => grantedOpen + deducted + amount <= cap;

    /// <summary>The refusal of <paramref name="amount"/> more for a unit-year, or null when the cap allows it. The grant
    /// and the gift both refuse here; <paramref name="who"/> names the unit as the call knows it ("Unit …", "Resident …")
    /// and <paramref name="verb"/> what the call does with quota ("granted", "given").</summary>
    public static LedgerException? Refusal(string who, int year, Fen cap, Fen grantedOpen, Fen deducted, Fen amount, string verb) =>
        Allows(cap, grantedOpen, deducted, amount)
            ? null
            : new LedgerException(Reason.UnitYearCapExceeded,
                $"{who} has committed {grantedOpen + deducted} of its {cap} cap for {year}; at most {Headroom(cap, grantedOpen, deducted)} more can be {verb}.");
}

/// <summary>The year-total rule (Art 6): what the bureau has funded for a year never exceeds the year's total, whether
/// the funding grows (FundBudget) or the total changes (SetYearPolicy).</summary>
public static class YearTotal
{
    public static bool Allows(Fen total, Fen funded, Fen more) => funded + more <= total;

    /// <summary>The refusal of funding <paramref name="more"/> on top of <paramref name="funded"/> under
    /// <paramref name="total"/>, or null when the total allows it. <paramref name="more"/> is zero when it is the total
    /// that changes (a funding is never zero).</summary>
    public static LedgerException? Refusal(int year, Fen total, Fen funded, Fen more) =>
        Allows(total, funded, more)
            ? null
            : new LedgerException(Reason.YearTotalExceeded, more.IsPositive
                ? $"{year} is funded with {funded} of its {total} total; {more} more would exceed it (Art 6)."
                : $"{year} is already funded with {funded}; its total cannot be set below that.");
}
