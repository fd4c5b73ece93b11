using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Npgsql;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Ledger;

/// <summary>How deductions are coalesced (configuration section <c>Deductions</c>).</summary>
public sealed class DeductionOptions
{
    /// <summary>Coalesce concurrent deductions into shared transactions. Off, each deduction is its own transaction.</summary>
    public bool Coalesce { get; set; } = true;

    /// <summary>The most deductions one transaction applies.</summary>
    public int MaxBatch { get; set; } = 256;

    /// <summary>How many coalesced transactions may run at once (each on its own connection, on distinct unit-years).
    /// One makes the largest batches, hence the least database work per deduction, and was fastest on the two-core
    /// benchmark machine (docs/benchmarks.md); more let deductions of other unit-years go on while one transaction
    /// waits on a lock another server instance holds.</summary>
    public int Workers { get; set; } = 1;
}

/// <summary>The fast path of Deduct. Deductions wait here while a transaction holds their unit-year; each worker
/// takes every waiting deduction (up to <see cref="DeductionOptions.MaxBatch"/>) whose unit-year no other worker of
/// this process is applying, and applies them in one transaction (<see cref="DeductionBatch"/>): one lock, one
/// commit, one fsync for many. Answers go out after the commit. Per unit-year the order of arrival is kept, and
/// correctness across several server processes still rests on the unit-year row lock the transaction takes. When a
/// coalesced transaction fails as a whole, its deductions are applied again each as a batch of its own, which gives
/// each its own outcome. With coalescing off, every deduction is such a batch of one: the same rules, the same
/// statements, one transaction each.</summary>
internal sealed partial class DeductionQueue(
    LedgerDatabase database,
    IConfiguration configuration,
    TimeProvider time,
    IMeterFactory meters,
    ILogger<DeductionQueue> logger) : IAsyncDisposable
{
    private const int GrantCacheLimit = 100_000;

    private readonly Lock _gate = new();
    private readonly List<PendingDeduction> _waiting = [];
    private readonly HashSet<long> _busy = [];
    private readonly ConcurrentDictionary<long, long> _unitYearOfGrant = new();
    private readonly Histogram<int> _batchSizes = meters.Create("QuotaLedger.Deductions")
        .CreateHistogram<int>("quotaledger.deductions.batch_size", "{deduction}", "Deductions applied by one coalesced transaction");
    private readonly Counter<long> _fallbacks = meters.Create("QuotaLedger.Deductions")
        .CreateCounter<long>("quotaledger.deductions.fallbacks", "{transaction}", "Coalesced transactions that failed as a whole and were applied one by one");
    // Connections kept open for the workers, so each batch runs on a backend whose caches and prepared statements
    // are warm instead of on whichever pooled connection comes next.
    private readonly ConcurrentStack<NpgsqlConnection> _connections = new();
    private DeductionOptions? _options;
    private int _workers;

    private DeductionOptions Options => _options ??= Checked(configuration.GetSection("Deductions").Get<DeductionOptions>() ?? new DeductionOptions());

    public async Task<DeductResponse> DeductAsync(DeductionRequest request, CancellationToken ct)
    {
        var unitYearId = await UnitYearOfAsync(request.GrantId, ct);
        if (!Options.Coalesce || unitYearId is null)
        {
            // Unknown grants too: a batch of one records their refusal.
            return Answer(await OneAsync(new PendingDeduction(request, unitYearId), ct));
        }

        var item = new PendingDeduction(request, unitYearId);
        Enqueue(item);
        // A caller that gives up stops waiting; the deduction is still decided, and a retry with its id replays it.
        return await item.Answer.Task.WaitAsync(ct);
    }

    /// <summary>The unit-year a grant belongs to, which never changes; null for an unknown grant.</summary>
    private async ValueTask<long?> UnitYearOfAsync(long grantId, CancellationToken ct)
    {
        if (_unitYearOfGrant.TryGetValue(grantId, out var known))
        {
            return known;
        }

        await using var command = database.DataSource.CreateCommand("SELECT unit_year_id FROM grants WHERE id = $1");
        command.Parameters.Add(new NpgsqlParameter { Value = grantId });
        if (await command.ExecuteScalarAsync(ct) is not long unitYearId)
        {
            return null;
        }

        if (_unitYearOfGrant.Count >= GrantCacheLimit)
        {
            _unitYearOfGrant.Clear();
        }

        _unitYearOfGrant[grantId] = unitYearId;
        return unitYearId;
    }

    private void Enqueue(PendingDeduction item)
    {
        lock (_gate)
        {
            _waiting.Add(item);
            // A deduction of a unit-year being applied waits for the worker applying it to come round again.
            if (_workers >= Options.Workers || _busy.Contains(item.UnitYearId!.Value))
            {
                return;
            }

            _workers++;
        }

        _ = Task.Run(WorkAsync);
    }

    private async Task WorkAsync()
    {
        while (true)
        {
            List<PendingDeduction> batch;
            lock (_gate)
            {
                batch = TakeBatch();
                if (batch.Count == 0)
                {
                    _workers--;
                    return;
                }
            }

            try
            {
                await ApplyAsync(batch);
            }
            finally
            {
                lock (_gate)
                {
                    foreach (var item in batch)
                    {
                        _busy.Remove(item.UnitYearId!.Value);
                    }
                }
            }
        }
    }

    /// <summary>The waiting deductions, in order of arrival, of unit-years no other worker holds. Called under the gate.</summary>
    private List<PendingDeduction> TakeBatch()
    {
        var batch = new List<PendingDeduction>();
        var taken = new HashSet<long>();
        var left = new List<PendingDeduction>(_waiting.Count);
        foreach (var item in _waiting)
        {
            var unitYearId = item.UnitYearId!.Value;
            if (batch.Count < Options.MaxBatch && (taken.Contains(unitYearId) || !_busy.Contains(unitYearId)))
            {
                batch.Add(item);
                taken.Add(unitYearId);
            }
            else
            {
                left.Add(item);
            }
        }

        _waiting.Clear();
        _waiting.AddRange(left);
        _busy.UnionWith(taken);
        return batch;
    }

    private async Task ApplyAsync(List<PendingDeduction> batch)
    {
        _batchSizes.Record(batch.Count);
        DeductionOutcome[] outcomes;
        try
        {
            var connection = _connections.TryPop(out var warm) ? warm : await database.DataSource.OpenConnectionAsync();
            try
            {
                outcomes = await DeductionBatch.RunAsync(connection, batch, time.GetUtcNow(), CancellationToken.None);
            }
            catch
            {
                await connection.DisposeAsync();
                throw;
            }

            Return(connection);
        }
        catch (Exception e)
        {
            // Apply each deduction on its own, so each gets its own outcome. Nothing of a failed transaction is kept;
            // should the connection have been lost after COMMIT reached the server, the deductions did take effect, and
            // each then replays its recorded outcome.
            LogFallback(logger, batch.Count, e.Message);
            _fallbacks.Add(1);

            foreach (var item in batch)
            {
                try
                {
                    Settle(item, await OneAsync(item, CancellationToken.None));
                }
                catch (Exception failure)
                {
                    item.Answer.TrySetException(failure);
                }
            }

            return;
        }

        for (var i = 0; i < batch.Count; i++)
        {
            Settle(batch[i], outcomes[i]);
        }
    }

    private static void Settle(PendingDeduction item, DeductionOutcome outcome)
    {
        if (outcome.Refusal is { } refusal)
        {
            item.Answer.TrySetException(refusal);
        }
        else
        {
            item.Answer.TrySetResult(outcome.Response!);
        }
    }

    private static DeductResponse Answer(DeductionOutcome outcome) => outcome.Refusal is { } refusal ? throw refusal : outcome.Response!;

    /// <summary>Applies one deduction as a batch of its own. A transaction that fails as a whole because of what another
    /// transaction committed meanwhile (the same invoice or request id on another unit-year, a deadlock) is tried
    /// again: its fresh read then sees what the other committed, and the rules refuse or replay accordingly.</summary>
    private async Task<DeductionOutcome> OneAsync(PendingDeduction item, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            await using var connection = await database.DataSource.OpenConnectionAsync(ct);
            try
            {
                return (await DeductionBatch.RunAsync(connection, [item], time.GetUtcNow(), ct))[0];
            }
            catch (PostgresException e) when (attempt < 3 && e.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DeadlockDetected
                or PostgresErrorCodes.SerializationFailure)
            {
                LogRetry(logger, item.Request.RequestId, e.SqlState);
            }
        }
    }

    private static DeductionOptions Checked(DeductionOptions options) =>
        options.MaxBatch >= 1 && options.Workers >= 1
            ? options
            : throw new InvalidOperationException("Deductions:MaxBatch and Deductions:Workers must be at least 1.");

    private void Return(NpgsqlConnection connection)
    {
        if (_connections.Count < Options.Workers)
        {
            _connections.Push(connection);
        }
        else
        {
            connection.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        while (_connections.TryPop(out var connection))
        {
            await connection.DisposeAsync();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "A coalesced transaction of {Count} deductions failed ({Error}); applying them one by one")]
    private static partial void LogFallback(ILogger logger, int count, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deduction {RequestId} raced another transaction ({SqlState}); reading again")]
    private static partial void LogRetry(ILogger logger, string requestId, string sqlState);
}
