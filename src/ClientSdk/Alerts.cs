namespace QuotaLedger.Client;

/// <summary>What an alert is about.</summary>
public enum AlertKind
{
    /// <summary>A unit-year reached a share of its cap (80%, 90%, 100% by default).</summary>
    UnitYearCap = 1,
    /// <summary>The year's pool fell below a share of its funding (10% by default).</summary>
    PoolLow = 2,
    /// <summary>A grant expires within some days (7 by default) holding more than some unused quota (1,000 yuan by default).</summary>
    GrantExpiring = 3,
    /// <summary>A redemption application has been pending longer than some days (30 by default).</summary>
    RedemptionPending = 4,
}

/// <summary>A year's alert rules (the defaults when the bureau set none).</summary>
/// <param name="Year">The year.</param>
/// <param name="UnitYearCapBp">The shares of a unit-year's cap that alert, in basis points, ascending.</param>
/// <param name="PoolLowBp">The share of funding below which the pool alerts, in basis points; 0 turns it off.</param>
/// <param name="GrantExpiryDays">How many days before its expiry a grant alerts; 0 turns it off.</param>
/// <param name="GrantUnused">A grant alerts only when it holds more than this.</param>
/// <param name="RedemptionPendingDays">After how many days pending an application alerts; 0 turns it off.</param>
/// <param name="Defaults">Whether these are the defaults (no rules were set for the year).</param>
public sealed record AlertRules(int Year, IReadOnlyList<int> UnitYearCapBp, int PoolLowBp, int GrantExpiryDays, Fen GrantUnused, int RedemptionPendingDays,
    bool Defaults = false);

/// <summary>An alert: a threshold crossed, fired once, in the transaction of the entry that crossed it (or, for the
/// time-based kinds, by the ledger's alert pass).</summary>
/// <param name="AlertId">The alert.</param>
/// <param name="Year">The year.</param>
/// <param name="Kind">What it is about.</param>
/// <param name="ThresholdBp">The share crossed, in basis points (cap and pool alerts).</param>
/// <param name="ThresholdDays">The days (grant-expiring and pending alerts).</param>
/// <param name="UnitUscc">The unit, when it concerns one.</param>
/// <param name="ProviderUscc">The provider, when it concerns one.</param>
/// <param name="GrantId">The grant (grant-expiring alerts).</param>
/// <param name="RedemptionId">The application (pending alerts).</param>
/// <param name="Figure">The figure that crossed: the unit-year's committed quota, the pool, the grant's unused quota, the amount pending.</param>
/// <param name="Limit">The threshold as an amount.</param>
/// <param name="Base">What the threshold is a share of: the cap, the funding, the grant, the application.</param>
/// <param name="CreatedAt">When it fired.</param>
/// <param name="EntryId">The journal entry that crossed it; null for the time-based kinds.</param>
public sealed record AlertInfo(long AlertId, int Year, AlertKind Kind, int ThresholdBp, int ThresholdDays, string? UnitUscc, string? ProviderUscc,
    long? GrantId, long? RedemptionId, Fen Figure, Fen Limit, Fen Base, DateTimeOffset CreatedAt, long? EntryId);

/// <summary>Which alerts to list; unset filters match everything the caller may see.</summary>
/// <param name="Year">The year.</param>
/// <param name="Kind">The kind.</param>
/// <param name="UnitUscc">The unit.</param>
/// <param name="ProviderUscc">The provider.</param>
public sealed record AlertFilter(int? Year = null, AlertKind? Kind = null, string? UnitUscc = null, string? ProviderUscc = null);

/// <summary>What a run of the alert pass fired.</summary>
/// <param name="GrantExpiring">Grant-expiring alerts fired.</param>
/// <param name="RedemptionPending">Pending-application alerts fired.</param>
public sealed record AlertPassResult(int GrantExpiring, int RedemptionPending);
