using System.Collections.Concurrent;
using Npgsql;
using Google.Protobuf;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Registry;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.Server.Telemetry;
using QuotaLedger.V1;
using ResidencyStatus = QuotaLedger.Server.Storage.ResidencyStatus;

namespace QuotaLedger.Server.Engine;

/// <summary>How deductions are coalesced (configuration section <c>Deductions</c>).</summary>
public sealed class DeductionOptions : ICheckedSettings
{
    /// <summary>Coalesce concurrent deductions into shared transactions. Off, each deduction is its own transaction.</summary>
    public bool Coalesce { get; set; } = true;

    /// <summary>The most deductions one transaction applies.</summary>
    public int MaxBatch { get; set; } = 256;

    /// <summary>How many coalesced transactions may run at once (each on its own connection, on distinct lanes). A
    /// worker beyond the first starts only for a backlog (<see cref="BacklogPerWorker"/>): under single calls one worker
    /// makes the largest batches, hence the least database work per write, while a backlog (bulk calls) keeps a second
    /// database backend busy too. docs/benchmarks.md has the measurements on the two-core benchmark machine.</summary>
    public int Workers { get; set; } = 2;

    /// <summary>How many writes must wait, for each worker already running, before another worker starts (default: a
    /// full batch each). 1 starts every worker as soon as a write waits on a free lane.</summary>
    public int BacklogPerWorker { get; set; } = 256;

    /// <summary>The most writes that may wait for a worker. One more is refused at once with OVERLOADED; a bulk call whose
    /// items would pass it is refused whole.</summary>
    public int MaxWaiting { get; set; } = 10_000;

    /// <summary>How many transactions may wait at once for a unit-year whose row another session holds (another server
    /// instance, a person in psql), each on its own connection and at most <c>Database:LockTimeout</c> long.</summary>
    public int LockWaiters { get; set; } = 4;

    /// <summary>The most items one DeductMany or GrantMany call may carry.</summary>
    public int MaxBulkItems { get; set; } = 10_000;

    public IEnumerable<string> Problems() =>
        Settings.Range(nameof(MaxBatch), MaxBatch, 1, 10_000)
            .Concat(Settings.Range(nameof(MaxBulkItems), MaxBulkItems, 1, 100_000))
            .Concat(Settings.Range(nameof(Workers), Workers, 1, 64))
            .Concat(Settings.Range(nameof(BacklogPerWorker), BacklogPerWorker, 1, 1_000_000))
            .Concat(Settings.Range(nameof(MaxWaiting), MaxWaiting, 1, 1_000_000))
            .Concat(Settings.Range(nameof(LockWaiters), LockWaiters, 1, 64));
}

/// <summary>The write engine's front: every write it serves (Deduct, Grant, Release, the expiry pass's expiries) waits
/// here while a transaction holds one of its lanes (<see cref="Lane"/>: a unit-year, a year's pool). Each worker takes
/// every waiting write (up to
/// <see cref="DeductionOptions.MaxBatch"/>) whose lanes no other worker or lock waiter of this process holds, and applies
/// them in one transaction (<see cref="WriteBatch"/>): one lock per row, one commit, one fsync for many. Answers go out
/// after the commit. Per lane the order of arrival is kept, and correctness across several server processes rests on the
/// row locks the transaction takes, in <see cref="LockOrder"/>.
/// <para>A worker never waits for a row lock: a row another session holds is skipped, and the writes that need it are
/// handed to a lock waiter, which waits for those rows on a connection of its own, at most <c>Database:LockTimeout</c>,
/// while the workers go on with every other lane. When a coalesced transaction fails as a whole, its writes are applied
/// again each as a batch of its own, which gives each its own outcome. With coalescing off, every write is such a batch
/// of one: the same rules, the same statements.</para>
/// <para>The queue is bounded (<see cref="DeductionOptions.MaxWaiting"/>); a caller that gives up before a worker has
/// taken its write withdraws it; when the host stops, the queue takes no more, finishes the transactions in flight and
/// answers the writes still waiting with UNAVAILABLE, nothing of them applied.</para></summary>
internal sealed partial class WriteQueue(
    LedgerDatabase database,
    DeductionOptions options,
    TimeProvider time,
    LedgerMetrics metrics,
    ILogger<WriteQueue> logger) : IHostedService, IAsyncDisposable
{
    private const int CacheLimit = 100_000;

    private readonly Lock _gate = new();
    private readonly LinkedList<PendingWrite> _waiting = [];
    private readonly HashSet<Lane> _busy = [];
    private readonly ConcurrentDictionary<long, GrantHome> _homes = new();
    private readonly ConcurrentDictionary<(string Provider, string ContractNo), (long Id, string Unit)> _contracts = new();
    private readonly ConcurrentDictionary<(string Unit, int Year), long> _unitYears = new();
    private readonly SemaphoreSlim _lockWaiters = new(options.LockWaiters);
    // Connections kept open for the workers, so each batch runs on a backend whose caches and prepared statements
    // are warm instead of on whichever pooled connection comes next.
    private readonly ConcurrentStack<NpgsqlConnection> _connections = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // No open grant is past its expiry before this time (UTC ticks), as read at the other (see MayHaveDueGrants).
    private long _noneDueBeforeTicks = long.MinValue;
    private long _earliestReadAtTicks;
    private int _workers;
    private int _inFlight;
    private bool _stopping;

    /// <summary>The most writes that may wait at once (<see cref="DeductionOptions.MaxWaiting"/>): a page of the expiry
    /// pass is never larger, or the queue could never take it.</summary>
    public int MaxWaiting => options.MaxWaiting;

    public async Task<DeductResponse> DeductAsync(DeductionRequest request, CancellationToken ct) =>
        (DeductResponse)await SubmitAsync(new PendingDeduction(request, (await HomeOfAsync(request.GrantId, request.Provider, ct))?.UnitYearId), ct);

    /// <summary>A release, queued on its grant's year's pool and unit-year.</summary>
    public async Task<ReleaseResponse> ReleaseAsync(ReleaseCall call, ReleaseRequest sent, CancellationToken ct) =>
        (ReleaseResponse)await SubmitAsync(new PendingRelease(call, sent, await HomeOfAsync(call.GrantId, call.Provider, ct)), ct);

    /// <summary>A grant: its contract and unit-year resolved (the unit-year created on first use), then queued on its
    /// year's pool and its unit-year. <paramref name="prepare"/> runs once the target is known, before the grant is queued (the service's expiry sweep).</summary>
    public async Task<GrantResponse> GrantAsync(GrantCall call, GrantRequest sent, DateTimeOffset now,
        Func<GrantTarget, Fen, DateTimeOffset, CancellationToken, Task> prepare, CancellationToken ct)
    {
        var pending = await PendingGrantsAsync([(call, sent)], now, prepare, ct);
        var response = (GrantResponse)await SubmitAsync(pending[0], ct);
        LowerEarliestExpiry(response);
        return response;
    }

    /// <summary>The deductions of one bulk call (DeductMany), queued together as if each had been sent alone at the same
    /// moment, in order: each decided by the same rules in the transactions its lanes fall into, each recorded under
    /// its own request id. Returns once every one is answered, each answer its own task (applied, or its refusal).
    /// The call as a whole is refused OVERLOADED, nothing of it queued, when its items would take the queue past its bound.</summary>
    public async Task<Task<IMessage>[]> DeductManyAsync(IReadOnlyList<DeductionRequest> requests, CancellationToken ct)
    {
        // The homes as read for this call: the shared cache may be emptied meanwhile (it is bounded), and an item whose
        // grant exists must never be taken for one naming an unknown grant.
        var homes = await HomesOfAsync(requests.Select(r => r.GrantId), ct);
        return await SubmitManyAsync(
            [.. requests.Select(r => new PendingDeduction(r, HomeFor(homes.GetValueOrDefault(r.GrantId), r.Provider)?.UnitYearId))], ct);
    }

    /// <summary>A gift, queued on the operator's grant's unit-year and the resident's, which is made on first use before
    /// the gift is queued, as a grant's unit-year is: only for a resident the bureau has confirmed on the operator's list
    /// (a gift to anyone else is refused without one).</summary>
    public async Task<GiftResponse> GiftAsync(GiftCall call, GiftRequest sent, CancellationToken ct)
    {
        var home = await HomesOfAsync([call.GrantId], ct);
        GrantHome? source = home.TryGetValue(call.GrantId, out var found) && found.Unit == call.Operator ? found : null;
        long? resident = null;
        if (source is { } s && call.Resident != call.Operator)
        {
            var id = await UnitYearAsync(call.Resident, s.Year, create: await ConfirmedResidentAsync(call.Operator, call.Resident, ct), ct);
            resident = id == 0 ? null : id;
        }

        return (GiftResponse)await SubmitAsync(new PendingGift(call, sent, source, resident), ct);
    }

    /// <summary>Whether the resident's latest step on the operator's list is the bureau's confirmation.</summary>
    private async Task<bool> ConfirmedResidentAsync(string operatorUscc, string residentUscc, CancellationToken ct)
    {
        await using var command = database.DataSource.CreateCommand(
            $"SELECT coalesce({OpcCommunity.ResidencySql("$1::bpchar", "$2::bpchar")} = {(short)ResidencyStatus.Confirmed}, false)");
        command.Parameters.Add(new NpgsqlParameter { Value = operatorUscc });
        command.Parameters.Add(new NpgsqlParameter { Value = residentUscc });
        return await command.ExecuteScalarAsync(ct) is true;
    }

    /// <summary>A page of the expiry pass: each grant queued on its year's pool and its unit-year, as a release is, and
    /// decided under their locks (<see cref="ExpiryRules.Decide"/>) in whichever transaction its lanes fall into, beside
    /// the deductions, grants and releases of the same rows. Each answer is its own task: the grant's part of the pass
    /// (<see cref="ExpireDueGrantsResponse"/>, one expired or none), or the failure of its transaction.</summary>
    public async Task<Task<IMessage>[]> ExpireManyAsync(IReadOnlyList<long> grantIds, string requestId, string caller, CancellationToken ct)
    {
        var homes = await HomesOfAsync(grantIds, ct);
        return await SubmitManyAsync([.. grantIds.Select(id => new PendingExpiry(id, homes[id], requestId, caller))], ct);
    }

    /// <summary>The grants of one bulk call (GrantMany), as <see cref="DeductManyAsync"/>: each target resolved (a
    /// unit-year created on first use) and the expiry sweep run once per contract that may have due grants, then all
    /// queued at once; on their year's pool lane they coalesce into as few transactions as the batch size allows.</summary>
    public async Task<Task<IMessage>[]> GrantManyAsync(IReadOnlyList<(GrantCall Call, GrantRequest Sent)> calls, DateTimeOffset now,
        Func<GrantTarget, Fen, DateTimeOffset, CancellationToken, Task> prepare, CancellationToken ct)
    {
        var answers = await SubmitManyAsync(await PendingGrantsAsync(calls, now, prepare, ct), ct);
        foreach (var answer in answers.Where(a => a.IsCompletedSuccessfully))
        {
            LowerEarliestExpiry((GrantResponse)answer.Result);
        }

        return answers;
    }

    /// <summary>Grants ready to queue: each target resolved (the unit-year created on first use), and, when an open grant
    /// may be past its expiry, <paramref name="prepare"/> (the service's expiry sweep) run once per contract before any
    /// is queued. The sweep returns due grants to the pool until it holds the amount asked: what all the grants ask, as
    /// the same grants sent one by one would each have swept for their own.</summary>
    private async Task<List<PendingWrite>> PendingGrantsAsync(IReadOnlyList<(GrantCall Call, GrantRequest Sent)> calls, DateTimeOffset now,
        Func<GrantTarget, Fen, DateTimeOffset, CancellationToken, Task> prepare, CancellationToken ct)
    {
        var year = ChinaCalendar.YearOf(now);
        var sweep = MayHaveDueGrants(now);
        var total = new Fen(calls.Aggregate(0L, (sum, c) => checked(sum + c.Call.Amount.Value)));
        var swept = new HashSet<long>();
        var items = new List<PendingWrite>(calls.Count);
        foreach (var (call, sent) in calls)
        {
            var target = await TargetOfAsync(call, year, create: true, ct);
            if (sweep && target is { } known && swept.Add(known.ContractId))
            {
                await prepare(known, total, now, ct);
            }

            items.Add(new PendingGrant(call, sent, year, target));
        }

        if (swept.Count > 0)
        {
            await LearnEarliestExpiryAsync(now, ct);
        }

        return items;
    }

    /// <summary>Queues the writes that have lanes together (or refuses them all, none queued, when they would pass its bound),
    /// and applies the others, which name nothing that exists, one by one beside them; waits until every one is
    /// answered. A caller that gives up withdraws those no worker has taken yet.</summary>
    private async Task<Task<IMessage>[]> SubmitManyAsync(List<PendingWrite> items, CancellationToken ct)
    {
        var queued = options.Coalesce ? items.Where(i => i.Lanes.Count > 0).ToList() : [];
        var alone = options.Coalesce ? items.Where(i => i.Lanes.Count == 0).ToList() : items;
        AdmitMany(queued);
        await using (ct.Register(() => queued.ForEach(Withdraw)))
        {
            foreach (var item in alone)
            {
                try
                {
                    item.Answer.TrySetResult(await AloneAsync(item, ct));
                }
                catch (Exception e)
                {
                    item.Answer.TrySetException(e);
                }
            }

            var answers = items.Select(i => i.Answer.Task).ToArray();
            try
            {
                await Task.WhenAll(answers);
            }
            catch (Exception) when (!ct.IsCancellationRequested)
            {
                // Each refusal is read from its own task.
            }

            return answers;
        }
    }

    /// <summary>Lets the writes of a bulk call in together: all of them, or (the host stopping, the queue full already)
    /// none, refused OVERLOADED as a whole. Starts as many workers as may start for their lanes.</summary>
    private void AdmitMany(List<PendingWrite> items)
    {
        if (items.Count == 0)
        {
            return;
        }

        var workers = 0;
        lock (_gate)
        {
            if (_stopping)
            {
                var refusal = new LedgerException(Reason.Overloaded, "The server is stopping and takes no more writes; nothing of this call was applied. Retry it with the same request ids.");
                items.ForEach(item => CountRefused(item, refusal));
                throw refusal;
            }

            // A call's items count against the bound as single writes do: all of them fit, or none is queued.
            if (_waiting.Count + items.Count > options.MaxWaiting)
            {
                var refusal = new LedgerException(Reason.Overloaded,
                    $"{_waiting.Count} writes are already waiting and this call's {items.Count} would pass the limit of {options.MaxWaiting} (Deductions:MaxWaiting); " +
                    "nothing of this call was applied. Retry it with the same request ids after a pause, or in smaller calls.");
                items.ForEach(item => CountRefused(item, refusal));
                throw refusal;
            }

            foreach (var item in items)
            {
                _inFlight++;
                item.Node = _waiting.AddLast(item);
                if (StartWorkerIfIdle(item.Lanes))
                {
                    workers++;
                }
            }
        }

        for (var i = 0; i < workers; i++)
        {
            StartWorker();
        }
    }

    /// <summary>Where each grant of <paramref name="grantIds"/> that exists lives: from the cache, and the others read in
    /// one statement (and remembered).</summary>
    private async Task<Dictionary<long, GrantHome>> HomesOfAsync(IEnumerable<long> grantIds, CancellationToken ct)
    {
        var homes = new Dictionary<long, GrantHome>();
        var unknown = new List<long>();
        foreach (var id in grantIds.Distinct())
        {
            if (_homes.TryGetValue(id, out var home))
            {
                homes[id] = home;
            }
            else
            {
                unknown.Add(id);
            }
        }

        if (unknown.Count == 0)
        {
            return homes;
        }

        await using var command = database.DataSource.CreateCommand(
            "SELECT id, provider_uscc, unit_uscc, year, contract_id, unit_year_id FROM grants WHERE id = ANY($1)");
        command.Parameters.Add(new NpgsqlParameter { Value = unknown.ToArray() });
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var home = new GrantHome(reader.GetString(1), reader.GetString(2), reader.GetInt32(3), reader.GetInt64(4), reader.GetInt64(5));
            homes[reader.GetInt64(0)] = home;
            Remember(_homes, reader.GetInt64(0), home);
        }

        return homes;
    }

    /// <summary>Whether an open grant may be past its expiry at <paramref name="now"/>: not before the earliest expiry of
    /// the open grants as last read (a grant made since expires later, unless a policy shortened its validity, which
    /// is why the bound is read again at least every minute; this process lowers it for its own grants at once).</summary>
    private bool MayHaveDueGrants(DateTimeOffset now) =>
        now.UtcTicks >= Interlocked.Read(ref _noneDueBeforeTicks) || now.UtcTicks - Interlocked.Read(ref _earliestReadAtTicks) > TimeSpan.TicksPerMinute;

    private async Task LearnEarliestExpiryAsync(DateTimeOffset now, CancellationToken ct)
    {
        await using var command = database.DataSource.CreateCommand(
            $"SELECT min(expires_at) FROM grants WHERE state = {(short)GrantState.Open}");
        var earliest = await command.ExecuteScalarAsync(ct) is DateTime found ? new DateTimeOffset(found, TimeSpan.Zero).UtcTicks : long.MaxValue;
        Interlocked.Exchange(ref _noneDueBeforeTicks, earliest);
        Interlocked.Exchange(ref _earliestReadAtTicks, now.UtcTicks);
    }

    /// <summary>A grant this process made lowers the bound to its own expiry, should that be earlier.</summary>
    private void LowerEarliestExpiry(GrantResponse response)
    {
        if (response.ExpiresAt is null)
        {
            return;
        }

        var expiresAtTicks = response.ExpiresAt.ToDateTimeOffset().UtcTicks;
        var seen = Interlocked.Read(ref _noneDueBeforeTicks);
        while (expiresAtTicks < seen)
        {
            var was = Interlocked.CompareExchange(ref _noneDueBeforeTicks, expiresAtTicks, seen);
            if (was == seen)
            {
                return;
            }

            seen = was;
        }
    }

    private async Task<IMessage> SubmitAsync(PendingWrite item, CancellationToken ct)
    {
        if (!options.Coalesce || item.Lanes.Count == 0)
        {
            return await AloneAsync(item, ct);
        }

        Admit(item, enqueue: true);
        // A caller that gives up before a worker has taken its write withdraws it: nothing of it is applied. Once taken
        // it is decided and recorded, and a retry with its request id replays the outcome.
        await using (ct.Register(() => Withdraw(item)))
        {
            return await item.Answer.Task;
        }
    }

    /// <summary>A write applied as a batch of its own, not queued: with coalescing off, and for writes naming nothing
    /// that exists (a batch of one records their refusal).</summary>
    private async Task<IMessage> AloneAsync(PendingWrite item, CancellationToken ct)
    {
        Admit(item, enqueue: false);
        try
        {
            return Answer(await OneAsync(item, ct));
        }
        catch (Exception e) when (e is not (LedgerException or OperationCanceledException))
        {
            // A rule's refusal was counted with its transaction; this is the database's or the server's failure.
            CountRefused(item, e is Unreachable ? e.InnerException! : e);
            throw;
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>A dry run: not queued, on a pooled connection of its own, reading one snapshot without locks
    /// (<see cref="WriteBatch.ExplainDeductionAsync"/>), so real writes never wait for it.</summary>
    public async Task<DeductResponse> ExplainAsync(DeductionRequest request, CancellationToken ct)
    {
        var item = new PendingDeduction(request, (await HomeOfAsync(request.GrantId, request.Provider, ct))?.UnitYearId);
        await using var connection = await database.DataSource.OpenConnectionAsync(ct);
        return new DeductResponse { Explanation = await WriteBatch.ExplainDeductionAsync(connection, item, time.GetUtcNow(), ct) };
    }

    /// <summary>A grant's dry run, as a deduction's; it creates nothing, not even the unit-year.</summary>
    public async Task<GrantResponse> ExplainAsync(GrantCall call, GrantRequest sent, DateTimeOffset now, CancellationToken ct)
    {
        var year = ChinaCalendar.YearOf(now);
        var item = new PendingGrant(call, sent, year, await TargetOfAsync(call, year, create: false, ct));
        await using var connection = await database.DataSource.OpenConnectionAsync(ct);
        return new GrantResponse { Explanation = await WriteBatch.ExplainGrantAsync(connection, item, now, ct) };
    }

    /// <summary>Lets a write in, unless the queue is full or the host is stopping. Queued, it is added under the same
    /// lock, and a worker is started if one may be.</summary>
    private void Admit(PendingWrite item, bool enqueue)
    {
        var startWorker = false;
        lock (_gate)
        {
            if (_stopping)
            {
                throw Overloaded(item, "The server is stopping and takes no more writes; this one was not applied. Retry with the same request_id.");
            }

            if (enqueue && _waiting.Count >= options.MaxWaiting)
            {
                throw Overloaded(item, $"{_waiting.Count} writes are already waiting; this one was not applied. Retry with the same request_id after a pause.");
            }

            _inFlight++;
            if (enqueue)
            {
                item.Node = _waiting.AddLast(item);
                startWorker = StartWorkerIfIdle(item.Lanes);
            }
        }

        if (startWorker)
        {
            StartWorker();
        }
    }

    /// <summary>Whether a new worker should start for a write on <paramref name="lanes"/>: one may (the first always, another
    /// only for a backlog of <see cref="DeductionOptions.BacklogPerWorker"/> writes per worker running), and no worker or
    /// lock waiter holds one of the lanes (whoever does picks the write up when done). Called under the gate.</summary>
    private bool StartWorkerIfIdle(IEnumerable<Lane> lanes)
    {
        if (_workers >= options.Workers || (_workers > 0 && _waiting.Count < (long)_workers * options.BacklogPerWorker) || lanes.Any(_busy.Contains))
        {
            return false;
        }

        _workers++;
        return true;
    }

    /// <summary>Answers a write that is done and counts it out; the last one out while stopping says so.</summary>
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

    private void Withdraw(PendingWrite item)
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

    /// <summary>Where a grant lives, which never changes; null for an unknown grant and for another provider's, which is
    /// then refused as unknown by a batch of one that locks nothing of it.</summary>
    private async ValueTask<GrantHome?> HomeOfAsync(long grantId, string provider, CancellationToken ct) =>
        HomeFor(_homes.TryGetValue(grantId, out var home) ? home : (await HomesOfAsync([grantId], ct)).GetValueOrDefault(grantId), provider);

    /// <summary>A grant's home as <paramref name="provider"/> may name it: null for no grant (the default) or another provider's.</summary>
    private static GrantHome? HomeFor(GrantHome home, string provider) => home.Provider == provider ? home : null;

    /// <summary>Where a grant lands: the provider's contract (which never changes its unit) and its unit-year of
    /// <paramref name="year"/>, created on first use when <paramref name="create"/> (a dry run creates nothing, and
    /// names unit-year 0 when there is none yet). Null when the provider has no such contract.</summary>
    private async ValueTask<GrantTarget?> TargetOfAsync(GrantCall call, int year, bool create, CancellationToken ct)
    {
        if (!_contracts.TryGetValue((call.Provider, call.ContractNo), out var contract))
        {
            await using var command = database.DataSource.CreateCommand(
                "SELECT id, unit_uscc FROM contracts WHERE provider_uscc = $1::text::bpchar AND contract_no = $2");
            command.Parameters.Add(new NpgsqlParameter { Value = call.Provider });
            command.Parameters.Add(new NpgsqlParameter { Value = call.ContractNo });
            await using var reader = await command.ExecuteReaderAsync(ct);
            if (!await reader.ReadAsync(ct))
            {
                return null;
            }

            contract = (reader.GetInt64(0), reader.GetString(1));
            Remember(_contracts, (call.Provider, call.ContractNo), contract);
        }

        if (!_unitYears.TryGetValue((contract.Unit, year), out var unitYearId))
        {
            unitYearId = await UnitYearAsync(contract.Unit, year, create, ct);
            if (unitYearId == 0)
            {
                return new GrantTarget(contract.Id, contract.Unit, year, 0);
            }

            Remember(_unitYears, (contract.Unit, year), unitYearId);
        }

        return new GrantTarget(contract.Id, contract.Unit, year, unitYearId);
    }

    /// <summary>The unit-year's id; with <paramref name="create"/>, the unit-year and its deducted account are created
    /// first when they are new (two first grants racing: the loser's insert waits for the winner's, then does nothing).</summary>
    private async Task<long> UnitYearAsync(string unit, int year, bool create, CancellationToken ct)
    {
        if (create)
        {
            await using var insert = database.DataSource.CreateCommand(UnitYears.CreateSql);
            insert.Parameters.Add(new NpgsqlParameter { Value = unit });
            insert.Parameters.Add(new NpgsqlParameter { Value = year });
            await insert.ExecuteNonQueryAsync(ct);
        }

        // A statement of its own, so it sees the unit-year whichever of two racing first grants created it.
        await using var select = database.DataSource.CreateCommand("SELECT id FROM unit_years WHERE unit_uscc = $1::bpchar AND year = $2");
        select.Parameters.Add(new NpgsqlParameter { Value = unit });
        select.Parameters.Add(new NpgsqlParameter { Value = year });
        return await select.ExecuteScalarAsync(ct) is long id ? id : 0;
    }

    private static void Remember<TKey, TValue>(ConcurrentDictionary<TKey, TValue> cache, TKey key, TValue value)
        where TKey : notnull
    {
        if (cache.Count >= CacheLimit)
        {
            cache.Clear();
        }

        cache[key] = value;
    }

    private async Task WorkAsync()
    {
        while (true)
        {
            List<PendingWrite> batch;
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
                foreach (var lane in batch.SelectMany(i => i.Lanes).Distinct())
                {
                    if (!handedOn.Contains(lane))
                    {
                        _busy.Remove(lane);
                    }
                }
            }
        }
    }

    /// <summary>The waiting writes, in order of arrival, whose lanes no worker or lock waiter holds. A write left
    /// waiting blocks its lanes for the rest of the pass, so every lane keeps its order. Called under the gate.</summary>
    private List<PendingWrite> TakeBatch()
    {
        var batch = new List<PendingWrite>();
        var taken = new HashSet<Lane>();
        var blocked = new HashSet<Lane>();
        for (var node = _waiting.First; node is not null && batch.Count < options.MaxBatch;)
        {
            var next = node.Next;
            var lanes = node.Value.Lanes;
            if (lanes.All(l => !blocked.Contains(l) && (taken.Contains(l) || !_busy.Contains(l))))
            {
                batch.Add(node.Value);
                taken.UnionWith(lanes);
                _waiting.Remove(node);
                node.Value.Node = null;
            }
            else
            {
                blocked.UnionWith(lanes);
            }

            node = next;
        }

        _busy.UnionWith(taken);
        return batch;
    }

    /// <summary>Applies a batch and answers what it decided. Returns the lanes handed to lock waiters, which stay
    /// busy until their waiter is done.</summary>
    private async Task<HashSet<Lane>> ApplyAsync(List<PendingWrite> batch)
    {
        WriteOutcome[] outcomes;
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
                // trying each write on its own would only meet the same refusal, one at a time. Answer them now.
                LogUnreachable(logger, batch.Count, e.Message);
                batch.ForEach(item => Refuse(item, e));
                return [];
            }

            try
            {
                outcomes = await WriteBatch.RunAsync(connection, batch, time.GetUtcNow(), waitForLocks: false, metrics, CancellationToken.None);
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
            // Apply each write on its own, so each gets its own outcome, aside from the worker (one of them may wait for
            // a lock). Nothing of a failed transaction is kept; should the connection have been lost after COMMIT
            // reached the server, the writes did take effect, and each then replays its recorded outcome.
            LogFallback(logger, batch.Count, e.Message);
            metrics.Fallback(e);
            return HandOff(batch, together: false, OutcomeUnknown(e));
        }

        var deferred = new List<PendingWrite>();
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

    /// <summary>Hands writes to tasks of their own, one per group of writes that share a lane, so the worker goes on
    /// with the others. Returns the lanes handed on.</summary>
    private HashSet<Lane> HandOff(List<PendingWrite> items, bool together, bool outcomeUnknown)
    {
        var groups = new List<(HashSet<Lane> Lanes, List<PendingWrite> Items)>();
        foreach (var item in items)
        {
            var joined = groups.Where(g => item.Lanes.Any(g.Lanes.Contains)).ToList();
            var group = (Lanes: new HashSet<Lane>(item.Lanes), Items: new List<PendingWrite>());
            foreach (var other in joined)
            {
                group.Lanes.UnionWith(other.Lanes);
                group.Items.AddRange(other.Items);
                groups.Remove(other);
            }

            group.Items.Add(item);
            // Items keep their order of arrival within the merged group.
            group.Items.Sort((a, b) => items.IndexOf(a).CompareTo(items.IndexOf(b)));
            groups.Add(group);
        }

        foreach (var (lanes, groupItems) in groups)
        {
            _ = Task.Run(() => WaitForRowsAsync(lanes, groupItems, together, outcomeUnknown));
        }

        return [.. groups.SelectMany(g => g.Lanes)];
    }

    /// <summary>Applies writes that share lanes on a connection of their own, waiting for their locks at most
    /// <c>Database:LockTimeout</c>: together, when a worker found one of their rows held by another session; one by
    /// one, when their coalesced transaction failed as a whole. Their lanes stay busy meanwhile, so later writes of
    /// those lanes wait behind these and keep their order.</summary>
    private async Task WaitForRowsAsync(HashSet<Lane> lanes, List<PendingWrite> items, bool together, bool outcomeUnknown)
    {
        try
        {
            await _lockWaiters.WaitAsync();
            try
            {
                if (together)
                {
                    await ApplyWaitingAsync(lanes, items);
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
                _busy.ExceptWith(lanes);
                // Writes of these lanes that arrived meanwhile found them busy and started no worker.
                startWorker = _waiting.Count > 0 && StartWorkerIfIdle(lanes);
            }

            if (startWorker)
            {
                StartWorker();
            }
        }
    }

    private async Task ApplyWaitingAsync(HashSet<Lane> lanes, List<PendingWrite> items)
    {
        try
        {
            await using var connection = await database.DataSource.OpenConnectionAsync();
            var outcomes = await WriteBatch.RunAsync(connection, items, time.GetUtcNow(), waitForLocks: true, metrics, CancellationToken.None);
            for (var i = 0; i < items.Count; i++)
            {
                Settle(items[i], outcomes[i]);
            }
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            // The writes of these lanes that queued meanwhile have waited for the same lock: they are answered now
            // too, instead of each waiting out another lock timeout.
            items.AddRange(TakeWaiting(lanes));
            LogLockHeld(logger, string.Join(", ", lanes), items.Count, database.Options.LockTimeout);
            foreach (var item in items)
            {
                Refuse(item, new LedgerException(Reason.StoreUnavailable,
                    $"Another session has held a row this write needs (its year's pool, contract or unit-year) locked for longer than {database.Options.LockTimeout.TotalSeconds:0.###} s; " +
                    "the write was not applied. Retry with the same request_id."));
            }
        }
        catch (Exception e)
        {
            LogFallback(logger, items.Count, e.Message);
            metrics.Fallback(e);
            await SettleEachAsync(items, OutcomeUnknown(e));
        }
    }

    /// <summary>Applies writes one by one; once the database refuses a connection, answers the rest with that refusal
    /// instead of trying each against it. <paramref name="outcomeUnknown"/>: their coalesced transaction failed in a
    /// way that leaves its COMMIT's outcome unknown (the connection broke), so a write that cannot be tried again now
    /// is answered as unknown, never as not applied.</summary>
    private async Task SettleEachAsync(List<PendingWrite> items, bool outcomeUnknown)
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
        "The connection to the ledger's database broke while this write's transaction was in flight, and the database " +
        "could not be reached again to settle it: whether it was applied is not known. Retry with the same request_id, " +
        "which replays it if it was applied and applies it once if not.");

    /// <summary>Takes the waiting writes on any of <paramref name="lanes"/> out of the queue.</summary>
    private List<PendingWrite> TakeWaiting(HashSet<Lane> lanes)
    {
        var taken = new List<PendingWrite>();
        lock (_gate)
        {
            for (var node = _waiting.First; node is not null;)
            {
                var next = node.Next;
                if (node.Value.Lanes.Any(lanes.Contains))
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

    /// <summary>Applies one write and answers it. Returns the failure when the database refused the connection.</summary>
    private async Task<Exception?> SettleAlone(PendingWrite item, bool outcomeUnknown)
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

    private void Settle(PendingWrite item, WriteOutcome outcome)
    {
        if (outcome.Deferred)
        {
            // A transaction that waited for its locks holds every row its writes need; one that did not is a bug.
            Fail(item, new InvalidOperationException($"A write of {item.Method} was left undecided by a transaction that waited for its locks."));
            return;
        }

        if (outcome.Refusal is { } refusal)
        {
            Fail(item, refusal);
            return;
        }

        item.Answer.TrySetResult(outcome.Response!);
        Leave();
    }

    /// <summary>Answers a write with a refusal no rule decided (the store's, the queue's).</summary>
    private void Refuse(PendingWrite item, Exception refusal)
    {
        CountRefused(item, refusal);
        Fail(item, refusal);
    }

    /// <summary>The deduction metrics count deductions only.</summary>
    private void CountRefused(PendingWrite item, Exception refusal)
    {
        if (item is PendingDeduction)
        {
            metrics.Refused(refusal);
        }
    }

    private void Fail(PendingWrite item, Exception refusal)
    {
        item.Answer.TrySetException(refusal);
        Leave();
    }

    /// <summary>An OVERLOADED refusal of the queue, counted as refused.</summary>
    private LedgerException Overloaded(PendingWrite item, string message)
    {
        var refusal = new LedgerException(Reason.Overloaded, message);
        CountRefused(item, refusal);
        return refusal;
    }

    /// <summary>A worker serves every caller's writes, so it runs outside the trace (and every other ambient
    /// state) of the call that happened to start it; each transaction's span links to the calls it serves.</summary>
    private void StartWorker()
    {
        using (ExecutionContext.SuppressFlow())
        {
            _ = Task.Run(WorkAsync);
        }
    }

    private static IMessage Answer(WriteOutcome outcome) => outcome switch
    {
        { Refusal: { } refusal } => throw refusal,
        { Response: { } response } => response,
        // A transaction that waited for its locks holds every row its writes need; one that did not is a bug.
        _ => throw new InvalidOperationException("A write was left undecided by a transaction that waited for its locks."),
    };

    /// <summary>Applies one write as a batch of its own, waiting for its locks. A transaction that fails as a whole
    /// because of what another transaction committed meanwhile (the same invoice or request id elsewhere, a
    /// deadlock) is tried again: its fresh read then sees what the other committed, and the rules refuse or replay
    /// accordingly.</summary>
    private async Task<WriteOutcome> OneAsync(PendingWrite item, CancellationToken ct)
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
                return (await WriteBatch.RunAsync(connection, [item], time.GetUtcNow(), waitForLocks: true, metrics, ct))[0];
            }
            catch (PostgresException e) when (attempt < 3 && e.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DeadlockDetected
                or PostgresErrorCodes.SerializationFailure)
            {
                LogRetry(logger, item.Key.RequestId, e.SqlState);
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

    /// <summary>Takes no more writes, answers those still waiting with UNAVAILABLE (nothing of them applied), and
    /// waits for the transactions in flight to commit and answer, as long as the host allows.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        List<PendingWrite> left;
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
                "The server stopped before this write was applied; nothing of it was. Retry with the same request_id."));
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "The database refused a connection ({Error}); {Count} writes answered UNAVAILABLE, none tried")]
    private static partial void LogUnreachable(ILogger logger, int count, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A coalesced transaction of {Count} writes failed ({Error}); applying them one by one")]
    private static partial void LogFallback(ILogger logger, int count, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Write {RequestId} raced another transaction ({SqlState}); reading again")]
    private static partial void LogRetry(ILogger logger, string requestId, string sqlState);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rows of {Lanes} stayed locked by another session past the lock timeout ({LockTimeout}); {Count} writes answered UNAVAILABLE")]
    private static partial void LogLockHeld(ILogger logger, string lanes, int count, TimeSpan lockTimeout);

    [LoggerMessage(Level = LogLevel.Information, Message = "Writes stop: {Count} waiting writes answered UNAVAILABLE; finishing those in flight")]
    private static partial void LogStopping(ILogger logger, int count);
}
