using System.Collections.Concurrent;
using Npgsql;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.Server.Telemetry;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Ledger;

/// <summary>How deductions are coalesced (configuration section <c>Deductions</c>).</summary>
public sealed class DeductionOptions : ICheckedSettings
{
    /// <summary>Coalesce concurrent deductions into shared transactions. Off, each deduction is its own transaction.</summary>
    public bool Coalesce { get; set; } = true;

    /// <summary>The most deductions one transaction applies.</summary>
    public int MaxBatch { get; set; } = 256;

    /// <summary>How many coalesced transactions may run at once (each on its own connection, on distinct unit-years).
    /// One makes the largest batches, hence the least database work per deduction; docs/benchmarks.md has the
    /// measurements on the two-core benchmark machine.</summary>
    public int Workers { get; set; } = 1;

    /// <summary>The most deductions that may wait for a worker. One more is refused at once with OVERLOADED.</summary>
    public int MaxWaiting { get; set; } = 10_000;

    /// <summary>How many transactions may wait at once for a unit-year whose row another session holds (another server
    /// instance, a person in psql), each on its own connection and at most <c>Database:LockTimeout</c> long.</summary>
    public int LockWaiters { get; set; } = 4;

    public IEnumerable<string> Problems() =>
        Settings.Range(nameof(MaxBatch), MaxBatch, 1, 10_000)
            .Concat(Settings.Range(nameof(Workers), Workers, 1, 64))
            .Concat(Settings.Range(nameof(MaxWaiting), MaxWaiting, 1, 1_000_000))
            .Concat(Settings.Range(nameof(LockWaiters), LockWaiters, 1, 64));
}

/// <summary>The fast path of Deduct. Deductions wait here while a transaction holds their unit-year; each worker takes
/// every waiting deduction (up to <see cref="DeductionOptions.MaxBatch"/>) whose unit-year no other worker of this
/// process is applying, and applies them in one transaction (<see cref="DeductionBatch"/>): one lock, one commit, one
/// fsync for many. Answers go out after the commit. Per unit-year the order of arrival is kept, and correctness
/// across several server processes rests on the unit-year row lock the transaction takes.
/// <para>A worker never waits for a row lock: a unit-year or contract another session holds is skipped, and its
/// deductions are handed to a lock waiter, which waits for that one unit-year on a connection of its own, at most
/// <c>Database:LockTimeout</c>, while the workers go on with every other unit-year. When a coalesced transaction fails
/// as a whole, its deductions are applied again each as a batch of its own, which gives each its own outcome. With
/// coalescing off, every deduction is such a batch of one: the same rules, the same statements.</para>
/// <para>The queue is bounded (<see cref="DeductionOptions.MaxWaiting"/>); a caller that gives up before a worker has
/// taken its deduction withdraws it; when the host stops, the queue takes no more, finishes the transactions in flight
/// and answers the deductions still waiting with UNAVAILABLE, nothing of them applied.</para></summary>
internal sealed partial class DeductionQueue(
    LedgerDatabase database,
    DeductionOptions options,
    TimeProvider time,
    LedgerMetrics metrics,
    ILogger<DeductionQueue> logger) : IHostedService, IAsyncDisposable
{
    private const int GrantCacheLimit = 100_000;

    private readonly Lock _gate = new();
    private readonly LinkedList<PendingDeduction> _waiting = [];
    private readonly HashSet<long> _busy = [];
    private readonly ConcurrentDictionary<long, (long UnitYearId, string Provider)> _unitYearOfGrant = new();
    private readonly SemaphoreSlim _lockWaiters = new(options.LockWaiters);
    // Connections kept open for the workers, so each batch runs on a backend whose caches and prepared statements
    // are warm instead of on whichever pooled connection comes next.
    private readonly ConcurrentStack<NpgsqlConnection> _connections = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _workers;
    private int _inFlight;
    private bool _stopping;

    public async Task<DeductResponse> DeductAsync(DeductionRequest request, CancellationToken ct)
    {
        var unitYearId = await UnitYearOfAsync(request.GrantId, request.Provider, ct);
        var item = new PendingDeduction(request, unitYearId);
        if (!options.Coalesce || unitYearId is null)
        {
            // Unknown grants too: a batch of one records their refusal.
            Admit(item, enqueue: false);
            try
            {
                return Answer(await OneAsync(item, ct));
            }
            catch (Exception e) when (e is not (LedgerException or OperationCanceledException))
            {
                // A rule's refusal was counted with its transaction; this is the database's or the server's failure.
                metrics.Refused(e is Unreachable ? e.InnerException! : e);
                throw;
            }
            finally
            {
                Leave();
            }
        }

        Admit(item, enqueue: true);
        // A caller that gives up before a worker has taken its deduction withdraws it: nothing of it is applied. Once
        // taken it is decided and recorded, and a retry with its request id replays the outcome.
        await using (ct.Register(() => Withdraw(item)))
        {
            return await item.Answer.Task;
        }
    }

    /// <summary>A dry run: not queued, on a pooled connection of its own, reading one snapshot without locks
    /// (<see cref="DeductionBatch.ExplainAsync"/>), so real deductions never wait for it.</summary>
    public async Task<DeductResponse> ExplainAsync(DeductionRequest request, CancellationToken ct)
    {
        var item = new PendingDeduction(request, await UnitYearOfAsync(request.GrantId, request.Provider, ct));
        await using var connection = await database.DataSource.OpenConnectionAsync(ct);
        return new DeductResponse { Explanation = await DeductionBatch.ExplainAsync(connection, item, time.GetUtcNow(), ct) };
    }

    /// <summary>Lets a deduction in, unless the queue is full or the host is stopping. Queued, it is added under the
    /// same lock, and a worker is started if one may be.</summary>
    private void Admit(PendingDeduction item, bool enqueue)
    {
        var startWorker = false;
        lock (_gate)
        {
            if (_stopping)
            {
                throw Overloaded("The server is stopping and takes no more deductions; this one was not applied. Retry with the same request_id.");
            }

            if (enqueue && _waiting.Count >= options.MaxWaiting)
            {
                throw Overloaded($"{_waiting.Count} deductions are already waiting; this one was not applied. Retry with the same request_id after a pause.");
            }

            _inFlight++;
            if (enqueue)
            {
                item.Node = _waiting.AddLast(item);
                startWorker = StartWorkerIfIdle(item.UnitYearId!.Value);
            }
        }

        if (startWorker)
        {
            StartWorker();
        }
    }

    /// <summary>Whether a new worker should start for a deduction of <paramref name="unitYearId"/>: one may, and no
    /// worker or lock waiter is busy with that unit-year (whoever is picks it up when done). Called under the gate.</summary>
    private bool StartWorkerIfIdle(long unitYearId)
    {
        if (_workers >= options.Workers || _busy.Contains(unitYearId))
        {
            return false;
        }

        _workers++;
        return true;
    }

    /// <summary>Answers a deduction that is done and counts it out; the last one out while stopping says so.</summary>
    private void Leave()
    {
        lock (_gate)
        {
            if (--_inFlight == 0 && _stopping)
            {
                _drained.TrySetResult();
            }
        }
    }

    private void Withdraw(PendingDeduction item)
    {
        lock (_gate)
        {
            if (item.Node is not { List: not null } node)
            {
                // Taken by a worker already: its outcome will be recorded.
                return;
            }

            _waiting.Remove(node);
            item.Node = null;
        }

        item.Answer.TrySetCanceled();
        Leave();
    }

    /// <summary>The unit-year a grant belongs to, which never changes; null for an unknown grant and for another
    /// provider's, which is then refused as unknown by a batch of one that locks nothing of it.</summary>
    private async ValueTask<long?> UnitYearOfAsync(long grantId, string provider, CancellationToken ct)
    {
        if (_unitYearOfGrant.TryGetValue(grantId, out var known))
        {
            return known.Provider == provider ? known.UnitYearId : null;
        }

        await using var command = database.DataSource.CreateCommand("SELECT unit_year_id, provider_uscc FROM grants WHERE id = $1");
        command.Parameters.Add(new NpgsqlParameter { Value = grantId });
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
        {
            return null;
        }

        var found = (UnitYearId: reader.GetInt64(0), Provider: reader.GetString(1));
        if (_unitYearOfGrant.Count >= GrantCacheLimit)
        {
            _unitYearOfGrant.Clear();
        }

        _unitYearOfGrant[grantId] = found;
        return found.Provider == provider ? found.UnitYearId : null;
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

            var handedOn = await ApplyAsync(batch);
            lock (_gate)
            {
                foreach (var item in batch)
                {
                    if (!handedOn.Contains(item.UnitYearId!.Value))
                    {
                        _busy.Remove(item.UnitYearId!.Value);
                    }
                }
            }
        }
    }

    /// <summary>The waiting deductions, in order of arrival, of unit-years no worker or lock waiter holds. Called under the gate.</summary>
    private List<PendingDeduction> TakeBatch()
    {
        var batch = new List<PendingDeduction>();
        var taken = new HashSet<long>();
        for (var node = _waiting.First; node is not null && batch.Count < options.MaxBatch;)
        {
            var next = node.Next;
            var unitYearId = node.Value.UnitYearId!.Value;
            if (taken.Contains(unitYearId) || !_busy.Contains(unitYearId))
            {
                batch.Add(node.Value);
                taken.Add(unitYearId);
                _waiting.Remove(node);
                node.Value.Node = null;
            }

            node = next;
        }

        _busy.UnionWith(taken);
        return batch;
    }

    /// <summary>Applies a batch and answers what it decided. Returns the unit-years handed to lock waiters, which stay
    /// busy until their waiter is done.</summary>
    private async Task<HashSet<long>> ApplyAsync(List<PendingDeduction> batch)
    {
        DeductionOutcome[] outcomes;
        try
        {
            NpgsqlConnection connection;
            try
            {
                connection = _connections.TryPop(out var warm) ? warm : await database.DataSource.OpenConnectionAsync();
            }
            catch (Exception e) when (StoreFailures.Translate(e) is not null)
            {
                // The database refuses connections (down, restarting, recovering): nothing of the batch was tried, and
                // trying each deduction on its own would only meet the same refusal, one at a time. Answer them now.
                LogUnreachable(logger, batch.Count, e.Message);
                batch.ForEach(item => Refuse(item, e));
                return [];
            }

            try
            {
                outcomes = await DeductionBatch.RunAsync(connection, batch, time.GetUtcNow(), waitForLocks: false, metrics, CancellationToken.None);
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
            // Apply each deduction on its own, so each gets its own outcome, aside from the worker (one of them may wait
            // for a lock). Nothing of a failed transaction is kept; should the connection have been lost after COMMIT
            // reached the server, the deductions did take effect, and each then replays its recorded outcome.
            LogFallback(logger, batch.Count, e.Message);
            metrics.Fallback(e);
            return HandOff(batch, together: false, OutcomeUnknown(e));
        }

        var deferred = new List<PendingDeduction>();
        for (var i = 0; i < batch.Count; i++)
        {
            if (outcomes[i].Deferred)
            {
                deferred.Add(batch[i]);
            }
            else
            {
                Settle(batch[i], outcomes[i]);
            }
        }

        return HandOff(deferred, together: true, outcomeUnknown: false);
    }

    /// <summary>Hands deductions to tasks of their own, one per unit-year, so the worker goes on with the others.
    /// Returns the unit-years handed on.</summary>
    private HashSet<long> HandOff(List<PendingDeduction> items, bool together, bool outcomeUnknown)
    {
        var byUnitYear = items.GroupBy(i => i.UnitYearId!.Value).ToList();
        foreach (var group in byUnitYear)
        {
            var unitYearItems = group.ToList();
            _ = Task.Run(() => AsideAsync(group.Key, unitYearItems, together, outcomeUnknown));
        }

        return [.. byUnitYear.Select(g => g.Key)];
    }

    /// <summary>Applies the deductions of one unit-year on a connection of its own, waiting for their locks at most
    /// <c>Database:LockTimeout</c>: together, when a worker found the unit-year's row (or a contract's) held by another
    /// session; one by one, when their coalesced transaction failed as a whole. The unit-year stays busy meanwhile, so
    /// its later deductions wait behind these and keep their order.</summary>
    private async Task AsideAsync(long unitYearId, List<PendingDeduction> items, bool together, bool outcomeUnknown)
    {
        try
        {
            await _lockWaiters.WaitAsync();
            try
            {
                if (together)
                {
                    await TogetherAsync(unitYearId, items);
                }
                else
                {
                    await SettleEachAsync(items, outcomeUnknown);
                }
            }
            finally
            {
                _lockWaiters.Release();
            }
        }
        finally
        {
            bool startWorker;
            lock (_gate)
            {
                _busy.Remove(unitYearId);
                // Deductions of this unit-year that arrived meanwhile found it busy and started no worker.
                startWorker = _waiting.Count > 0 && StartWorkerIfIdle(unitYearId);
            }

            if (startWorker)
            {
                StartWorker();
            }
        }
    }

    private async Task TogetherAsync(long unitYearId, List<PendingDeduction> items)
    {
        try
        {
            await using var connection = await database.DataSource.OpenConnectionAsync();
            var outcomes = await DeductionBatch.RunAsync(connection, items, time.GetUtcNow(), waitForLocks: true, metrics, CancellationToken.None);
            for (var i = 0; i < items.Count; i++)
            {
                Settle(items[i], outcomes[i]);
            }
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            // The deductions of the unit-year that queued meanwhile have waited for the same lock: they are answered
            // now too, instead of each waiting out another lock timeout.
            items.AddRange(TakeWaiting(unitYearId));
            LogLockHeld(logger, unitYearId, items.Count, database.Options.LockTimeout);
            foreach (var item in items)
            {
                Refuse(item, new LedgerException(Reason.StoreUnavailable,
                    $"Another session has held this grant's unit-year (or its contract) locked for longer than {database.Options.LockTimeout.TotalSeconds:0.###} s; " +
                    "the deduction was not applied. Retry with the same request_id."));
            }
        }
        catch (Exception e)
        {
            LogFallback(logger, items.Count, e.Message);
            metrics.Fallback(e);
            await SettleEachAsync(items, OutcomeUnknown(e));
        }
    }

    /// <summary>Applies deductions one by one; once the database refuses a connection, answers the rest with that
    /// refusal instead of trying each against it. <paramref name="outcomeUnknown"/>: their coalesced transaction
    /// failed in a way that leaves its COMMIT's outcome unknown (the connection broke), so a deduction that cannot be
    /// tried again now is answered as unknown, never as not applied.</summary>
    private async Task SettleEachAsync(List<PendingDeduction> items, bool outcomeUnknown)
    {
        for (var i = 0; i < items.Count; i++)
        {
            if (await SettleAlone(items[i], outcomeUnknown) is { } unreachable)
            {
                items.Skip(i + 1).ToList().ForEach(item => Refuse(item, outcomeUnknown ? UnknownOutcome() : unreachable));
                return;
            }
        }
    }

    /// <summary>Whether a transaction's failure leaves its outcome unknown: anything but an error PostgreSQL reported,
    /// which aborted the transaction before it could commit.</summary>
    private static bool OutcomeUnknown(Exception failure) => failure is not PostgresException;

    private static LedgerException UnknownOutcome() => new(Reason.StoreUnavailable,
        "The connection to the ledger's database broke while this deduction's transaction was in flight, and the database " +
        "could not be reached again to settle it: whether it was applied is not known. Retry with the same request_id, " +
        "which replays it if it was applied and applies it once if not.");

    /// <summary>Takes the waiting deductions of one unit-year out of the queue.</summary>
    private List<PendingDeduction> TakeWaiting(long unitYearId)
    {
        var taken = new List<PendingDeduction>();
        lock (_gate)
        {
            for (var node = _waiting.First; node is not null;)
            {
                var next = node.Next;
                if (node.Value.UnitYearId == unitYearId)
                {
                    taken.Add(node.Value);
                    _waiting.Remove(node);
                    node.Value.Node = null;
                }

                node = next;
            }
        }

        return taken;
    }

    /// <summary>Applies one deduction and answers it. Returns the failure when the database refused the connection.</summary>
    private async Task<Exception?> SettleAlone(PendingDeduction item, bool outcomeUnknown)
    {
        try
        {
            Settle(item, await OneAsync(item, CancellationToken.None));
            return null;
        }
        catch (Unreachable unreachable)
        {
            Refuse(item, outcomeUnknown ? UnknownOutcome() : unreachable.InnerException!);
            return unreachable.InnerException;
        }
        catch (Exception failure)
        {
            // A retry that failed for the store's sake says nothing of the first transaction, whose outcome is unknown.
            Refuse(item, outcomeUnknown && StoreFailures.Translate(failure) is not null ? UnknownOutcome() : failure);
            return null;
        }
    }

    /// <summary>The database refused a connection: nothing was tried.</summary>
    private sealed class Unreachable(Exception inner) : Exception(inner.Message, inner);

    private void Settle(PendingDeduction item, DeductionOutcome outcome)
    {
        if (outcome.Refusal is { } refusal)
        {
            Fail(item, refusal);
            return;
        }

        item.Answer.TrySetResult(outcome.Response!);
        Leave();
    }

    /// <summary>Answers a deduction with a refusal no rule decided (the store's, the queue's).</summary>
    private void Refuse(PendingDeduction item, Exception refusal)
    {
        metrics.Refused(refusal);
        Fail(item, refusal);
    }

    private void Fail(PendingDeduction item, Exception refusal)
    {
        item.Answer.TrySetException(refusal);
        Leave();
    }

    /// <summary>An OVERLOADED refusal of the queue, counted as refused.</summary>
    private LedgerException Overloaded(string message)
    {
        var refusal = new LedgerException(Reason.Overloaded, message);
        metrics.Refused(refusal);
        return refusal;
    }

    /// <summary>A worker serves every caller's deductions, so it runs outside the trace (and every other ambient
    /// state) of the call that happened to start it; each transaction's span links to the calls it serves.</summary>
    private void StartWorker()
    {
        using (ExecutionContext.SuppressFlow())
        {
            _ = Task.Run(WorkAsync);
        }
    }

    private static DeductResponse Answer(DeductionOutcome outcome) => outcome.Refusal is { } refusal ? throw refusal : outcome.Response!;

    /// <summary>Applies one deduction as a batch of its own, waiting for its locks. A transaction that fails as a whole
    /// because of what another transaction committed meanwhile (the same invoice or request id on another unit-year, a
    /// deadlock) is tried again: its fresh read then sees what the other committed, and the rules refuse or replay
    /// accordingly.</summary>
    private async Task<DeductionOutcome> OneAsync(PendingDeduction item, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            NpgsqlConnection connection;
            try
            {
                connection = await database.DataSource.OpenConnectionAsync(ct);
            }
            catch (Exception e) when (StoreFailures.Translate(e) is not null)
            {
                throw new Unreachable(e);
            }

            await using var opened = connection;
            try
            {
                return (await DeductionBatch.RunAsync(connection, [item], time.GetUtcNow(), waitForLocks: true, metrics, ct))[0];
            }
            catch (PostgresException e) when (attempt < 3 && e.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DeadlockDetected
                or PostgresErrorCodes.SerializationFailure)
            {
                LogRetry(logger, item.Request.RequestId, e.SqlState);
            }
        }
    }

    private void Return(NpgsqlConnection connection)
    {
        if (_connections.Count < options.Workers)
        {
            _connections.Push(connection);
        }
        else
        {
            connection.Dispose();
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        metrics.ObserveQueueDepth(() =>
        {
            lock (_gate)
            {
                return _waiting.Count;
            }
        });
        return Task.CompletedTask;
    }

    /// <summary>Takes no more deductions, answers those still waiting with UNAVAILABLE (nothing of them applied), and
    /// waits for the transactions in flight to commit and answer, as long as the host allows.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        List<PendingDeduction> left;
        lock (_gate)
        {
            _stopping = true;
            left = [.. _waiting];
            _waiting.Clear();
            foreach (var item in left)
            {
                item.Node = null;
            }

            if (_inFlight == left.Count)
            {
                _drained.TrySetResult();
            }
        }

        foreach (var item in left)
        {
            Refuse(item, new LedgerException(Reason.Overloaded,
                "The server stopped before this deduction was applied; nothing of it was. Retry with the same request_id."));
        }

        LogStopping(logger, left.Count);
        await _drained.Task.WaitAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        while (_connections.TryPop(out var connection))
        {
            await connection.DisposeAsync();
        }

        _lockWaiters.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The database refused a connection ({Error}); {Count} deductions answered UNAVAILABLE, none tried")]
    private static partial void LogUnreachable(ILogger logger, int count, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A coalesced transaction of {Count} deductions failed ({Error}); applying them one by one")]
    private static partial void LogFallback(ILogger logger, int count, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deduction {RequestId} raced another transaction ({SqlState}); reading again")]
    private static partial void LogRetry(ILogger logger, string requestId, string sqlState);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Unit-year {UnitYearId} stayed locked by another session past the lock timeout ({LockTimeout}); {Count} deductions answered UNAVAILABLE")]
    private static partial void LogLockHeld(ILogger logger, long unitYearId, int count, TimeSpan lockTimeout);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deductions stop: {Count} waiting deductions answered UNAVAILABLE; finishing those in flight")]
    private static partial void LogStopping(ILogger logger, int count);
}
