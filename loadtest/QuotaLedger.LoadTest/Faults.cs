using System.Collections.Concurrent;
using System.Diagnostics;
using Npgsql;

namespace QuotaLedger.LoadTest;

/// <summary>One deduction the ledger acknowledged: what the caller was told.</summary>
internal sealed record Acknowledgement(string RequestId, long GrantId, string InvoiceNo, long DeductionId, long Applied);

/// <summary>One grant the ledger acknowledged: what the caller was told.</summary>
internal sealed record GrantAcknowledgement(string RequestId, long GrantId, string Unit, long Amount);

/// <summary>A fault run once during the measured time (a shell command), and the rate around it: successes are
/// counted per 100 ms, so the report can say how long the rate took to come back.</summary>
internal sealed class FaultInjection(string command, TimeSpan at)
{
    private const int BucketsPerSecond = 10;
    private readonly long[] _successes = new long[BucketsPerSecond * 3_600];
    private readonly Stopwatch _clock = new();

    public TimeSpan At => at;

    public FaultReport? Report { get; private set; }

    /// <summary>Starts the clock the buckets count from: the start of the measured time.</summary>
    public void Start() => _clock.Restart();

    public void Succeeded()
    {
        var bucket = (int)(_clock.ElapsedMilliseconds / (1_000 / BucketsPerSecond));
        if (bucket < _successes.Length)
        {
            Interlocked.Increment(ref _successes[bucket]);
        }
    }

    /// <summary>Waits for its time, runs the command to its end (a restart inside it included), and records when.</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        await Task.Delay(at, stop);
        var started = _clock.Elapsed;
        Console.WriteLine($"  fault at {started.TotalSeconds:0.0}s: {command}");
        var info = new ProcessStartInfo("/bin/bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(command);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var error = process.StandardError.ReadToEndAsync(CancellationToken.None);
        await process.WaitForExitAsync(CancellationToken.None);
        var ended = _clock.Elapsed;
        var said = ((await output) + (await error)).Trim();
        Console.WriteLine($"  fault ended at {ended.TotalSeconds:0.0}s (exit {process.ExitCode}){(said.Length > 0 ? ": " + said : "")}");
        Report = new FaultReport(command, started.TotalSeconds, ended.TotalSeconds, process.ExitCode, 0, 0, 0, 0);
    }

    /// <summary>The rate before the fault, the lowest one-second rate after it, and how long after its start the rate
    /// was back for good: the end of the last one-second window below half the rate before.</summary>
    public FaultReport? Summarize(double measuredSeconds)
    {
        if (Report is not { } report)
        {
            return null;
        }

        var start = (int)(report.StartedAtSeconds * BucketsPerSecond);
        var end = Math.Min(_successes.Length, (int)(measuredSeconds * BucketsPerSecond));
        var before = start == 0 ? 0 : _successes.Take(start).Sum() / (double)start * BucketsPerSecond;
        var recovered = 0.0;
        var lowest = double.MaxValue;
        for (var bucket = start; bucket + BucketsPerSecond <= end; bucket++)
        {
            var second = _successes.Skip(bucket).Take(BucketsPerSecond).Sum();
            lowest = Math.Min(lowest, second);
            if (second < before / 2)
            {
                recovered = (bucket + BucketsPerSecond - start) / (double)BucketsPerSecond;
            }
        }

        return report with
        {
            RateBefore = Math.Round(before),
            LowestRateAfter = lowest == double.MaxValue ? 0 : lowest,
            SecondsToRecover = recovered,
            ZeroSeconds = _successes.Skip(start).Take(end - start).Count(s => s == 0) / (double)BucketsPerSecond,
        };
    }
}

/// <summary>What a fault did to the rate. <see cref="SecondsToRecover"/> equals the rest of the run when the rate
/// never came back to half.</summary>
internal sealed record FaultReport(
    string Command, double StartedAtSeconds, double EndedAtSeconds, int ExitCode, double RateBefore, double LowestRateAfter, double SecondsToRecover, double ZeroSeconds);

/// <summary>The ledger's own database against what the callers were told, after every unseen outcome was retried:
/// lost = acknowledged deductions and grants it does not hold as acknowledged; duplicated = deductions and grants of
/// the run nobody was told of, invoices held twice, and request ids acknowledged with two different deductions or
/// grants.</summary>
internal sealed record ExactlyOnceReport(long Acknowledged, long Stored, long Lost, long Duplicated, List<string> Examples);

internal static class ExactlyOnce
{
    public static async Task<ExactlyOnceReport> CheckAsync(string connectionString, string provider, Acknowledgements acknowledgements)
    {
        var stored = new Dictionary<long, (long GrantId, string InvoiceNo, long Applied)>();
        var storedGrants = new Dictionary<long, (string Unit, long Amount)>();
        await using (var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString))
        {
            await connection.OpenAsync();
            await using (var command = new NpgsqlCommand("SELECT id, grant_id, invoice_no, applied_fen FROM deductions WHERE provider_uscc = $1", connection))
            {
                command.Parameters.Add(new NpgsqlParameter { Value = provider });
                await using var reader = await command.ExecuteReaderAsync();
                while (await reader.ReadAsync())
                {
                    stored.Add(reader.GetInt64(0), (reader.GetInt64(1), reader.GetString(2), reader.GetInt64(3)));
                }
            }

            await using (var command = new NpgsqlCommand("SELECT id, unit_uscc, amount_fen FROM grants WHERE provider_uscc = $1", connection))
            {
                command.Parameters.Add(new NpgsqlParameter { Value = provider });
                await using var reader = await command.ExecuteReaderAsync();
                while (await reader.ReadAsync())
                {
                    storedGrants.Add(reader.GetInt64(0), (reader.GetString(1), reader.GetInt64(2)));
                }
            }
        }

        var acknowledged = acknowledgements.All;
        var examples = new List<string>();
        var lost = 0L;
        foreach (var ack in acknowledged)
        {
            if (!stored.TryGetValue(ack.DeductionId, out var row) || row.InvoiceNo != ack.InvoiceNo || row.Applied != ack.Applied || row.GrantId != ack.GrantId)
            {
                lost++;
                Note(examples, $"lost: request {ack.RequestId} was told deduction {ack.DeductionId} of {ack.Applied} fen for {ack.InvoiceNo}; the ledger holds {(stored.ContainsKey(ack.DeductionId) ? "it differently" : "no such deduction")}");
            }
        }

        var told = acknowledged.Select(a => a.DeductionId).ToHashSet();
        var untold = stored.Keys.Where(id => !told.Contains(id)).ToList();
        untold.ForEach(id => Note(examples, $"duplicated: deduction {id} ({stored[id].InvoiceNo}) was applied but no caller was told of it"));
        var twice = stored.Values.GroupBy(v => v.InvoiceNo).Where(g => g.Count() > 1).ToList();
        twice.ForEach(g => Note(examples, $"duplicated: invoice {g.Key} is held {g.Count()} times"));
        var twoAnswers = acknowledged.GroupBy(a => a.RequestId).Where(g => g.Select(a => a.DeductionId).Distinct().Count() > 1).ToList();
        twoAnswers.ForEach(g => Note(examples, $"duplicated: request {g.Key} was told deductions {string.Join(", ", g.Select(a => a.DeductionId).Distinct())}"));
        var (grantsLost, grantsDuplicated) = CheckGrants(storedGrants, acknowledgements.Grants, examples);
        return new ExactlyOnceReport(told.Count + acknowledgements.Grants.Select(g => g.GrantId).Distinct().Count(), stored.Count + storedGrants.Count,
            lost + grantsLost, untold.Count + twice.Count + twoAnswers.Count + grantsDuplicated, examples);
    }

    /// <summary>Every acknowledged grant is held once, as acknowledged; none of the provider's grants is untold of; no
    /// request id was told two grants.</summary>
    private static (long Lost, long Duplicated) CheckGrants(Dictionary<long, (string Unit, long Amount)> stored, IReadOnlyCollection<GrantAcknowledgement> acknowledged,
        List<string> examples)
    {
        var lost = 0L;
        foreach (var ack in acknowledged)
        {
            if (!stored.TryGetValue(ack.GrantId, out var row) || row.Unit != ack.Unit || row.Amount != ack.Amount)
            {
                lost++;
                Note(examples, $"lost: request {ack.RequestId} was told grant {ack.GrantId} of {ack.Amount} fen to {ack.Unit}; the ledger holds {(stored.ContainsKey(ack.GrantId) ? "it differently" : "no such grant")}");
            }
        }

        var told = acknowledged.Select(a => a.GrantId).ToHashSet();
        var untold = stored.Keys.Where(id => !told.Contains(id)).ToList();
        untold.ForEach(id => Note(examples, $"duplicated: grant {id} ({stored[id].Amount} fen to {stored[id].Unit}) was made but no caller was told of it"));
        var twoAnswers = acknowledged.GroupBy(a => a.RequestId).Where(g => g.Select(a => a.GrantId).Distinct().Count() > 1).ToList();
        twoAnswers.ForEach(g => Note(examples, $"duplicated: request {g.Key} was told grants {string.Join(", ", g.Select(a => a.GrantId).Distinct())}"));
        return (lost, untold.Count + twoAnswers.Count);
    }

    private static void Note(List<string> examples, string example)
    {
        if (examples.Count < 10)
        {
            examples.Add(example);
        }
    }
}

/// <summary>Acknowledgements, kept only when the run audits the database.</summary>
internal sealed class Acknowledgements(bool keep)
{
    /// <summary>The deductions.</summary>
    public ConcurrentBag<Acknowledgement> All { get; } = [];

    public ConcurrentBag<GrantAcknowledgement> Grants { get; } = [];

    public void Add(Acknowledgement acknowledgement)
    {
        if (keep)
        {
            All.Add(acknowledgement);
        }
    }

    public void Add(GrantAcknowledgement acknowledgement)
    {
        if (keep)
        {
            Grants.Add(acknowledgement);
        }
    }
}
