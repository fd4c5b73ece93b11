using Grpc.Core;
using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The change feed's two promises under concurrent writes: every entry and alert reaches every watcher whose
/// filter names it exactly once, and each hash chain comes in order (no entry before the entry its prev_hash names).</summary>
[Collection(FeedTests.Collection)]
public sealed class FeedOrderTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    /// <summary>A safety bound on waits for the feed, never an assertion about speed.</summary>
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(180);

    [Fact]
    public async Task Watchers_that_stay_and_watchers_that_resume_get_every_entry_once_and_every_chain_in_order_under_concurrent_writes()
    {
        var server = fixture.Server;
        // Two of the watchers hang up now and then and resume from their last cursor, each time on the other server.
        await using var other = fixture.StartServer(LedgerFixture.Now);
        var start = await StartCursorAsync(server);

        // One provider; a unit whose unit-year takes many concurrent grants, deductions and releases; an OPC operator
        // whose gifts lock its unit-year and its resident's, while grants lock each of the two on their own.
        var unit = await server.NewDealAsync();
        var provider = unit.Provider;
        var opc = await server.NewConfirmedOperatorAsync(provider);
        var opcDeal = new Deal(provider, opc, await server.NewContractAsync(provider, opc));
        var resident = await server.NewConfirmedResidentAsync(provider, opc);
        var residentDeal = new Deal(provider, resident, await server.NewContractAsync(provider, resident));

        // Each watcher follows until the last write its filter names: the unit's sentinel grant, then the resident's.
        var unitSentinel = unit.GrantRequest(1_000);
        var residentSentinel = residentDeal.GrantRequest(1_000);
        using var watching = new CancellationTokenSource(s_patience);
        var followers = new[]
        {
            Follow([server], new WatchRequest { AfterCursor = start }, residentSentinel.RequestId, resumeEvery: 0, watching.Token),
            Follow([server], new WatchRequest { ProviderUscc = provider, AfterCursor = start }, residentSentinel.RequestId, resumeEvery: 0, watching.Token),
            Follow([server], new WatchRequest { UnitUscc = unit.Unit, AfterCursor = start }, unitSentinel.RequestId, resumeEvery: 0, watching.Token),
            Follow([server], new WatchRequest { UnitUscc = resident, AfterCursor = start }, residentSentinel.RequestId, resumeEvery: 0, watching.Token),
            Follow([server, other], new WatchRequest { ProviderUscc = provider, AfterCursor = start }, residentSentinel.RequestId, resumeEvery: 4, watching.Token),
            Follow([other, server], new WatchRequest { UnitUscc = resident, AfterCursor = start }, residentSentinel.RequestId, resumeEvery: 6, watching.Token),
        };

        // Each write as a client makes it: an UNAVAILABLE answer (a lock wait past the server's timeout on a loaded
        // machine) is sent again with the same request id.
        var billing = unit.GrantRequest(5_000_000);
        var billed = await Retried(() => server.Ledger.GrantAsync(billing).ResponseAsync);
        var giving = opcDeal.GrantRequest(5_000_000);
        var operatorGrant = await Retried(() => server.Ledger.GrantAsync(giving).ResponseAsync);
        var releasable = new List<long>();
        for (var i = 0; i < 6; i++)
        {
            var small = unit.GrantRequest(2_000);
            releasable.Add((await Retried(() => server.Ledger.GrantAsync(small).ResponseAsync)).GrantId);
        }

        var writes = new List<Task>();
        for (var i = 0; i < 30; i++)
        {
            var grant = unit.GrantRequest(10_000);
            writes.Add(Retried(() => server.Ledger.GrantAsync(grant).ResponseAsync));
            var deduction = unit.DeductRequest(billed.GrantId, 2_000);
            writes.Add(Retried(() => server.Ledger.DeductAsync(deduction).ResponseAsync));
        }

        for (var i = 0; i < 12; i++)
        {
            var gift = new GiftRequest { RequestId = Ids.New(), OperatorUscc = opc, GrantId = operatorGrant.GrantId, ResidentUscc = resident, AmountFen = 1_000 };
            writes.Add(Retried(() => server.Ledger.GiftAsync(gift).ResponseAsync));
            var toResident = residentDeal.GrantRequest(1_000);
            writes.Add(Retried(() => server.Ledger.GrantAsync(toResident).ResponseAsync));
            var toOperator = opcDeal.GrantRequest(1_000);
            writes.Add(Retried(() => server.Ledger.GrantAsync(toOperator).ResponseAsync));
        }

        foreach (var id in releasable)
        {
            var release = new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = provider, GrantId = id, StatementRef = "joint statement " + id };
            writes.Add(Retried(() => server.Ledger.ReleaseAsync(release).ResponseAsync));
        }

        await Task.WhenAll(writes);
        await Retried(() => server.Ledger.GrantAsync(unitSentinel).ResponseAsync);
        await Retried(() => server.Ledger.GrantAsync(residentSentinel).ResponseAsync);

        var journal = await Statement.ReadAsync(server, new ListEntriesRequest { ProviderUscc = provider });
        var ours = journal.Select(e => e.EntryId).ToHashSet();
        var expected = new[]
        {
            journal,
            journal,
            await Statement.ReadAsync(server, new ListEntriesRequest { UnitUscc = unit.Unit }),
            await Statement.ReadAsync(server, new ListEntriesRequest { UnitUscc = resident }),
            journal,
            await Statement.ReadAsync(server, new ListEntriesRequest { UnitUscc = resident }),
        };
        var inCommitOrder = await Statement.ReadAsync(server, new ListEntriesRequest { ProviderUscc = provider, AfterCursor = start });
        Assert.Equal(journal.Select(e => e.EntryId).Order(), inCommitOrder.Select(e => e.EntryId).Order());
        AssertChainsInOrder(inCommitOrder);

        for (var i = 0; i < followers.Length; i++)
        {
            var events = await followers[i];
            var entries = events.Where(e => e.Entry is { } entry && ours.Contains(entry.EntryId)).Select(e => e.Entry).ToList();
            Assert.Equal(entries.Count, entries.Select(e => e.EntryId).Distinct().Count());
            Assert.Equal(expected[i].Select(e => e.EntryId).Order(), entries.Select(e => e.EntryId).Order());
            AssertChainsInOrder(entries);
            AssertAlertsAfterTheirEntries(events);
        }
    }

    [Fact]
    public async Task An_alert_whose_transaction_becomes_visible_between_the_tails_two_reads_comes_with_its_entries()
    {
        const int Year = 2097;
        // The tail's alert read is held on a table lock for a moment: the server's lock timeout must not end it first.
        await using var server = fixture.StartServer(new DateTimeOffset(Year, 6, 2, 1, 0, 0, TimeSpan.Zero),
            settings: new Dictionary<string, string?> { ["Database:LockTimeout"] = "00:01:00" });
        await server.SetSmallYearAsync(Year, capFen: 1_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var deal = await server.NewDealAsync(contractAmountFen: 10_000_000);

        using var watching = new CancellationTokenSource(s_patience);
        using var watch = server.Ledger.Watch(new WatchRequest { UnitUscc = deal.Unit, FromNow = true }, cancellationToken: watching.Token);
        await watch.ResponseHeadersAsync;

        // An older transaction stays open, so the feed holds back what commits after it began.
        await using var older = new NpgsqlConnection(fixture.Database.ConnectionString);
        await older.OpenAsync();
        await using var olderTransaction = await older.BeginTransactionAsync(watching.Token);
        await Scalar(older, "SELECT pg_current_xact_id()::text");

        // A grant crosses 80% and 90% of the cap: one entry and two alerts, committed, not yet in the feed.
        var crossing = await server.GrantAsync(deal, 950_000);

        // The tail's next read of alerts waits on a lock the test holds, after its read of entries saw nothing new.
        await using var locker = new NpgsqlConnection(fixture.Database.ConnectionString);
        await locker.OpenAsync();
        await using var lockTransaction = await locker.BeginTransactionAsync(watching.Token);
        await Scalar(locker, "LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE");
        // (The feed's read of alerts is the one statement that names a.figure_fen; an idle tail's look at the end does not.)
        await WaitUntilAsync(fixture.Database.ConnectionString,
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%a.figure_fen%FROM alerts a%' AND datname = current_database())",
            watching.Token);

        // Between the two reads the older transaction ends: the grant's transaction is now below every snapshot's xmin.
        await olderTransaction.CommitAsync(watching.Token);
        await lockTransaction.RollbackAsync(watching.Token);

        // The entry first (without the fix its alerts came alone, and the entry never), then the alerts it raised.
        foreach (var expected in new[] { "entry", "alert", "alert" })
        {
            Assert.True(await watch.ResponseStream.MoveNext(watching.Token), "The watch ended.");
            var current = watch.ResponseStream.Current;
            Assert.Equal((expected, crossing.Receipt.EntryId), current.Entry is { } entry ? ("entry", entry.EntryId) : ("alert", current.Alert.EntryId));
        }
    }

    /// <summary>Sends the same request again while it answers UNAVAILABLE, as a client does.</summary>
    private static async Task<T> Retried<T>(Func<Task<T>> call)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call();
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable && attempt < 50)
            {
            }
        }
    }

    /// <summary>Follows a watch until the entry of the sentinel request comes. With <paramref name="resumeEvery"/> it
    /// hangs up after a random number of events up to that many, and resumes from the last cursor it received on the
    /// next of the servers.</summary>
    private static async Task<List<WatchEvent>> Follow(LedgerServer[] servers, WatchRequest request, string sentinelRequestId, int resumeEvery, CancellationToken ct)
    {
        await Task.Yield();
        var events = new List<WatchEvent>();
        for (var connection = 0; ; connection++)
        {
            var resumed = request.Clone();
            resumed.AfterCursor = events.Count > 0 ? events[^1].Cursor : request.AfterCursor;
            using var hangUp = CancellationTokenSource.CreateLinkedTokenSource(ct);
            using var call = servers[connection % servers.Length].Ledger.Watch(resumed, cancellationToken: hangUp.Token);
            var thisCall = 0;
            var hangUpAfter = resumeEvery == 0 ? int.MaxValue : Random.Shared.Next(1, resumeEvery + 1);
            while (thisCall < hangUpAfter)
            {
                Assert.True(await call.ResponseStream.MoveNext(ct), "The watch ended.");
                var current = call.ResponseStream.Current;
                events.Add(current);
                thisCall++;
                if (current.Entry?.RequestId == sentinelRequestId)
                {
                    return events;
                }
            }

            await hangUp.CancelAsync();
        }
    }

    /// <summary>No entry comes before the entry of its chain that its prev_hash names.</summary>
    private static void AssertChainsInOrder(IReadOnlyList<JournalEntry> entries)
    {
        var position = new Dictionary<string, int>();
        for (var i = 0; i < entries.Count; i++)
        {
            position[Convert.ToHexString(entries[i].Hash.Span)] = i;
        }

        for (var i = 0; i < entries.Count; i++)
        {
            if (position.TryGetValue(Convert.ToHexString(entries[i].PrevHash.Span), out var previous))
            {
                Assert.True(previous < i,
                    $"Entry {entries[i].EntryId} ({entries[i].Cursor}) of chain {entries[i].ChainKey} came before its predecessor {entries[previous].EntryId} ({entries[previous].Cursor}).");
            }
        }
    }

    /// <summary>An alert raised by an entry the watch carries comes after that entry.</summary>
    private static void AssertAlertsAfterTheirEntries(IReadOnlyList<WatchEvent> events)
    {
        var seenAt = new Dictionary<long, int>();
        for (var i = 0; i < events.Count; i++)
        {
            if (events[i].Entry is { } entry)
            {
                seenAt[entry.EntryId] = i;
            }
            else if (events[i].Alert is { EntryId: > 0 } alert && events.Any(e => e.Entry?.EntryId == alert.EntryId))
            {
                Assert.True(seenAt.ContainsKey(alert.EntryId), $"Alert {alert.AlertId} came before entry {alert.EntryId}, which raised it.");
            }
        }
    }

    /// <summary>Where the feed ends now: the start cursor a from_now watch is given.</summary>
    private static async Task<string> StartCursorAsync(LedgerServer server)
    {
        using var call = server.Ledger.Watch(new WatchRequest { FromNow = true });
        var headers = await call.ResponseHeadersAsync;
        return headers.GetValue("quotaledger-start-cursor") ?? throw new InvalidOperationException("No start cursor.");
    }

    private static async Task<object?> Scalar(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync();
    }

    private static async Task WaitUntilAsync(string connectionString, string sql, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        while (!(bool)(await Scalar(connection, sql))!)
        {
            await Task.Delay(10, ct);
        }
    }
}
