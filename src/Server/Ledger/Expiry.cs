using System.Diagnostics;
using Google.Protobuf;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Engine;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.Server.Telemetry;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;

namespace QuotaLedger.Server.Ledger;

/// <summary>The expiry pass (Art 10, 11): every open grant past its expiry returns what it holds to its year's pool.
/// The pass finds the due grants a page at a time and sends each page to the write engine, which queues each grant on
/// its pool and unit-year (the lanes a deduction, a grant and a release of it take) and closes it in whichever
/// transaction those lanes fall into, after <see cref="ExpiryRules.Decide"/> found it still open and due under the locks: so a
/// deduction and an expiry of one grant never both win, several servers running the pass at once never expire a grant
/// twice, and stopping mid-pass leaves every grant either closed or due.</summary>
internal static partial class Expiry
{
    /// <summary>What an expiry is called where the engine names a write's kind (its span, its log lines).</summary>
    public const string Method = "Expire";

    private const int PageSize = 200;

    /// <summary>The most grants a grant call expires before it is judged; the rest are the background pass's.</summary>
    private const int SweepLimit = 1_000;

    /// <summary>What a pass did: grants expired, what they returned, and grants it could not expire (each logged; the
    /// next pass tries them again).</summary>
    public sealed record Outcome(int ExpiredGrants, Fen Returned, int Failed);

    /// <summary>The expiry pass: every due grant. <paramref name="trigger"/> (<see cref="LedgerMetrics.Triggers"/>)
    /// tags what it records.</summary>
    public static async Task<Outcome> ExpireDueAsync(LedgerDb db, WriteQueue engine, DateTimeOffset now, string requestId, string caller, string trigger,
        LedgerMetrics metrics, ILogger logger, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var outcome = await ExpireAsync(db, engine, db.Grants, now, requestId, caller, enough: null, int.MaxValue, logger, ct);
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
    /// <paramref name="amount"/>, the year's due grants return what they hold, a page at a time, until it is not (Art
    /// 11: reclaimed for reuse), whether or not the expiry pass has run. Through the engine, as the pass, and at most
    /// <see cref="SweepLimit"/> grants, so a backlog never holds a grant call for long.</summary>
    public static async Task SweepBeforeGrantAsync(LedgerDb db, WriteQueue engine, long contractId, int year, Fen amount, DateTimeOffset now, ILogger logger,
        CancellationToken ct)
    {
        await ExpireAsync(db, engine, db.Grants.Where(g => g.ContractId == contractId), now, "expiry-before-grant", Callers.ExpiryPass, enough: null,
            SweepLimit, logger, ct);
        await ExpireAsync(db, engine, db.Grants.Where(g => g.Year == year), now, "expiry-before-grant", Callers.ExpiryPass,
            async () => await PoolBalanceAsync(db, year, ct) >= amount.Value, SweepLimit, logger, ct);
    }

    private static Task<long> PoolBalanceAsync(LedgerDb db, int year, CancellationToken ct) =>
        db.Accounts.Where(a => a.Kind == AccountKind.Pool && a.Year == year).Select(a => a.BalanceFen).SingleOrDefaultAsync(ct);

    private static async Task<Outcome> ExpireAsync(LedgerDb db, WriteQueue engine, IQueryable<GrantRow> grants, DateTimeOffset now, string requestId,
        string caller, Func<Task<bool>>? enough, int limit, ILogger logger, CancellationToken ct)
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
                .Take(Math.Min(Math.Min(PageSize, engine.MaxWaiting), limit - tried))
                .ToListAsync(ct);
            if (due.Count == 0)
            {
                break;
            }

            tried += due.Count;
            after = due[^1];
            Task<IMessage>[] answers;
            try
            {
                answers = await engine.ExpireManyAsync(due, requestId, caller, ct);
            }
            catch (LedgerException e) when (e.Reason == Reason.Overloaded)
            {
                // The engine takes no more writes now (stopping, or its queue full): these grants stay due, and the
                // next pass tries them again.
                LogPageRefused(logger, due.Count, e.Message);
                failed += due.Count;
                break;
            }

            for (var i = 0; i < due.Count; i++)
            {
                if (answers[i].IsCompletedSuccessfully)
                {
                    var one = (ExpireDueGrantsResponse)answers[i].Result;
                    expired += one.ExpiredGrants;
                    returned += new Fen(one.ReturnedFen);
                    continue;
                }

                // One grant the pass cannot expire does not stop it: the rest go on, and this one is due next time.
                LogGrantFailed(logger, due[i], answers[i].Exception?.GetBaseException());
                failed++;
            }
        }

        return new Outcome(expired, returned, failed);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Grant {GrantId} could not be expired; it stays due and is tried again by the next pass")]
    private static partial void LogGrantFailed(ILogger logger, long grantId, Exception? exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The write engine refused {Count} due grants ({Reason}); they stay due and the next pass tries them again")]
    private static partial void LogPageRefused(ILogger logger, int count, string reason);
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
    WriteQueue engine,
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
                var outcome = await Expiry.ExpireDueAsync(db, engine, now, $"expiry-pass-{now:yyyyMMddTHHmmssZ}", Callers.ExpiryPass,
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
