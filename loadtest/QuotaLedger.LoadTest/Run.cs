using System.Collections.Concurrent;
using System.Diagnostics;
using QuotaLedger.Client;

namespace QuotaLedger.LoadTest;

/// <summary>The measured run: callers in a closed loop, or calls at a fixed rate in an open loop (latency then counts
/// from when each call was due, so a slow server is not hidden by callers that wait).</summary>
internal sealed class Run(Options options, QuotaLedgerClient[] clients, string provider, int year, List<Target> targets)
{
    private static readonly Operation[] s_operations = Enum.GetValues<Operation>();
    private readonly ConcurrentDictionary<string, long>[] _errors = [.. s_operations.Select(_ => new ConcurrentDictionary<string, long>())];
    private readonly ConcurrentQueue<Deduction> _unseen = new();
    private readonly ConcurrentQueue<GrantCall> _unseenGrants = new();
    // Each caller's latencies, one list per operation.
    private readonly ConcurrentBag<List<long>[]> _latencies = [];
    private readonly long[] _completed = new long[s_operations.Length];
    private readonly long[] _failed = new long[s_operations.Length];
    private long _invoice;
    private long _itemsApplied;
    private long _progress;
    private long _failedAll;
    private volatile bool _measuring;
    private readonly FaultInjection? _fault = options.Fault is { } command ? new FaultInjection(command, options.FaultAt) : null;

    public ConcurrentDictionary<int, long> AppliedByTarget { get; } = new();

    /// <summary>What the acknowledged grants of the run granted, per target.</summary>
    public ConcurrentDictionary<int, long> GrantedByTarget { get; } = new();

    /// <summary>Every deduction and grant acknowledged, the retries' included; kept when the run audits the database.</summary>
    public Acknowledgements Acknowledged { get; } = new(options.Database is not null);

    /// <summary>Calls whose outcome the run did not see, and what their retry with the same request id answered.</summary>
    public SortedDictionary<string, long> Retried { get; } = [];

    /// <summary>Retries every deduction and grant whose outcome the run did not see, with its request id, until it
    /// answers (applied, or refused for good), counting what it applied; returns those that never answered.</summary>
    public async Task<List<string>> ResolveAsync(QuotaLedgerClientOptions patientOptions)
    {
        if (_unseen.IsEmpty && _unseenGrants.IsEmpty)
        {
            return [];
        }

        Console.WriteLine($"Retrying {_unseen.Count + _unseenGrants.Count} call(s) whose outcome the run did not see, each with its request id ...");
        patientOptions.DefaultDeadline = TimeSpan.FromMinutes(2);
        patientOptions.Retry = new QuotaLedgerRetryOptions { MaxAttempts = 20, MaxBackoff = TimeSpan.FromSeconds(5) };
        using var patient = new QuotaLedgerClient(patientOptions);
        var unresolved = new ConcurrentBag<string>();
        var outcomes = new ConcurrentDictionary<string, long>();
        IEnumerable<(Func<Task> Retry, string What)> calls =
        [
            .. _unseen.Select(d => ((Func<Task>)(() => DeductAgainAsync(patient, d)), $"deduction {d.RequestId} (grant {d.Target.GrantId})")),
            .. _unseenGrants.Select(g => ((Func<Task>)(() => GrantAgainAsync(patient, g)), $"grant {g.RequestId} (contract {g.Target.ContractNo})")),
        ];
        await Parallel.ForEachAsync(calls, new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (call, _) =>
        {
            string outcome;
            try
            {
                await call.Retry();
                outcome = "applied";
            }
            catch (QuotaLedgerException e)
            {
                outcome = e.ReasonWord.Length > 0 ? e.ReasonWord : e.StatusCode.ToString();
            }
            catch (Exception e) when (e is QuotaLedgerUnavailableException or HttpRequestException or OperationCanceledException)
            {
                outcome = "unresolved";
                unresolved.Add($"{call.What}: no answer on retry: {e.Message}");
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

    private async Task DeductAgainAsync(QuotaLedgerClient patient, Deduction deduction)
    {
        var result = await patient.DeductAsync(provider, deduction.Target.GrantId, deduction.InvoiceNo, Setup.InvoiceAmount, deduction.InvoiceDate, deduction.RequestId);
        Deducted(deduction, result);
    }

    private async Task GrantAgainAsync(QuotaLedgerClient patient, GrantCall grant) =>
        Granted(grant, await patient.GrantAsync(provider, grant.Target.ContractNo, Setup.GrantAmount, grant.RequestId));


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
                Console.WriteLine($"  {clock.Elapsed.TotalSeconds,5:0}s {(_measuring ? "measuring" : "warming up"),-10} {done - last,7} calls/s  {Interlocked.Read(ref _failedAll),6} errors");
                last = done;
            }
        });

        var work = options.Rate > 0 ? OpenLoopAsync(stop.Token) : ClosedLoopAsync(stop.Token);
        await Task.Delay(options.Warmup);
        foreach (var operation in s_operations)
        {
            Interlocked.Exchange(ref _completed[(int)operation], 0);
            Interlocked.Exchange(ref _failed[(int)operation], 0);
            _errors[(int)operation].Clear();
        }

        Interlocked.Exchange(ref _failedAll, 0);
        Interlocked.Exchange(ref _itemsApplied, 0);
        _measuring = true;
        measured.Restart();
        _fault?.Start();
        var fault = _fault?.RunAsync(stop.Token) ?? Task.CompletedTask;
        await Task.Delay(options.Duration);
        _measuring = false;
        var seconds = measured.Elapsed.TotalSeconds;
        var completed = s_operations.Select(o => Interlocked.Read(ref _completed[(int)o])).ToArray();
        var failed = s_operations.Select(o => Interlocked.Read(ref _failed[(int)o])).ToArray();
        var items = Interlocked.Read(ref _itemsApplied);
        await fault; // a fault still running (a restart, say) ends before the run is judged
        await stop.CancelAsync();
        await work;
        await progress;

        var all = Sorted(_latencies.SelectMany(l => l).SelectMany(l => l));
        var errors = new SortedDictionary<string, long>();
        foreach (var (reason, count) in _errors.SelectMany(e => e))
        {
            errors[reason] = errors.GetValueOrDefault(reason) + count;
        }

        // Each operation the scenario made, on its own (for mixed: deduct, grant, read).
        var operations = new SortedDictionary<string, OperationResult>();
        foreach (var operation in s_operations.Where(o => completed[(int)o] + failed[(int)o] > 0))
        {
            var latencies = Sorted(_latencies.SelectMany(l => l[(int)operation]));
            operations[operation.ToString().ToLowerInvariant()] = new OperationResult(completed[(int)operation], failed[(int)operation], completed[(int)operation] / seconds,
                Percentile(latencies, 50), Percentile(latencies, 99), latencies.Length == 0 ? 0 : Ms(latencies[^1]), new SortedDictionary<string, long>(_errors[(int)operation]));
        }

        return new Result(options.Scenario, options.Concurrency, options.Rate, options.Duration.TotalSeconds, targets.Count,
            completed.Sum(), failed.Sum(), completed.Sum() / seconds,
            Percentile(all, 50), Percentile(all, 90), Percentile(all, 99), Percentile(all, 99.9), all.Length == 0 ? 0 : Ms(all[^1]),
            errors, null, false, []) { Fault = _fault?.Summarize(seconds), Operations = operations, ItemsApplied = items, ItemsPerSecond = items / seconds };
    }

    private static long[] Sorted(IEnumerable<long> latencies)
    {
        var sorted = latencies.ToArray();
        Array.Sort(sorted);
        return sorted;
    }

    private async Task ClosedLoopAsync(CancellationToken stop)
    {
        await Task.WhenAll(Enumerable.Range(0, options.Concurrency).Select(async worker =>
        {
            var latencies = NewLatencies();
            var client = clients[worker % clients.Length];
            while (!stop.IsCancellationRequested)
            {
                var started = Stopwatch.GetTimestamp();
                var operation = await OneCallAsync(client);
                Record(latencies[(int)operation], started);
            }
        }));
    }

    private async Task OpenLoopAsync(CancellationToken stop)
    {
        var latencies = NewLatencies();
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
                Fail(Pick(), "DROPPED_OVER_IN_FLIGHT_CAP");
                continue;
            }

            var client = clients[n % clients.Length];
            running.Add(Task.Run(async () =>
            {
                try
                {
                    var operation = await OneCallAsync(client);
                    lock (latencies)
                    {
                        Record(latencies[(int)operation], due);
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

    private List<long>[] NewLatencies()
    {
        List<long>[] latencies = [.. s_operations.Select(_ => new List<long>(1 << 14))];
        _latencies.Add(latencies);
        return latencies;
    }

    /// <summary>The next call's operation: the scenario's one, or for mixed 80% deductions, 10% grants, 10% reads.</summary>
    private Operation Pick() => options.Scenario switch
    {
        "ping" => Operation.Ping,
        "grants" => Operation.Grant,
        "bulk" => Operation.Bulk,
        "mixed" => Random.Shared.Next(10) switch { 0 => Operation.Grant, 1 => Operation.Read, _ => Operation.Deduct },
        _ => Operation.Deduct,
    };

    /// <summary>Makes one call, counts it, and says which operation it was.</summary>
    private async Task<Operation> OneCallAsync(QuotaLedgerClient client)
    {
        var operation = Pick();
        try
        {
            switch (operation)
            {
                case Operation.Ping:
                    await client.PingAsync();
                    break;
                case Operation.Grant:
                    await GrantAsync(client);
                    break;
                case Operation.Bulk:
                    await DeductManyAsync(client);
                    break;
                case Operation.Read:
                    await client.GetUnitYearAsync(targets[Random.Shared.Next(targets.Count)].Unit, year);
                    break;
                default:
                    await DeductAsync(client);
                    break;
            }

            Interlocked.Increment(ref _completed[(int)operation]);
            Interlocked.Increment(ref _progress);
            if (_measuring)
            {
                _fault?.Succeeded();
            }
        }
        catch (QuotaLedgerException e)
        {
            Fail(operation, e.ReasonWord.Length > 0 ? e.ReasonWord : e.StatusCode.ToString());
        }
        catch (QuotaLedgerUnavailableException e)
        {
            Fail(operation, e.ReasonWord.Length > 0 ? e.ReasonWord : e.StatusCode.ToString());
            await BackOffAsync(true);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            Fail(operation, e.GetType().Name);
            await BackOffAsync(true);
        }

        return operation;
    }

    /// <summary>A caller whose call failed for want of a server waits a little before the next, as a real client
    /// backs off, instead of turning an outage into a flood of instant failures.</summary>
    private static Task BackOffAsync(bool unavailable) =>
        unavailable ? Task.Delay(TimeSpan.FromMilliseconds(100)) : Task.CompletedTask;

    private async Task DeductAsync(QuotaLedgerClient client)
    {
        var target = targets[targets.Count == 1 ? 0 : Random.Shared.Next(targets.Count)];
        var invoice = Interlocked.Increment(ref _invoice);
        var deduction = new Deduction(target, QuotaLedgerClient.NewRequestId(), $"LT-{invoice}", options.ServerToday.AddDays(-1));
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

        Deducted(deduction, result);
    }

    /// <summary>One DeductMany call of --batch invoices, each on a unit-year picked at random; an item without a
    /// definite answer is kept to retry with its request id, an item's refusal counted by its reason.</summary>
    private async Task DeductManyAsync(QuotaLedgerClient client)
    {
        var date = options.ServerToday.AddDays(-1);
        var deductions = Enumerable.Range(0, options.Batch).Select(_ => new Deduction(targets[Random.Shared.Next(targets.Count)], QuotaLedgerClient.NewRequestId(),
            $"LT-{Interlocked.Increment(ref _invoice)}", date)).ToList();
        var results = await client.DeductManyAsync(deductions.Select(d => new InvoiceToDeduct(provider, d.Target.GrantId, d.InvoiceNo, Setup.InvoiceAmount, d.InvoiceDate, d.RequestId)));
        foreach (var outcome in results)
        {
            var deduction = deductions[outcome.Index];
            if (outcome.Result is { } result)
            {
                Deducted(deduction, result);
                Interlocked.Increment(ref _itemsApplied);
            }
            else if (outcome.Unavailable is { } unavailable)
            {
                _unseen.Enqueue(deduction);
                Fail(Operation.Bulk, "item:" + (unavailable.ReasonWord.Length > 0 ? unavailable.ReasonWord : unavailable.StatusCode.ToString()), call: false);
            }
            else if (outcome.Refusal is { } refusal)
            {
                Fail(Operation.Bulk, "item:" + (refusal.ReasonWord.Length > 0 ? refusal.ReasonWord : refusal.StatusCode.ToString()), call: false);
            }
        }

        if (results.Count > 0 && results.All(o => o.Unavailable is not null))
        {
            // The call as a whole got no answer: counted as the call's failure.
            throw results[0].Unavailable!;
        }
    }

    /// <summary>A small grant on a unit's contract, with a fresh request id, kept to retry should its outcome go unseen.</summary>
    private async Task GrantAsync(QuotaLedgerClient client)
    {
        var grant = new GrantCall(targets[targets.Count == 1 ? 0 : Random.Shared.Next(targets.Count)], QuotaLedgerClient.NewRequestId());
        GrantResult result;
        try
        {
            result = await client.GrantAsync(provider, grant.Target.ContractNo, Setup.GrantAmount, grant.RequestId);
        }
        catch (Exception e) when (e is QuotaLedgerUnavailableException or HttpRequestException or OperationCanceledException or IOException)
        {
            _unseenGrants.Enqueue(grant);
            throw;
        }

        Granted(grant, result);
    }

    private void Deducted(Deduction deduction, DeductionResult result)
    {
        AppliedByTarget.AddOrUpdate(deduction.Target.Index, result.Applied.Value, (_, sum) => sum + result.Applied.Value);
        Acknowledged.Add(new Acknowledgement(deduction.RequestId, deduction.Target.GrantId, deduction.InvoiceNo, result.DeductionId, result.Applied.Value));
    }

    private void Granted(GrantCall grant, GrantResult result)
    {
        GrantedByTarget.AddOrUpdate(grant.Target.Index, result.Amount.Value, (_, sum) => sum + result.Amount.Value);
        Acknowledged.Add(new GrantAcknowledgement(grant.RequestId, result.GrantId, grant.Target.Unit, result.Amount.Value));
    }

    private void Record(List<long> latencies, long started)
    {
        if (_measuring)
        {
            latencies.Add(Stopwatch.GetTimestamp() - started);
        }
    }

    /// <summary>Counts a failure by its reason; <paramref name="call"/> false: an item of a bulk call, which counts its reason only.</summary>
    private void Fail(Operation operation, string reason, bool call = true)
    {
        if (call)
        {
            Interlocked.Increment(ref _failed[(int)operation]);
            Interlocked.Increment(ref _failedAll);
        }

        _errors[(int)operation].AddOrUpdate(reason, 1, (_, n) => n + 1);
    }

    private static double Percentile(long[] sorted, double p) =>
        sorted.Length == 0 ? 0 : Ms(sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p / 100 * sorted.Length) - 1)]);

    private static double Ms(long ticks) => ticks * 1_000d / Stopwatch.Frequency;
}

/// <summary>What one call of a run does.</summary>
internal enum Operation
{
    Ping,
    Deduct,
    Grant,
    Read,
    Bulk,
}
