using Grpc.Core;
using Npgsql;
using QuotaLedger.Server.Security;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The change feed: every journal entry once, in commit order, resumable by cursor without a gap or a repeat,
/// even when a transaction commits late with a smaller entry id.</summary>
[Collection(FeedTests.Collection)]
public sealed class WatchTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    /// <summary>A safety bound on waits for the feed, never an assertion about speed.</summary>
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task An_entry_that_commits_late_with_a_smaller_id_is_watched_exactly_once_where_resuming_by_entry_id_skips_it()
    {
        // A deduction and a grant of different unit-years share no row (a grant moves the year's pool, a deduction only
        // its unit-year's accounts); with two engine workers they run in transactions of their own, side by side.
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: new Dictionary<string, string?> { ["Deductions:Workers"] = "2", ["Deductions:BacklogPerWorker"] = "1" });
        var slow = await server.NewDealAsync();
        var fast = await server.NewDealAsync();
        var ours = new HashSet<string> { slow.Unit, fast.Unit };
        var slowGrantId = (await server.GrantAsync(slow, 1_000_000)).GrantId;
        var first = await server.GrantAsync(fast, 1_000);
        var startCursor = (await WaitForAsync(server, first.GrantId, first.Receipt.EntryId)).Cursor;
        var invoiceNo = "WATCH-" + Ids.New()[..16];
        var beforeBothId = first.Receipt.EntryId;

        // A watcher from before both grants, live while they commit.
        using var watching = new CancellationTokenSource(s_patience);
        using var watch = server.Ledger.Watch(new WatchRequest { AfterCursor = startCursor }, cancellationToken: watching.Token);
        var watched = ReadAsync(watch, e => e.Entry is { } entry && ours.Contains(entry.UnitUscc), count: 2, watching.Token);

        // The slow deduction's transaction takes its entry id, then waits in a trigger on a lock the test holds.
        var key = Random.Shared.NextInt64(1, long.MaxValue);
        await using var owner = new NpgsqlConnection(fixture.Database.ConnectionString);
        await owner.OpenAsync();
        await Execute(owner, "SELECT pg_advisory_lock($1)", key);
        var function = "watch_test_hold_" + Ids.New()[..12];
        await Execute(owner, "SELECT set_config('watch_test.function', $1, false), set_config('watch_test.memo', $2, false), set_config('watch_test.key', $3, false)",
            function, $"invoice {invoiceNo}", key.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await Execute(owner,
            """
            DO $$
            BEGIN
              EXECUTE format('CREATE FUNCTION %I() RETURNS trigger LANGUAGE plpgsql SET lock_timeout = 0 AS $f$ BEGIN PERFORM pg_advisory_xact_lock_shared(%s); RETURN NULL; END $f$',
                current_setting('watch_test.function'), current_setting('watch_test.key')::bigint);
              EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON journal_entries FOR EACH ROW WHEN (NEW.memo = %L) EXECUTE FUNCTION %I()',
                current_setting('watch_test.function'), current_setting('watch_test.memo'), current_setting('watch_test.function'));
            END $$
            """);
        try
        {
            var slowDeduction = server.DeductAsync(slow, slowGrantId, 2_000, invoiceNo);
            await WaitUntilAsync(owner, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))");

            // Meanwhile a grant for another unit-year takes a larger id and commits.
            var fastGrant = await server.GrantAsync(fast, 3_000);

            // A reader in id order sees the fast entry now and would resume after its id; in commit order it sees neither yet.
            var byId = await Statement.ReadAsync(server, new ListEntriesRequest { AfterEntryId = beforeBothId });
            Assert.Equal([fastGrant.Receipt.EntryId], byId.Where(e => ours.Contains(e.UnitUscc)).Select(e => e.EntryId));
            Assert.DoesNotContain(await Statement.ReadAsync(server, new ListEntriesRequest { AfterCursor = startCursor }), e => ours.Contains(e.UnitUscc));

            await Execute(owner, "SELECT pg_advisory_unlock($1)", key);
            var slowResponse = await slowDeduction;
            Assert.True(slowResponse.Receipt.EntryId < fastGrant.Receipt.EntryId, "the late entry holds the smaller id");

            // Resuming by entry id skips the late entry for good.
            var resumedById = await Statement.ReadAsync(server, new ListEntriesRequest { AfterEntryId = fastGrant.Receipt.EntryId });
            Assert.DoesNotContain(resumedById, e => e.EntryId == slowResponse.Receipt.EntryId);

            // The watcher got both, once each, in commit order: the late entry's transaction began first.
            var events = await watched;
            Assert.Equal([slowResponse.Receipt.EntryId, fastGrant.Receipt.EntryId], events.Select(e => e.Entry.EntryId));
            Assert.All(events, e => Assert.Equal(e.Cursor, e.Entry.Cursor));

            // ListEntries resuming by cursor gets the same guarantee.
            var byCursor = await Statement.ReadAsync(server, new ListEntriesRequest { AfterCursor = startCursor });
            Assert.Equal(events.Select(e => e.Entry.EntryId), byCursor.Where(e => ours.Contains(e.UnitUscc)).Select(e => e.EntryId));
            Assert.Equal(events.Select(e => e.Cursor), byCursor.Where(e => ours.Contains(e.UnitUscc)).Select(e => e.Cursor));
            var afterFirst = await Statement.ReadAsync(server, new ListEntriesRequest { AfterCursor = events[0].Cursor });
            Assert.Equal([fastGrant.Receipt.EntryId], afterFirst.Where(e => ours.Contains(e.UnitUscc)).Select(e => e.EntryId));

            // Disconnected, the watcher resumes from its last cursor: nothing again, then what commits next.
            await watching.CancelAsync();
            var next = await server.GrantAsync(fast, 4_000);
            using var resuming = new CancellationTokenSource(s_patience);
            using var resumed = server.Ledger.Watch(new WatchRequest { AfterCursor = events[^1].Cursor }, cancellationToken: resuming.Token);
            var later = await ReadAsync(resumed, e => e.Entry is { } entry && ours.Contains(entry.UnitUscc), count: 1, resuming.Token);
            Assert.Equal(next.Receipt.EntryId, Assert.Single(later).Entry.EntryId);
        }
        finally
        {
            await Execute(owner, "SELECT pg_advisory_unlock_all()");
            await Execute(owner,
                """
                DO $$
                BEGIN
                  EXECUTE format('DROP TRIGGER IF EXISTS %I ON journal_entries', current_setting('watch_test.function'));
                  EXECUTE format('DROP FUNCTION IF EXISTS %I()', current_setting('watch_test.function'));
                END $$
                """);
        }
    }

    [Fact]
    public async Task A_watcher_that_disconnects_and_resumes_by_cursor_under_concurrent_writes_gets_every_entry_once()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000_000);
        const int Deductions = 40;

        // Concurrent deductions (several may share one transaction) while the watcher reads in pieces and reconnects.
        var writes = Parallel.ForEachAsync(Enumerable.Range(0, Deductions), new ParallelOptions { MaxDegreeOfParallelism = 4 },
            async (_, _) => await server.DeductAsync(deal, grant.GrantId, 200));
        var seen = new List<WatchEvent>();
        var cursor = "";
        while (seen.Count < Deductions + 1)
        {
            using var reading = new CancellationTokenSource(s_patience);
            using var call = server.Ledger.Watch(new WatchRequest { UnitUscc = deal.Unit, AfterCursor = cursor }, cancellationToken: reading.Token);
            var piece = await ReadAsync(call, IsEntry, count: Math.Min(7, Deductions + 1 - seen.Count), reading.Token);
            seen.AddRange(piece);
            cursor = piece[^1].Cursor;
        }

        await writes;
        var journal = await Statement.ReadAsync(server, new ListEntriesRequest { UnitUscc = deal.Unit });
        Assert.Equal(Deductions + 1, journal.Count);
        Assert.Equal(seen.Count, seen.Select(e => e.Entry.EntryId).Distinct().Count());
        Assert.Equal(journal.Select(e => e.EntryId).Order(), seen.Select(e => e.Entry.EntryId).Order());
        Assert.Equal(journal.Select(e => e.Hash), journal.Select(e => seen.Single(s => s.Entry.EntryId == e.EntryId).Entry.Hash));

        // Nothing more after the last cursor: a watcher from it waits, and gets the next entry only.
        var after = await server.DeductAsync(deal, grant.GrantId, 200);
        using var last = new CancellationTokenSource(s_patience);
        using var tail = server.Ledger.Watch(new WatchRequest { UnitUscc = deal.Unit, AfterCursor = cursor }, cancellationToken: last.Token);
        Assert.Equal(after.Receipt.EntryId, Assert.Single(await ReadAsync(tail, IsEntry, count: 1, last.Token)).Entry.EntryId);
    }

    [Fact]
    public async Task A_provider_watches_only_its_own_entries_and_a_unit_only_its_own()
    {
        await using var secure = await SecureServer.StartAsync(fixture.Database, new DateTimeOffset(2026, 6, 3, 2, 0, 0, TimeSpan.Zero));
        var mine = await fixture.Server.NewDealAsync();
        var theirs = await fixture.Server.NewDealAsync();
        var provider = secure.WithToken(secure.Token(mine.Provider, Role.Provider));
        var unit = secure.WithToken(secure.Token(mine.Unit, Role.Unit));

        await Refusal.AssertAsync(() => FirstAsync(provider.Ledger.Watch(new WatchRequest { ProviderUscc = theirs.Provider })), StatusCode.PermissionDenied, "NOT_YOUR_RESOURCE");
        await Refusal.AssertAsync(() => FirstAsync(unit.Ledger.Watch(new WatchRequest { UnitUscc = theirs.Unit })), StatusCode.PermissionDenied, "NOT_YOUR_RESOURCE");

        // Whatever else commits, each sees its own: the provider's watch of everything is its own entries only.
        using var watching = new CancellationTokenSource(s_patience);
        using var providerWatch = provider.Ledger.Watch(new WatchRequest { FromNow = true }, cancellationToken: watching.Token);
        using var unitWatch = unit.Ledger.Watch(new WatchRequest { FromNow = true }, cancellationToken: watching.Token);
        var providerSees = ReadAsync(providerWatch, IsEntry, count: 1, watching.Token);
        var unitSees = ReadAsync(unitWatch, IsEntry, count: 1, watching.Token);
        await WaitForHeadersAsync(providerWatch, unitWatch);
        await fixture.Server.GrantAsync(theirs, 1_000);
        var own = await fixture.Server.GrantAsync(mine, 1_000);

        Assert.Equal(own.Receipt.EntryId, Assert.Single(await providerSees).Entry.EntryId);
        Assert.Equal(own.Receipt.EntryId, Assert.Single(await unitSees).Entry.EntryId);
    }

    [Fact]
    public async Task A_malformed_cursor_is_refused_as_invalid_argument_naming_the_field()
    {
        foreach (var cursor in new[] { "garbage", "v1:1:0", "v1:x:0:1", "v2:1:0:1", "v1:1:9:1", "v1:-1:0:1" })
        {
            var refused = await Refusal.AssertAsync(() => FirstAsync(fixture.Server.Ledger.Watch(new WatchRequest { AfterCursor = cursor })),
                StatusCode.InvalidArgument, "INVALID_ARGUMENT");
            Assert.Contains("after_cursor", refused.Status.Detail, StringComparison.Ordinal);
            refused = await Refusal.AssertAsync(() => Statement.ReadAsync(fixture.Server, new ListEntriesRequest { AfterCursor = cursor }),
                StatusCode.InvalidArgument, "INVALID_ARGUMENT");
            Assert.Contains("after_cursor", refused.Status.Detail, StringComparison.Ordinal);
        }

        await Refusal.AssertAsync(() => FirstAsync(fixture.Server.Ledger.Watch(new WatchRequest { AfterCursor = "v1:1:0:1", FromNow = true })),
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => Statement.ReadAsync(fixture.Server, new ListEntriesRequest { AfterCursor = "v1:1:0:1", AfterEntryId = 1 }),
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");
    }

    [Fact]
    public async Task An_alert_comes_in_the_watch_right_after_the_entries_of_the_transaction_that_raised_it_to_the_watches_it_concerns()
    {
        // A year of its own (as the alert tests): a small cap, so one grant crosses 80% and 90% of it.
        await using var server = fixture.StartServer(new DateTimeOffset(2091, 6, 2, 1, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2091, capFen: 1_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var deal = await server.NewDealAsync(contractAmountFen: 10_000_000);
        var other = await server.NewDealAsync(contractAmountFen: 10_000_000);

        using var watching = new CancellationTokenSource(s_patience);
        using var yearWatch = server.Ledger.Watch(new WatchRequest { Year = 2091, FromNow = true }, cancellationToken: watching.Token);
        using var providerWatch = server.Ledger.Watch(new WatchRequest { ProviderUscc = deal.Provider, FromNow = true }, cancellationToken: watching.Token);
        using var otherWatch = server.Ledger.Watch(new WatchRequest { UnitUscc = other.Unit, FromNow = true }, cancellationToken: watching.Token);
        await WaitForHeadersAsync(yearWatch, providerWatch, otherWatch);

        var below = await server.GrantAsync(deal, 500_000);
        var crossing = await server.GrantAsync(deal, 420_000);
        var otherGrant = await server.GrantAsync(other, 1_000);

        // In commit order: each grant's entry; the crossing grant's two alerts right after its entry, naming it.
        var seen = await ReadAsync(yearWatch, _ => true, count: 5, watching.Token);
        Assert.Equal([below.Receipt.EntryId, crossing.Receipt.EntryId, 0, 0, otherGrant.Receipt.EntryId], seen.Select(e => e.Entry?.EntryId ?? 0));
        Assert.Equal([8_000, 9_000], seen.Where(e => e.Alert is not null).Select(e => e.Alert.ThresholdBp));
        Assert.All(seen.Where(e => e.Alert is not null), e =>
        {
            Assert.Equal(AlertKind.UnitYearCap, e.Alert.Kind);
            Assert.Equal(crossing.Receipt.EntryId, e.Alert.EntryId);
            Assert.Equal(deal.Unit, e.Alert.UnitUscc);
        });
        Assert.All(seen, e => Assert.True(e.Entry is null != (e.Alert is null), "exactly one of entry and alert"));

        // The provider's watch gets the same four of its own; the other unit's watch its own grant and no alert.
        var providerSeen = await ReadAsync(providerWatch, _ => true, count: 4, watching.Token);
        Assert.Equal(seen.Take(4).Select(e => e.Cursor), providerSeen.Select(e => e.Cursor));
        Assert.Equal(otherGrant.Receipt.EntryId, Assert.Single(await ReadAsync(otherWatch, _ => true, count: 1, watching.Token)).Entry.EntryId);

        // An alert's cursor resumes the watch after it; in ListEntries it stands for the end of its transaction's entries.
        using var resumed = server.Ledger.Watch(new WatchRequest { Year = 2091, AfterCursor = seen[2].Cursor }, cancellationToken: watching.Token);
        Assert.Equal(seen.Skip(3).Select(e => e.Cursor), (await ReadAsync(resumed, _ => true, count: 2, watching.Token)).Select(e => e.Cursor));
        var entriesAfter = await Statement.ReadAsync(server, new ListEntriesRequest { Year = 2091, AfterCursor = seen[2].Cursor });
        Assert.Equal([otherGrant.Receipt.EntryId], entriesAfter.Select(e => e.EntryId));
    }

    private static bool IsEntry(WatchEvent e) => e.Entry is not null;

    /// <summary>Reads the watch until <paramref name="count"/> events that <paramref name="keep"/> accepts have come.</summary>
    private static async Task<List<WatchEvent>> ReadAsync(AsyncServerStreamingCall<WatchEvent> call, Func<WatchEvent, bool> keep, int count, CancellationToken ct)
    {
        var events = new List<WatchEvent>();
        while (events.Count < count)
        {
            Assert.True(await call.ResponseStream.MoveNext(ct), "The watch ended.");
            if (keep(call.ResponseStream.Current))
            {
                events.Add(call.ResponseStream.Current);
            }
        }

        return events;
    }

    private static async Task FirstAsync(AsyncServerStreamingCall<WatchEvent> call)
    {
        using (call)
        {
            using var patience = new CancellationTokenSource(s_patience);
            await call.ResponseStream.MoveNext(patience.Token);
        }
    }

    /// <summary>A from_now watch starts where the feed ends when the server takes the call: wait until it has.</summary>
    private static async Task WaitForHeadersAsync(params AsyncServerStreamingCall<WatchEvent>[] calls)
    {
        foreach (var call in calls)
        {
            await call.ResponseHeadersAsync;
        }
    }

    /// <summary>Waits until the entry is visible in commit order, and returns it with its cursor.</summary>
    private static async Task<JournalEntry> WaitForAsync(LedgerServer server, long grantId, long entryId)
    {
        using var patience = new CancellationTokenSource(s_patience);
        while (true)
        {
            var entries = await Statement.ReadAsync(server, new ListEntriesRequest { CommitOrder = true, GrantId = grantId });
            if (entries.FirstOrDefault(e => e.EntryId == entryId) is { } entry)
            {
                return entry;
            }

            await Task.Delay(20, patience.Token);
        }
    }

    private static async Task WaitUntilAsync(NpgsqlConnection connection, string sql)
    {
        using var patience = new CancellationTokenSource(s_patience);
        while (true)
        {
            await using var command = new NpgsqlCommand(sql, connection);
            if ((bool)(await command.ExecuteScalarAsync(patience.Token))!)
            {
                return;
            }

            await Task.Delay(20, patience.Token);
        }
    }

    private static async Task Execute(NpgsqlConnection connection, string sql, params object[] parameters)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = parameter });
        }

        await command.ExecuteNonQueryAsync();
    }
}
