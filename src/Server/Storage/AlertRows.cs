using Microsoft.EntityFrameworkCore;

namespace QuotaLedger.Server.Storage;

public enum AlertKind : short
{
    UnitYearCap = 1,
    PoolLow = 2,
    GrantExpiring = 3,
    RedemptionPending = 4,
}

/// <summary>A year's alert rules, set by the bureau; a year without a row uses the defaults (<c>Alerts.AlertRules</c>).</summary>
public sealed class AlertRuleRow
{
    public int Year { get; set; }
    public List<int> UnitYearCapBp { get; set; } = [];
    public int PoolLowBp { get; set; }
    public int GrantExpiryDays { get; set; }
    public long GrantUnusedFen { get; set; }
    public int RedemptionPendingDays { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>An alert that fired. Append-only. The table also has <c>feed_order xid8</c>, its place in the change feed
/// (the raising entry's, else the writing transaction's id; set by a trigger and kept out of the model).</summary>
public sealed class AlertRow
{
    public long Id { get; set; }
    public int Year { get; set; }
    public AlertKind Kind { get; set; }
    public int ThresholdBp { get; set; }
    public int ThresholdDays { get; set; }
    public string? UnitUscc { get; set; }
    public string? ProviderUscc { get; set; }
    public long? GrantId { get; set; }
    public long? RedemptionId { get; set; }
    public long FigureFen { get; set; }
    public long LimitFen { get; set; }
    public long BaseFen { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public long? EntryId { get; set; }
}

/// <summary>Whether a figure's threshold may fire: no row, or armed, means it may; it is disarmed when it fires and
/// armed again when the figure goes back. The subject is the unit's USCC for a unit-year, empty for a year's pool.</summary>
public sealed class AlertArmingRow
{
    public int Year { get; set; }
    public AlertKind Kind { get; set; }
    public required string Subject { get; set; }
    public int ThresholdBp { get; set; }
    public bool Armed { get; set; }
    public DateTimeOffset ChangedAt { get; set; }
}

internal static class AlertModel
{
    public static void Configure(ModelBuilder model)
    {
        model.Entity<AlertRuleRow>(e =>
        {
            e.ToTable("alert_rules", t => t.HasCheckConstraint("ck_alert_rules_values",
                "pool_low_bp BETWEEN 0 AND 10000 AND grant_expiry_days BETWEEN 0 AND 31 AND grant_unused_fen >= 0"
                + " AND redemption_pending_days BETWEEN 0 AND 3650"));
            e.HasKey(r => r.Year);
            e.Property(r => r.Year).ValueGeneratedNever();
        });

        model.Entity<AlertRow>(e =>
        {
            e.ToTable("alerts");
            e.HasIndex(a => new { a.Year, a.Kind, a.Id });
            e.HasIndex(a => new { a.UnitUscc, a.Id });
            e.HasIndex(a => new { a.ProviderUscc, a.Id });
            // The time-based alerts fire once per grant and per application, whichever pass (or server) gets there first.
            e.HasIndex(a => a.GrantId).IsUnique().HasFilter($"kind = {(short)AlertKind.GrantExpiring}")
                .HasDatabaseName("ux_alerts_grant_expiring");
            e.HasIndex(a => a.RedemptionId).IsUnique().HasFilter($"kind = {(short)AlertKind.RedemptionPending}")
                .HasDatabaseName("ux_alerts_redemption_pending");
        });

        model.Entity<AlertArmingRow>(e =>
        {
            e.ToTable("alert_arming");
            e.HasKey(a => new { a.Year, a.Kind, a.Subject, a.ThresholdBp });
        });
    }
}
