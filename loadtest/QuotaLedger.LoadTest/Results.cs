using System.Globalization;

namespace QuotaLedger.LoadTest;

/// <summary>One deduction the run sent, kept to retry it with its request id should its outcome go unseen.</summary>
internal sealed record Deduction(Target Target, string RequestId, string InvoiceNo, DateOnly InvoiceDate);

/// <summary>One grant the run sent, kept to retry it with its request id should its outcome go unseen.</summary>
internal sealed record GrantCall(Target Target, string RequestId);

/// <summary>One operation's share of a run (mixed: deduct, grant, read).</summary>
internal sealed record OperationResult(long Completed, long Failed, double CallsPerSecond, double P50Ms, double P99Ms, double MaxMs, SortedDictionary<string, long> ErrorsByReason);

internal sealed record Result(
    string Scenario, int Concurrency, int Rate, double DurationSeconds, int UnitYears,
    long Completed, long Failed, double CallsPerSecond,
    double P50Ms, double P90Ms, double P99Ms, double P999Ms, double MaxMs,
    SortedDictionary<string, long> ErrorsByReason, long? ServerPeakRssKb, bool BooksChecked, List<string> BookFailures)
{
    /// <summary>What the retries of calls whose outcome went unseen answered.</summary>
    public SortedDictionary<string, long> Retried { get; init; } = [];

    /// <summary>The fault injected during the run, and the rate around it.</summary>
    public FaultReport? Fault { get; init; }

    /// <summary>The database audit: acknowledged deductions and grants against what the ledger holds.</summary>
    public ExactlyOnceReport? ExactlyOnce { get; init; }

    /// <summary>Each operation of the run on its own, by name (deduct, grant, read, ping).</summary>
    public SortedDictionary<string, OperationResult> Operations { get; init; } = [];

    /// <summary>bulk: the deductions applied in the measured time, and per second.</summary>
    public long ItemsApplied { get; init; }

    public double ItemsPerSecond { get; init; }

    /// <summary>How the calls went to the servers: one server, or several with routing affinity or none.</summary>
    public string Routing { get; init; } = "";

    public string Describe() => string.Create(CultureInfo.InvariantCulture, $"""
        scenario {Scenario}, {(Rate > 0 ? $"open loop {Rate}/s" : $"{Concurrency} callers")}, {UnitYears} unit-year(s), {DurationSeconds:0} s measured
        throughput   {CallsPerSecond:0} calls/s ({Completed} ok, {Failed} failed){(ItemsApplied > 0 ? $"; {ItemsPerSecond:0} deductions/s applied ({ItemsApplied} in all)" : "")}
        latency ms   p50 {P50Ms:0.00}  p90 {P90Ms:0.00}  p99 {P99Ms:0.00}  p99.9 {P999Ms:0.00}  max {MaxMs:0.00}
        errors       {Errors(ErrorsByReason)}{PerOperation()}
        servers      {Routing}
        server RSS   {(ServerPeakRssKb is { } kb ? $"{kb / 1024} MiB peak" : "n/a (server not started by the load test)")}
        {(Fault is { } f ? $"fault        at {f.StartedAtSeconds:0.0} s, ended {f.EndedAtSeconds:0.0} s (exit {f.ExitCode}); rate before {f.RateBefore:0}/s, lowest 1 s after {f.LowestRateAfter:0}/s, back to half for good {f.SecondsToRecover:0.0} s after it started, {f.ZeroSeconds:0.0} s with nothing applied" : "")}
        """);

    /// <summary>A line for each operation, when the run made more than one kind (mixed).</summary>
    private string PerOperation() => Operations.Count < 2 ? "" : string.Concat(Operations.Select(o => string.Create(CultureInfo.InvariantCulture,
        $"\n  {o.Key + ":",-10} {o.Value.CallsPerSecond:0} calls/s ({o.Value.Completed} ok, {o.Value.Failed} failed)  p50 {o.Value.P50Ms:0.00}  p99 {o.Value.P99Ms:0.00}  max {o.Value.MaxMs:0.00} ms  errors {Errors(o.Value.ErrorsByReason)}")));

    private static string Errors(SortedDictionary<string, long> errors) =>
        errors.Count == 0 ? "none" : string.Join(", ", errors.Select(e => $"{e.Key} {e.Value}"));
}
