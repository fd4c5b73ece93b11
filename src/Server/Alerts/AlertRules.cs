using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Alerts;

/// <summary>A year's alert rules (thresholds in basis points, money in fen). A year the bureau set none for uses
/// <see cref="Defaults"/>.</summary>
internal sealed record AlertRules(int Year, int[] UnitYearCapBp, int PoolLowBp, int GrantExpiryDays, Fen GrantUnused, int RedemptionPendingDays,
    bool IsDefault, DateTimeOffset? UpdatedAt)
{
    /// <summary>The unused quota above which a grant about to expire alerts, by default: 1,000 yuan. Small enough that a
    /// unit about to lose a meaningful part of a grant hears of it, large enough that the remainders of grants that were
    /// almost used up do not bury the bureau in alerts.</summary>
    public static readonly Fen DefaultGrantUnused = new(100_000);

    public static AlertRules Defaults(int year) => new(year, [8_000, 9_000, 10_000], 1_000, 7, DefaultGrantUnused, 30, IsDefault: true, UpdatedAt: null);

    public static async Task<AlertRules> ForYearAsync(LedgerDb db, int year, CancellationToken ct) =>
        await db.AlertRules.AsNoTracking().SingleOrDefaultAsync(r => r.Year == year, ct) is { } row ? FromRow(row) : Defaults(year);

    public static AlertRules FromRow(AlertRuleRow row) =>
        new(row.Year, [.. row.UnitYearCapBp], row.PoolLowBp, row.GrantExpiryDays, new Fen(row.GrantUnusedFen), row.RedemptionPendingDays, false, row.UpdatedAt);

    /// <summary>The rules a request asks for, or INVALID_ARGUMENT naming the field that is wrong.</summary>
    public static AlertRules FromApi(V1.AlertRules? given)
    {
        if (given is null)
        {
            throw new LedgerException(Reason.InvalidArgument, "rules is required.");
        }

        var year = Validate.Year(given.Year, "rules.year");
        var shares = given.UnitYearCapBp.ToArray();
        if (shares.Length > 10)
        {
            throw new LedgerException(Reason.InvalidArgument, $"rules.unit_year_cap_bp holds at most 10 thresholds; got {shares.Length}.");
        }

        for (var i = 0; i < shares.Length; i++)
        {
            if (shares[i] is < 1 or > 10_000 || (i > 0 && shares[i] <= shares[i - 1]))
            {
                throw new LedgerException(Reason.InvalidArgument,
                    $"rules.unit_year_cap_bp must be strictly ascending basis points of the cap, each 1 to 10000; got [{string.Join(", ", shares)}].");
            }
        }

        Within(given.PoolLowBp, 0, 10_000, "rules.pool_low_bp", "basis points of the year's funding (0: no pool alert)");
        Within(given.GrantExpiryDays, 0, 31, "rules.grant_expiry_days", "days (0: no grant-expiry alert)");
        if (given.GrantUnusedFen < 0)
        {
            throw new LedgerException(Reason.InvalidArgument, $"rules.grant_unused_fen must be 0 or more; got {given.GrantUnusedFen}.");
        }

        Within(given.RedemptionPendingDays, 0, 3_650, "rules.redemption_pending_days", "days (0: no pending-redemption alert)");
        return new AlertRules(year, shares, given.PoolLowBp, given.GrantExpiryDays, new Fen(given.GrantUnusedFen), given.RedemptionPendingDays, false, null);
    }

    public V1.AlertRules ToApi() => new()
    {
        Year = Year,
        UnitYearCapBp = { UnitYearCapBp },
        PoolLowBp = PoolLowBp,
        GrantExpiryDays = GrantExpiryDays,
        GrantUnusedFen = GrantUnused.Value,
        RedemptionPendingDays = RedemptionPendingDays,
        Defaults = IsDefault,
        UpdatedAt = UpdatedAt?.ToTimestamp(),
    };

    private static void Within(int value, int min, int max, string field, string what)
    {
        if (value < min || value > max)
        {
            throw new LedgerException(Reason.InvalidArgument, $"{field} must be {min} to {max} {what}; got {value}.");
        }
    }
}
