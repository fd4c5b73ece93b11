namespace QuotaLedger.Server.Rules;

/// <summary>One threshold of a figure alert: its share in basis points, the figure at which it is reached, and whether
/// the figure is past it now.</summary>
public readonly record struct Threshold(int Bp, long Limit, bool Past);

/// <summary>The figure alerts' rules: when a unit-year's committed quota has reached a share of its cap, and when a year's
/// pool has fallen below a share of its funding. A threshold fires when it is armed and the figure is past it, and is
/// disarmed as it fires; it is armed again once the figure is back on the other side. Pure: the engine and the posting
/// path both call these.</summary>
public static class FigureAlerts
{
    /// <summary>The unit-year cap thresholds at <paramref name="bps"/> of <paramref name="cap"/> for what the unit-year
    /// has <paramref name="committed"/> (granted open plus deducted); none without a cap.</summary>
    public static IReadOnlyList<Threshold> UnitYearCap(IReadOnlyList<int> bps, Fen cap, Fen committed) =>
        cap.IsPositive ? [.. bps.Select(bp => ReachedAt(bp, ShareRoundedUp(cap.Value, bp), committed.Value))] : [];

    /// <summary>The pool-low threshold at <paramref name="bp"/> of what the year was <paramref name="funded"/>, for the
    /// pool as it stands (net of expired grants); none when the rule is off or the year unfunded.</summary>
    public static IReadOnlyList<Threshold> PoolLow(int bp, long funded, long pool)
    {
        if (bp == 0 || funded <= 0)
        {
            return [];
        }

        var limit = (long)((Int128)funded * bp / 10_000);
        return [new Threshold(bp, limit, pool < limit)];
    }

    /// <summary>Which thresholds fire now (armed and past) and which are armed again (disarmed and not past);
    /// <paramref name="armed"/> says whether a threshold is armed (one never crossed is).</summary>
    public static (int[] Fire, int[] Rearm) Cross(IReadOnlyList<Threshold> thresholds, Func<int, bool> armed) =>
        ([.. thresholds.Where(t => t.Past && armed(t.Bp)).Select(t => t.Bp)], [.. thresholds.Where(t => !t.Past && !armed(t.Bp)).Select(t => t.Bp)]);

    /// <summary>ceil(value * bp / 10000): the least figure that has reached bp of value.</summary>
    private static long ShareRoundedUp(long value, int bp) => (long)(((Int128)value * bp + 9_999) / 10_000);

    private static Threshold ReachedAt(int bp, long limit, long figure) => new(bp, limit, figure >= limit);
}
