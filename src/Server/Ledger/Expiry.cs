using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.Server.Telemetry;

namespace QuotaLedger.Server.Ledger;

/// <summary>The expiry pass (Art 10, 11): every open grant past its expiry returns what it holds to its year's pool.
/// Each grant is closed in a transaction of its own under its unit-year lock (the lock a deduction takes), after
/// checking again that it is still open: so a deduction and an expiry of one grant never both win, several servers
/// running the pass at once never expire a grant twice, and stopping mid-pass leaves every grant either closed or due.</summary>
internal static partial class Expiry
{
    private const int BatchSize = 200;

    /// <summary>The most grants a grant call expires before it is judged; the rest are the background pass's.</summary>
    private const int SweepLimit = 1_000;

    /// <summary>What a pass did: grants expired, what they returned, and grants it could not expire (each logged; the
    /// next pass tries them again).</summary>
    public sealed record Outcome(int ExpiredGrants, Fen Returned, int Failed);

    /// <summary>The expiry pass: every due grant. <paramref name="trigger"/> (<see cref="LedgerMetrics.Triggers"/>)
    /// tags what it records.</summary>
    public static async Task<Outcome> ExpireDueAsync(
        LedgerDb db, DateTimeOffset now, string requestId, string caller, string trigger, LedgerMetrics metrics, ILogger logger, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var outcome = await ExpireAsync(db, db.Grants, now, requestId, caller, enough: null, int.MaxValue, logger, ct);
            metrics.ExpiryPass(trigger, outcome, Stopwatch.GetElapsedTime(started));
            return outcome;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            metrics.ExpiryPassFailed(trigger, e, Stopwatch.GetElapsedTime(started));
            throw;
        }
    }

    /// <summary>Whether an open grant of the contract or of the year is past its expiry at <paramref name="now"/>: one
    /// probe of the partial index on open grants' expiry, which holds few rows past it once the passes have run.</summary>
    public static Task<bool> AnyDueAsync(LedgerDb db, long contractId, int year, DateTimeOffset now, CancellationToken ct) =>
        db.Grants.Where(g => g.State == GrantState.Open && (g.ContractId == contractId || g.Year == year)).AnyAsync(Grants.DueAt(now), ct);

    /// <summary>Before a grant: makes the stored figures what expiry says they are at <paramref name="now"/>. The
    /// contract's due grants stop holding its quota, and when the pool's balance alone is short of
    /// <paramref name="amount"/>, the year's due grants return what they hold until it is not (Art 11: reclaimed for
    /// reuse), whether or not the expiry pass has run. Each grant in a transaction of its own, as the pass does, and at
    /// most <see cref="SweepLimit"/> of them, so a backlog never holds a grant call for long.</summary>

    public static async Task SweepBeforeGrantAsync(LedgerDb db, long contractId, int year, Fen amount, DateTimeOffset now, ILogger logger, CancellationToken ct)
    {
        await ExpireAsync(db, db.Grants.Where(g => g.ContractId == contractId), now, "expiry-before-grant", Callers.ExpiryPass, enough: null, SweepLimit, logger, ct);
        await ExpireAsync(db, db.Grants.Where(g => g.Year == year), now, "expiry-before-grant", Callers.ExpiryPass,
            async () => await PoolBalanceAsync(db, year, ct) >= amount.Value, SweepLimit, logger, ct);
    }

    private static Task<long> PoolBalanceAsync(LedgerDb db, int year, CancellationToken ct) =>
        db.Accounts.Where(a => a.Kind == AccountKind.Pool && a.Year == year).Select(a => a.BalanceFen).SingleOrDefaultAsync(ct);

    private static async Task<Outcome> ExpireAsync(LedgerDb db, IQueryable<GrantRow> grants, DateTimeOffset now, string requestId, string caller,
        Func<Task<bool>>? enough, int limit, ILogger logger, CancellationToken ct)
    {
        var (expired, failed, tried) = (0, 0, 0);
        var returned = Fen.Zero;
        var after = 0L;
        while (tried < limit && (enough is null || !await enough()))
        {
            var due = await grants.AsNoTracking()
                .Where(g => g.State == GrantState.Open && g.Id > after).Where(Grants.DueAt(now))
                .OrderBy(g => g.Id)
                .Select(g => g.Id)
                .Take(Math.Min(BatchSize, limit - tried))
                .ToListAsync(ct);
            if (due.Count == 0)
            {
                break;
            }

            foreach (var grantId in due)
            {
                tried++;
                Fen? held;
                try
                {
                    held = await ExpireOneAsync(db, grantId, now, requestId, caller, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // One grant the pass cannot expire does not stop it: the rest go on, and this one is due next time.
                    LogGrantFailed(logger, grantId, e);
                    db.ChangeTracker.Clear();
                    failed++;
                    continue;
                }

                if (held is { } value)
                {
                    expired++;
                    returned += value;
                    if (enough is not null && value.IsPositive && await enough())
                    {
                        return new Outcome(expired, returned, failed);
                    }
                }
            }

            after = due[^1];
        }

        return new Outcome(expired, returned, failed);
    }

    /// <summary>Expires one grant if it is still open and due; null when another pass, a release or nothing did.</summary>
    private static async Task<Fen?> ExpireOneAsync(LedgerDb db, long grantId, DateTimeOffset now, string requestId, string caller, CancellationToken ct)
    {
        db.ChangeTracker.Clear();
        await using var transaction = await db.Database.BeginTransactionAsync(ct);
        var (_, grant) = (await Grants.LockAsync(db, grantId, ct))!.Value;
        if (grant.State != GrantState.Open || !Grants.IsDue(grant.ExpiresAt, now))
        {
            return null;
        }

        var (held, _) = await GrantReturns.CloseAsync(db, grant, GrantState.Expired, requestId, caller, now,
            $"expired at {grant.ExpiresAt:u}", statementRef: null, ct);
        await transaction.CommitAsync(ct);
        return held;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Grant {GrantId} could not be expired; it stays due and is tried again by the next pass")]
    private static partial void LogGrantFailed(ILogger logger, long grantId, Exception exception);
}

/// <summary>The <c>Expiry</c> section.</summary>
public sealed class ExpiryOptions : ICheckedSettings
{
    /// <summary>Run the expiry pass in the background.</summary>
    public bool Enabled { get; set; } = true;

    public TimeSpan Interval { get; set; } = TimeSpan.FromMinutes(1);

    public IEnumerable<string> Problems() => Settings.Range(nameof(Interval), Interval, TimeSpan.FromMilliseconds(10), TimeSpan.FromDays(1));
}

/// <summary>Runs the expiry pass every <c>Expiry:Interval</c> (default one minute) on the server's clock.
/// <c>Expiry:Enabled=false</c> leaves it to <c>AdminService.ExpireDueGrants</c>.</summary>
internal sealed partial class ExpiryService(
    IServiceScopeFactory scopes,
    TimeProvider time,
    ExpiryOptions options,
    LedgerMetrics metrics,
    ILogger<ExpiryService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Enabled)
        {
            return;
        }

        using var timer = new PeriodicTimer(options.Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                var db = scope.ServiceProvider.GetRequiredService<LedgerDb>();
                var now = time.GetUtcNow();
                var outcome = await Expiry.ExpireDueAsync(db, now, $"expiry-pass-{now:yyyyMMddTHHmmssZ}", Callers.ExpiryPass,
                    LedgerMetrics.Triggers.Schedule, metrics, logger, stoppingToken);
                if (outcome.ExpiredGrants > 0)
                {
                    LogExpired(logger, outcome.ExpiredGrants, outcome.Returned.Value);
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogPassFailed(logger, e);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Expiry pass returned {ReturnedFen} fen from {Grants} grants to the pool")]
    private static partial void LogExpired(ILogger logger, int grants, long returnedFen);

    [LoggerMessage(Level = LogLevel.Error, Message = "Expiry pass failed; it runs again at the next tick")]
    private static partial void LogPassFailed(ILogger logger, Exception exception);
}
