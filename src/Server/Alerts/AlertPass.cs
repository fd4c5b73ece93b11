using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Alerts;

/// <summary>The alerts that fire from time rather than from an entry: a grant expiring within the year's days with
/// more than the year's unused amount still in it, and an application waiting for review the year's days or longer.
/// Each fires once per grant or application: a unique index per kind makes a second pass, a pass of another server, or
/// a pass after a restart insert nothing more. Nothing is kept in memory, so a pass that did not run (the server was
/// down) is caught up by the next one, which the server runs at start.</summary>
internal static class AlertPass
{
    public sealed record Outcome(int GrantExpiring, int RedemptionPending);

    // The ON CONFLICT targets name the unique indexes' predicates as written in the model (kind = 3: GrantExpiring,
    // kind = 4: RedemptionPending); PostgreSQL infers the index from literal text, never from a parameter.
    public static async Task<Outcome> RunAsync(LedgerDb db, DateTimeOffset now, CancellationToken ct)
    {
        var defaults = AlertRules.Defaults(0);
        var grants = await db.Database.ExecuteSqlRawAsync(GrantExpiringSql, [now, defaults.GrantExpiryDays, defaults.GrantUnused.Value], ct);
        var redemptions = await db.Database.ExecuteSqlAsync(
            $"""
            INSERT INTO alerts (year, kind, threshold_bp, threshold_days, unit_uscc, redemption_id, figure_fen, limit_fen, base_fen, created_at)
            SELECT rd.year, {(short)AlertKind.RedemptionPending}, 0, r.days, rd.unit_uscc, rd.id, rd.outstanding_fen, 0, rd.requested_fen, {now}
            FROM redemptions rd
            CROSS JOIN LATERAL (
              SELECT coalesce(min(ar.redemption_pending_days), {defaults.RedemptionPendingDays}) AS days
              FROM alert_rules ar WHERE ar.year = rd.year) r
            WHERE rd.state = {(short)RedemptionState.Submitted} AND rd.outstanding_fen > 0 AND r.days > 0
              AND rd.submitted_at <= {now} - make_interval(days => r.days)
            ORDER BY rd.id
            ON CONFLICT (redemption_id) WHERE kind = 4 DO NOTHING
            """,
            ct);
        return new Outcome(grants, redemptions);
    }

    /// <summary>Inserts a GrantExpiring alert for each open grant still within its validity at <c>{0}</c> (now) that is
    /// past it <c>r.days</c> later and holds more than <c>r.unused</c>; <c>{1}</c> and <c>{2}</c> are the default days
    /// and unused amount of a year without rules.</summary>
    private static readonly string GrantExpiringSql =
        $$"""
        INSERT INTO alerts (year, kind, threshold_bp, threshold_days, unit_uscc, provider_uscc, grant_id, figure_fen, limit_fen, base_fen, created_at)
        SELECT g.year, {{(short)AlertKind.GrantExpiring}}, 0, r.days, g.unit_uscc, g.provider_uscc, g.id, a.balance_fen, r.unused, g.amount_fen, {0}
        FROM grants g
        JOIN accounts a ON a.id = g.account_id
        CROSS JOIN LATERAL (
          SELECT coalesce(min(ar.grant_expiry_days), {1}) AS days,
                 coalesce(min(ar.grant_unused_fen), {2}) AS unused
          FROM alert_rules ar WHERE ar.year = g.year) r
        WHERE g.state = {{(short)GrantState.Open}} AND {{Grants.LiveSql("g", "{0}")}} AND r.days > 0
          AND {{Grants.DueSql("g", "{0} + make_interval(days => r.days)")}} AND a.balance_fen > r.unused
        ORDER BY g.id
        ON CONFLICT (grant_id) WHERE kind = 3 DO NOTHING
        """;
}

/// <summary>The <c>Alerts</c> section: the time-based alert pass.</summary>
public sealed class AlertOptions : ICheckedSettings
{
    /// <summary>Run the pass in the background: once at start (to catch up what fell due while no server ran), then
    /// every <see cref="Interval"/> on the server's clock.</summary>
    public bool Enabled { get; set; } = true;

    public TimeSpan Interval { get; set; } = TimeSpan.FromMinutes(5);

    public IEnumerable<string> Problems() => Settings.Range(nameof(Interval), Interval, TimeSpan.FromMilliseconds(10), TimeSpan.FromDays(1));
}

/// <summary>Runs <see cref="AlertPass"/> at start and every <c>Alerts:Interval</c>. <c>Alerts:Enabled=false</c> leaves
/// it to <c>AlertService.RunAlertPass</c>.</summary>
internal sealed partial class AlertPassService(
    IServiceScopeFactory scopes,
    TimeProvider time,
    AlertOptions options,
    ILogger<AlertPassService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Enabled)
        {
            return;
        }

        using var timer = new PeriodicTimer(options.Interval, time);
        do
        {
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                var outcome = await AlertPass.RunAsync(scope.ServiceProvider.GetRequiredService<LedgerDb>(), time.GetUtcNow(), stoppingToken);
                if (outcome.GrantExpiring + outcome.RedemptionPending > 0)
                {
                    LogRaised(logger, outcome.GrantExpiring, outcome.RedemptionPending);
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogPassFailed(logger, e);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Alert pass raised {Grants} grant-expiring and {Redemptions} redemption-pending alerts")]
    private static partial void LogRaised(ILogger logger, int grants, int redemptions);

    [LoggerMessage(Level = LogLevel.Error, Message = "Alert pass failed; it runs again at the next tick")]
    private static partial void LogPassFailed(ILogger logger, Exception exception);
}
