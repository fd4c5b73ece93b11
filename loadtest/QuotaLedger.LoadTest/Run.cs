using System.Collections.Concurrent;
using System.Diagnostics;
using QuotaLedger.Client;

namespace QuotaLedger.LoadTest;

/// <summary>The measured run: callers in a closed loop, or calls at a fixed rate in an open loop (latency then counts
/// from when each call was due, so a slow server is not hidden by callers that wait).</summary>
internal sealed class Run(Options options, QuotaLedgerClient[] clients, string provider, int year, List<Target> targets)
{
    private readonly ConcurrentDictionary<string, long> _errors = new();
    private readonly ConcurrentQueue<Deduction> _unseen = new();
    private readonly ConcurrentBag<List<long>> _latencies = [];
    private long _invoice;
    private long _progress;
    private long _completed;
    private long _failed;
    private volatile bool _measuring;
    private readonly FaultInjection? _fault = options.Fault is { } command ? new FaultInjection(command, options.FaultAt) : null;

    public ConcurrentDictionary<int, long> AppliedByTarget { get; } = new();

    /// <summary>Every deduction acknowledged, the retries' included; kept when the run audits the database.</summary>
    public Acknowledgements Acknowledged { get; } = new(options.Database is not null);

    /// <summary>Calls whose outcome the run did not see, and what their retry with the same request id answered.</summary>
    public SortedDictionary<string, long> Retried { get; } = [];

    /// <summary>Retries every deduction whose outcome the run did not see, with its request id, until it answers
    /// (applied, or refused for good), counting what it applied; returns those that never answered.</summary>
    public async Task<List<string>> ResolveAsync(Uri address)
    {
        if (_unseen.IsEmpty)
        {
            return [];
        }

        Console.WriteLine($"Retrying {_unseen.Count} call(s) whose outcome the run did not see, each with its request id ...");
        using var patient = new QuotaLedgerClient(new QuotaLedgerClientOptions
        {
            Address = address,
            DefaultDeadline = TimeSpan.FromMinutes(2),
            Retry = { MaxAttempts = 20, MaxBackoff = TimeSpan.FromSeconds(5) },
        });
        var unresolved = new ConcurrentBag<string>();
        var outcomes = new ConcurrentDictionary<string, long>();
        await Parallel.ForEachAsync(_unseen, new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (deduction, _) =>
        {
            string outcome;
            try
            {
                var result = await patient.DeductAsync(provider, deduction.Target.GrantId, deduction.InvoiceNo, Setup.InvoiceAmount, deduction.InvoiceDate, deduction.RequestId);
                AppliedByTarget.AddOrUpdate(deduction.Target.Index, result.Applied.Value, (_, sum) => sum + result.Applied.Value);
                Acknowledged.Add(new Acknowledgement(deduction.RequestId, deduction.Target.GrantId, deduction.InvoiceNo, result.DeductionId, result.Applied.Value));
                outcome = "applied";
            }
            catch (QuotaLedgerException e)
            {
                outcome = e.ReasonWord.Length > 0 ? e.ReasonWord : e.StatusCode.ToString();
            }
            catch (Exception e) when (e is QuotaLedgerUnavailableException or HttpRequestException or OperationCanceledException)
            {
                outcome = "unresolved";
                unresolved.Add($"deduction {deduction.RequestId} (grant {deduction.Target.GrantId}): no answer on retry: {e.Message}");
            }

            outcomes.AddOrUpdate(outcome, 1, (_, n) => n + 1);
        });
        foreach (var (outcome, count) in outcomes)
        {
            Retried[outcome] = count;
        }

        Console.WriteLine($"Retried: {string.Join(", ", Retried.Select(r => $"{r.Key} {r.Value}"))}");
        return [.. unresolved];
    }


    public async Task<Result> ExecuteAsync()
    {
        using var stop = new CancellationTokenSource();
        var measured = Stopwatch.StartNew();
        var progress = Task.Run(async () =>
        {
            var last = 0L;
            var clock = Stopwatch.StartNew();
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(1_000, CancellationToken.None);
                var done = Interlocked.Read(ref _progress);
                Console.WriteLine($"  {clock.Elapsed.TotalSeconds,5:0}s {(_measuring ? "measuring" : "warming up"),-10} {done - last,7} calls/s  {Interlocked.Read(ref _failed),6} errors");
                last = done;
            }
        });

        var work = options.Rate > 0 ? OpenLoopAsync(stop.Token) : ClosedLoopAsync(stop.Token);
        await Task.Delay(options.Warmup);
        Interlocked.Exchange(ref _completed, 0);
        Interlocked.Exchange(ref _failed, 0);
        _errors.Clear();
        _measuring = true;
        measured.Restart();
        _fault?.Start();
        var fault = _fault?.RunAsync(stop.Token) ?? Task.CompletedTask;
        await Task.Delay(options.Duration);
        _measuring = false;
        var seconds = measured.Elapsed.TotalSeconds;
        var completed = Interlocked.Read(ref _completed);
        var failed = Interlocked.Read(ref _failed);
        await fault; // a fault still running (a restart, say) ends before the run is judged
        await stop.CancelAsync();
        await work;
        await progress;

        var all = _latencies.SelectMany(l => l).ToArray();
        Array.Sort(all);
        return new Result(options.Scenario, options.Concurrency, options.Rate, options.Duration.TotalSeconds, targets.Count,
            completed, failed, completed / seconds,
            Percentile(all, 50), Percentile(all, 90), Percentile(all, 99), Percentile(all, 99.9), all.Length == 0 ? 0 : Ms(all[^1]),
            new SortedDictionary<string, long>(_errors), null, false, []) { Fault = _fault?.Summarize(seconds) };
    }

    private async Task ClosedLoopAsync(CancellationToken stop)
    {
        await Task.WhenAll(Enumerable.Range(0, options.Concurrency).Select(async worker =>
        {
            var latencies = new List<long>(1 << 16);
            _latencies.Add(latencies);
            var client = clients[worker % clients.Length];
            while (!stop.IsCancellationRequested)
            {
                var started = Stopwatch.GetTimestamp();
                await OneCallAsync(client);
                Record(latencies, started);
            }
        }));
    }

    private async Task OpenLoopAsync(CancellationToken stop)
    {
        var latencies = new List<long>(1 << 16);
        _latencies.Add(latencies);
        var inFlight = new SemaphoreSlim(options.Concurrency);
        var interval = Stopwatch.Frequency / (double)options.Rate;
        var start = Stopwatch.GetTimestamp();
        var running = new List<Task>();
        for (long n = 0; !stop.IsCancellationRequested; n++)
        {
            var due = start + (long)(n * interval);
            var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, CancellationToken.None);
            }

            if (!inFlight.Wait(0))
            {
                Fail("DROPPED_OVER_IN_FLIGHT_CAP");
                continue;
            }

            var client = clients[n % clients.Length];
            running.Add(Task.Run(async () =>
            {
                try
                {
                    await OneCallAsync(client);
                    lock (latencies)
                    {
                        Record(latencies, due);
                    }
                }
                finally
                {
                    inFlight.Release();
                }
            }, CancellationToken.None));
            running.RemoveAll(t => t.IsCompleted);
        }

        await Task.WhenAll(running);
    }

    private async Task OneCallAsync(QuotaLedgerClient client)
    {
        try
        {
            switch (options.Scenario)
            {
                case "ping":
                    await client.PingAsync();
                    break;
                case "mixed" when Random.Shared.Next(10) is var pick && pick < 2:
                    var target = targets[Random.Shared.Next(targets.Count)];
                    if (pick == 0)
                    {
                        await client.GrantAsync(provider, target.ContractNo, new Fen(100));
                    }
                    else
                    {
                        await client.GetUnitYearAsync(target.Unit, year);
                    }

                    break;
                default:
                    await DeductAsync(client);
                    break;
            }

            Interlocked.Increment(ref _completed);
            Interlocked.Increment(ref _progress);
            if (_measuring)
            {
                _fault?.Succeeded();
            }
        }
        catch (QuotaLedgerException e)
        {
            Fail(e.ReasonWord.Length > 0 ? e.ReasonWord : e.StatusCode.ToString());
        }
        catch (QuotaLedgerUnavailableException e)
        {
            Fail(e.ReasonWord.Length > 0 ? e.ReasonWord : e.StatusCode.ToString());
            await BackOffAsync(true);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            Fail(e.GetType().Name);
            await BackOffAsync(true);
        }
    }

    /// <summary>A caller whose call failed for want of a server waits a little before the next, as a real client
    /// backs off, instead of turning an outage into a flood of instant failures.</summary>
    private static Task BackOffAsync(bool unavailable) =>
        unavailable ? Task.Delay(TimeSpan.FromMilliseconds(100)) : Task.CompletedTask;

    private async Task DeductAsync(QuotaLedgerClient client)
    {
        var target = targets[targets.Count == 1 ? 0 : Random.Shared.Next(targets.Count)];
        var invoice = Interlocked.Increment(ref _invoice);
        var deduction = new Deduction(target, QuotaLedgerClient.NewRequestId(), $"LT-{invoice}", DateOnly.FromDateTime(DateTime.UtcNow.AddHours(8)).AddDays(-1));
        DeductionResult result;
        try
        {
            result = await client.DeductAsync(provider, target.GrantId, deduction.InvoiceNo, Setup.InvoiceAmount, deduction.InvoiceDate, deduction.RequestId);
        }
        catch (Exception e) when (e is QuotaLedgerUnavailableException or HttpRequestException or OperationCanceledException or IOException)
        {
            _unseen.Enqueue(deduction);
            throw;
        }

        AppliedByTarget.AddOrUpdate(target.Index, result.Applied.Value, (_, sum) => sum + result.Applied.Value);
        Acknowledged.Add(new Acknowledgement(deduction.RequestId, target.GrantId, deduction.InvoiceNo, result.DeductionId, result.Applied.Value));
    }

    private void Record(List<long> latencies, long started)
    {
        if (_measuring)
        {
            latencies.Add(Stopwatch.GetTimestamp() - started);
        }
    }

    private void Fail(string reason)
    {
        Interlocked.Increment(ref _failed);
        _errors.AddOrUpdate(reason, 1, (_, n) => n + 1);
    }

    private static double Percentile(long[] sorted, double p) =>
        sorted.Length == 0 ? 0 : Ms(sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p / 100 * sorted.Length) - 1)]);

    private static double Ms(long ticks) => ticks * 1_000d / Stopwatch.Frequency;
}
