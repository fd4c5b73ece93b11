using QuotaLedger.Server.Engine;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Reflection;
using Npgsql;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Telemetry;

/// <summary>The server's own traces and metrics, named and tagged as the SDK's are (<c>QuotaLedger.Client</c>):
/// OpenTelemetry's conventions, durations in seconds, counts in UCUM annotations (<c>{deduction}</c>), the reason word
/// as <c>quotaledger.reason</c>. The meter always exists, exporter or not, so <c>dotnet-counters</c> can read it.</summary>
public static class ServerTelemetry
{
    /// <summary>The name of the server's <see cref="Meter"/> and <see cref="ActivitySource"/>.</summary>
    public const string Name = "QuotaLedger.Server";

    internal static readonly string Version =
        typeof(ServerTelemetry).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    /// <summary>One span per deduction transaction, made only while something listens.</summary>
    internal static readonly ActivitySource Source = new(Name, Version);
}

/// <summary>The ledger's instruments, on a meter made through the host's <see cref="IMeterFactory"/> (so each host,
/// a test's included, has its own). Recording is allocation-free: tags are prebuilt or constant reason words.</summary>
internal sealed class LedgerMetrics
{
    private static readonly InstrumentAdvice<double> s_seconds = new()
    {
        HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    };

    private static readonly KeyValuePair<string, object?> s_skipLocked = new(Tags.Locking, "skip_locked");
    private static readonly KeyValuePair<string, object?> s_waitForLocks = new(Tags.Locking, "wait");
    private static readonly KeyValuePair<string, object?> s_expired = new(Tags.Outcome, "expired");
    private static readonly KeyValuePair<string, object?> s_failed = new(Tags.Outcome, "failed");

    private readonly Counter<long> _applied;
    private readonly Counter<long> _refused;
    private readonly Counter<long> _replayed;
    private readonly Counter<long> _deferred;
    private readonly Counter<long> _fallbacks;
    private readonly Histogram<int> _batchSize;
    private readonly Histogram<double> _lockWait;
    private readonly Histogram<double> _commit;
    private readonly Counter<long> _expiryPasses;
    private readonly Counter<long> _expiryGrants;
    private readonly Counter<long> _expiryReturned;
    private readonly Histogram<double> _expiryDuration;

    public LedgerMetrics(IMeterFactory meters)
    {
        Meter = meters.Create(new MeterOptions(ServerTelemetry.Name) { Version = ServerTelemetry.Version });
        _applied = Meter.CreateCounter<long>("quotaledger.deductions.applied", "{deduction}",
            "Deductions applied: committed, each with its journal entry.");
        _refused = Meter.CreateCounter<long>("quotaledger.deductions.refused", "{deduction}",
            "Deductions refused, by reason word (quotaledger.reason); nothing of them applied, or, for STORE_UNAVAILABLE after a broken connection, not known.");
        _replayed = Meter.CreateCounter<long>("quotaledger.deductions.replayed", "{deduction}",
            "Deductions whose request id was decided before: the first outcome answered again, nothing applied again.");
        _deferred = Meter.CreateCounter<long>("quotaledger.deductions.deferred", "{deduction}",
            "Deductions whose unit-year or contract another session held, handed from a worker to a lock waiter.");
        _fallbacks = Meter.CreateCounter<long>("quotaledger.deductions.fallbacks", "{transaction}",
            "Coalesced transactions that failed as a whole, whose deductions were then applied one by one; by error.type.");
        _batchSize = Meter.CreateHistogram("quotaledger.deductions.batch.size", "{deduction}",
            "Deductions one transaction decided, by quotaledger.locking.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 10_000] });
        _lockWait = Meter.CreateHistogram("quotaledger.deductions.lock.wait_time", "s",
            "From sending a deduction transaction's first round trip until its unit-year and contract rows were locked and read.",
            advice: s_seconds);
        _commit = Meter.CreateHistogram("quotaledger.deductions.commit.duration", "s",
            "A deduction transaction's second round trip: every write and the COMMIT.", advice: s_seconds);
        _expiryPasses = Meter.CreateCounter<long>("quotaledger.expiry.passes", "{pass}",
            "Expiry passes run, by quotaledger.expiry.trigger; error.type when the pass itself failed.");
        _expiryGrants = Meter.CreateCounter<long>("quotaledger.expiry.grants", "{grant}",
            "Grants the expiry passes expired (quotaledger.outcome=expired) or could not expire (failed; tried again next pass).");
        _expiryReturned = Meter.CreateCounter<long>("quotaledger.expiry.returned", "{fen}",
            "Fen the expired grants returned to their year's pool.");
        _expiryDuration = Meter.CreateHistogram("quotaledger.expiry.pass.duration", "s",
            "How long an expiry pass took, by quotaledger.expiry.trigger.", advice: s_seconds);
    }

    private Meter Meter { get; }

    /// <summary>The tag names, shared with the SDK where they mean the same.</summary>
    public static class Tags
    {
        public const string Reason = "quotaledger.reason";
        public const string Outcome = "quotaledger.outcome";
        public const string Locking = "quotaledger.locking";
        public const string Trigger = "quotaledger.expiry.trigger";
        public const string ErrorType = "error.type";
    }

    /// <summary>What started an expiry pass: the background timer or an AdminService.ExpireDueGrants call.</summary>
    public static class Triggers
    {
        public const string Schedule = "schedule";
        public const string Request = "request";
    }

    /// <summary>The deductions waiting for a worker, read when a listener collects.</summary>
    public void ObserveQueueDepth(Func<int> depth) =>
        Meter.CreateObservableUpDownCounter("quotaledger.deductions.queue.depth", depth, "{deduction}",
            "Deductions waiting in the queue for a worker (not those in a transaction or with a lock waiter).");

    /// <summary>What a committed deduction transaction decided: each deduction applied, refused by its rules or
    /// replayed, and those it left deferred to a lock waiter (decided, and counted, by the waiter's transaction).</summary>
    public void Committed(IEnumerable<WriteOutcome> outcomes)
    {
        var deferred = 0;
        foreach (var outcome in outcomes)
        {
            if (outcome.Deferred)
            {
                deferred++;
            }
            else
            {
                Decided(outcome);
            }
        }

        if (deferred > 0)
        {
            _deferred.Add(deferred);
        }
    }

    private void Decided(WriteOutcome outcome)
    {
        if (outcome.Replayed)
        {
            _replayed.Add(1);
        }
        else if (outcome.Refusal is { } refusal)
        {
            _refused.Add(1, new KeyValuePair<string, object?>(Tags.Reason, refusal.Reason.Word()));
        }
        else
        {
            _applied.Add(1);
        }
    }

    /// <summary>A deduction refused without a decision of its rules: the queue full or stopping, the database out of
    /// reach, its lock held too long, or a failure of its transaction.</summary>
    public void Refused(Exception refusal) =>
        _refused.Add(1, new KeyValuePair<string, object?>(Tags.Reason, ReasonOf(refusal)));

    public void Fallback(Exception failure) => _fallbacks.Add(1, new KeyValuePair<string, object?>(Tags.ErrorType, ErrorType(failure)));

    public void BatchStarted(int size, bool waitForLocks) => _batchSize.Record(size, Locking(waitForLocks));

    public void LocksHeld(TimeSpan waited, bool waitForLocks) => _lockWait.Record(waited.TotalSeconds, Locking(waitForLocks));

    public void Committed(TimeSpan took, bool waitForLocks) => _commit.Record(took.TotalSeconds, Locking(waitForLocks));

    public void ExpiryPass(string trigger, Expiry.Outcome outcome, TimeSpan took)
    {
        var by = new KeyValuePair<string, object?>(Tags.Trigger, trigger);
        _expiryPasses.Add(1, by);
        _expiryGrants.Add(outcome.ExpiredGrants, by, s_expired);
        _expiryGrants.Add(outcome.Failed, by, s_failed);
        _expiryReturned.Add(outcome.Returned.Value, by);
        _expiryDuration.Record(took.TotalSeconds, by);
    }

    public void ExpiryPassFailed(string trigger, Exception failure, TimeSpan took)
    {
        var by = new KeyValuePair<string, object?>(Tags.Trigger, trigger);
        _expiryPasses.Add(1, by, new KeyValuePair<string, object?>(Tags.ErrorType, ErrorType(failure)));
        _expiryDuration.Record(took.TotalSeconds, by);
    }

    private static KeyValuePair<string, object?> Locking(bool waitForLocks) => waitForLocks ? s_waitForLocks : s_skipLocked;

    /// <summary>The reason word the caller is answered with: the refusal's own, the store failure's, else INTERNAL (the
    /// gRPC status of an unexpected failure).</summary>
    private static string ReasonOf(Exception refusal) =>
        refusal is LedgerException ledger ? ledger.Reason.Word() : StoreFailures.Translate(refusal)?.Reason.Word() ?? "INTERNAL";

    /// <summary>PostgreSQL's SQLSTATE for an error it reported, else the exception's type.</summary>
    internal static string ErrorType(Exception failure) => failure is PostgresException postgres ? postgres.SqlState : failure.GetType().FullName!;
}
