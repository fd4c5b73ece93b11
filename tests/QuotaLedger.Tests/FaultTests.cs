using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Health.V1;
using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The cheap faults, inflicted for real on a PostgreSQL cluster of the test's own while deductions run: every
/// server connection killed, and a crash with recovery. No call answers INTERNAL; once every call whose outcome went
/// unseen is retried with its request id, every acknowledged deduction exists exactly once and nothing else was
/// applied. The costlier faults (kill -9 and SIGTERM of the server, a row held locked for 30 s, two instances) run
/// from loadtest/faults.sh.</summary>
[Collection(SlowTests.Collection), Trait("Category", "Slow")]
public sealed class FaultTests
{
    private const long Share = 500;
    private const long InvoiceFen = 1_000;
    private const int Callers = 16;

    [Theory]
    [InlineData("terminate every server connection")]
    [InlineData("restart PostgreSQL immediately")]
    public async Task Under_load_a_database_fault_loses_no_acknowledged_deduction_applies_none_twice_and_answers_no_internal(string fault)
    {
        await using var database = await TestDatabase.StartPrivateAsync();
        await using var server = LedgerServer.Start(database, LedgerFixture.Now);
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1_000_000_000 });
        var targets = new List<(Deal Deal, long GrantId)>();
        for (var i = 0; i < 4; i++)
        {
            var deal = await server.NewDealAsync();
            targets.Add((deal, (await server.GrantAsync(deal, 10_000_000)).GrantId));
        }

        var load = new Load(server, targets);
        var running = load.RunAsync();
        await load.UntilAppliedAsync(200);
        if (fault.StartsWith("terminate", StringComparison.Ordinal))
        {
            Assert.True(await TerminateServingConnectionsAsync(database) > 0);
        }
        else
        {
            await PostgresControl.RestartImmediateAsync(database.Cluster!);
        }

        // The ledger recovers by itself: deductions apply again after the fault.
        await load.UntilAppliedAsync(load.Applied + 200);
        await load.StopAsync(running);

        Assert.Empty(load.Unexpected);
        await AssertRefusalsThatSayNotAppliedWereNotAsync(database, load);
        if (fault.StartsWith("restart", StringComparison.Ordinal))
        {
            Assert.True(load.Refused > 0, "No call went without an answer: the crash did not hit the load.");
        }
        await load.ResolveUnseenAsync();
        await AssertExactlyOnceAsync(database, server, load, targets);
    }

    [Fact]
    public async Task While_PostgreSQL_is_down_calls_answer_store_unavailable_and_health_is_not_serving_until_it_is_back()
    {
        await using var database = await TestDatabase.StartPrivateAsync();
        await using var server = LedgerServer.Start(database, LedgerFixture.Now);
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1_000_000_000 });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        // One deduction first, so the next reaches the deduction queue (its grant's unit-year is known) and meets the
        // database's absence there, with a kept connection that died with it.
        await server.DeductAsync(deal, grant.GrantId, InvoiceFen);
        var health = new Health.HealthClient(server.Channel);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, (await health.CheckAsync(new HealthCheckRequest())).Status);

        await PostgresControl.StopImmediateAsync(database.Cluster!);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.NotServing, (await health.CheckAsync(new HealthCheckRequest())).Status);
        var deduction = deal.DeductRequest(grant.GrantId, InvoiceFen);
        await Refusal.AssertAsync(() => server.Ledger.DeductAsync(deduction).ResponseAsync, StatusCode.Unavailable, "STORE_UNAVAILABLE");
        await Refusal.AssertAsync(() => server.Ledger.GrantAsync(deal.GrantRequest(1_000)).ResponseAsync, StatusCode.Unavailable, "STORE_UNAVAILABLE");
        await Refusal.AssertAsync(() => server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId }).ResponseAsync,
            StatusCode.Unavailable, "STORE_UNAVAILABLE");

        await PostgresControl.StartAgainAsync(database.Cluster!);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, (await health.CheckAsync(new HealthCheckRequest())).Status);
        var applied = await server.Ledger.DeductAsync(deduction);
        Assert.Equal(100_000 - (2 * Share), applied.GrantRemainingFen);
        Assert.Equal(applied, await server.Ledger.DeductAsync(deduction));
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task The_pool_is_the_size_the_operator_configured_and_an_exhausted_pool_answers_overloaded()
    {
        await using var database = await TestDatabase.StartPrivateAsync();
        var settings = new Dictionary<string, string?>(database.ServerSettings);
        settings["ConnectionStrings:Ledger"] = new NpgsqlConnectionStringBuilder(settings["ConnectionStrings:Ledger"])
        {
            MaxPoolSize = 2,
            Timeout = 1,
            ApplicationName = "pool-test",
        }.ConnectionString;
        await using var server = LedgerServer.Start(settings, LedgerFixture.Now, settings: new Dictionary<string, string?> { ["Database:LockTimeout"] = "00:01:00" });
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1_000_000_000 });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);

        // The deduction worker keeps one connection; a deduction whose unit-year is locked elsewhere waits on the other.
        await using var holder = new NpgsqlConnection(database.ConnectionString);
        await holder.OpenAsync();
        await using var transaction = await holder.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand("SELECT 1 FROM unit_years WHERE id = (SELECT unit_year_id FROM grants WHERE id = $1) FOR UPDATE", holder, transaction))
        {
            lockRow.Parameters.Add(new NpgsqlParameter { Value = grant.GrantId });
            await lockRow.ExecuteScalarAsync();
        }

        var waiting = server.Ledger.DeductAsync(deal.DeductRequest(grant.GrantId, InvoiceFen)).ResponseAsync;
        await UntilSomeoneWaitsOnALockAsync(database);
        var reads = await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
        {
            try
            {
                await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
                return "OK";
            }
            catch (RpcException e)
            {
                return e.StatusCode + "/" + Refusal.ReasonOf(e);
            }
        }));
        Assert.Contains("Unavailable/OVERLOADED", reads);
        Assert.All(reads, r => Assert.True(r is "OK" or "Unavailable/OVERLOADED", r));
        Assert.True(await ConnectionsOfAsync(database, "pool-test") <= 2);

        await transaction.RollbackAsync();
        Assert.Equal(Share, (await waiting).AppliedFen);
    }

    /// <summary>Before any retry: a refusal that said its deduction was not applied (or its transaction rolled back)
    /// told the truth, whatever the fault.</summary>
    private static async Task AssertRefusalsThatSayNotAppliedWereNotAsync(TestDatabase database, Load load)
    {
        var claimed = load.Refusals.Where(r => r.Message.Contains("not applied", StringComparison.Ordinal)
            || r.Message.Contains("rolled back", StringComparison.Ordinal)).Select(r => r.InvoiceNo).ToArray();
        await using var connection = await OpenAsync(database);
        await using var command = new NpgsqlCommand("SELECT invoice_no FROM deductions WHERE invoice_no = ANY($1)", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = claimed });
        var applied = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            applied.Add(reader.GetString(0));
        }

        Assert.Empty(applied);
    }

    private static async Task UntilSomeoneWaitsOnALockAsync(TestDatabase database)
    {
        for (var polls = 0; ; polls++)
        {
            await using var connection = await OpenAsync(database);
            await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'", connection);
            if ((long)(await command.ExecuteScalarAsync())! > 0)
            {
                return;
            }

            Assert.True(polls < 200, "No session started waiting for the held lock.");
            await Task.Delay(50);
        }
    }

    /// <summary>A connection of the test's own, outside any pool: a pooled one may have died with the server.</summary>
    private static async Task<NpgsqlConnection> OpenAsync(TestDatabase database)
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(database.ConnectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    private static async Task<int> TerminateServingConnectionsAsync(TestDatabase database)
    {
        await using var connection = await OpenAsync(database);
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int FROM pg_stat_activity WHERE usename = $1", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = database.ServingRole });
        return (int)(await command.ExecuteScalarAsync())!;
    }

    private static async Task<long> ConnectionsOfAsync(TestDatabase database, string applicationName)
    {
        await using var connection = await OpenAsync(database);
        await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = applicationName });
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>What the database holds against what the callers were told: every acknowledged deduction once, with
    /// the amount acknowledged; no deduction nobody was told of; no invoice twice; grant and unit-year figures equal
    /// the sums acknowledged; the journal verifies and the books balance.</summary>
    private static async Task AssertExactlyOnceAsync(TestDatabase database, LedgerServer server, Load load, List<(Deal Deal, long GrantId)> targets)
    {
        var stored = new Dictionary<long, (long GrantId, string InvoiceNo, long Applied)>();
        await using (var connection = await OpenAsync(database))
        {
            await using var command = new NpgsqlCommand("SELECT id, grant_id, invoice_no, applied_fen FROM deductions WHERE grant_id = ANY($1)", connection);
            command.Parameters.Add(new NpgsqlParameter { Value = targets.Select(t => t.GrantId).ToArray() });
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                stored.Add(reader.GetInt64(0), (reader.GetInt64(1), reader.GetString(2), reader.GetInt64(3)));
            }
        }

        var acknowledged = load.Acknowledged.ToList();
        var lost = acknowledged.Where(a => !stored.TryGetValue(a.DeductionId, out var row) || row.Applied != a.Applied || row.InvoiceNo != a.InvoiceNo).ToList();
        Assert.Empty(lost);
        var told = acknowledged.Select(a => a.DeductionId).ToHashSet();
        var untold = stored.Keys.Where(id => !told.Contains(id)).ToList();
        Assert.Empty(untold);
        Assert.Equal(acknowledged.Count, told.Count);
        var twice = stored.Values.GroupBy(v => v.InvoiceNo).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.Empty(twice);

        foreach (var (deal, grantId) in targets)
        {
            var applied = acknowledged.Where(a => a.GrantId == grantId).Sum(a => a.Applied);
            Assert.Equal(10_000_000 - applied, (await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantId })).RemainingFen);
            var unitYear = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = 2026 });
            Assert.Equal(applied, unitYear.DeductedFen);
        }

        await Books.AssertHoldAsync(server);
    }

    private sealed record Acknowledgement(string RequestId, long GrantId, string InvoiceNo, long DeductionId, long Applied);

    /// <summary>Closed-loop callers deducting without retries, so the test sees every answer: acknowledged, refused
    /// (must be UNAVAILABLE or DEADLINE_EXCEEDED, never INTERNAL), or unseen (the call broke), each kept to retry.</summary>
    private sealed class Load(LedgerServer server, List<(Deal Deal, long GrantId)> targets)
    {
        private readonly CancellationTokenSource _stop = new();
        private long _applied;
        private long _refused;

        public ConcurrentBag<Acknowledgement> Acknowledged { get; } = [];

        public ConcurrentQueue<DeductRequest> Unseen { get; } = new();

        /// <summary>What each refusal said, by invoice.</summary>
        public ConcurrentBag<(string InvoiceNo, string Message)> Refusals { get; } = [];

        /// <summary>Answers no fault may give: INTERNAL, UNKNOWN, or a refusal other than the transient ones.</summary>
        public ConcurrentBag<string> Unexpected { get; } = [];

        public long Applied => Interlocked.Read(ref _applied);

        public long Refused => Interlocked.Read(ref _refused);

        public Task RunAsync() => Task.WhenAll(Enumerable.Range(0, Callers).Select(caller => Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                var (deal, grantId) = targets[caller % targets.Count];
                var request = deal.DeductRequest(grantId, InvoiceFen);
                try
                {
                    var response = await server.Ledger.DeductAsync(request, deadline: DateTime.UtcNow.AddSeconds(30));
                    Acknowledged.Add(new Acknowledgement(request.RequestId, grantId, request.InvoiceNo, response.DeductionId, response.AppliedFen));
                    Interlocked.Increment(ref _applied);
                }
                catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
                {
                    Interlocked.Increment(ref _refused);
                    Unseen.Enqueue(request);
                    Refusals.Add((request.InvoiceNo, e.Status.Detail));
                    await Task.Delay(20);
                }
                catch (RpcException e)
                {
                    Unexpected.Add($"{e.StatusCode} {Refusal.ReasonOf(e)}: {e.Status.Detail}");
                }
            }
        })));

        public async Task UntilAppliedAsync(long count)
        {
            for (var polls = 0; Applied < count; polls++)
            {
                Assert.True(polls < 1_200, $"Only {Applied} deductions applied; expected {count}. Unexpected answers: {string.Join("; ", Unexpected.Take(3))}");
                await Task.Delay(100);
            }
        }

        public async Task StopAsync(Task running)
        {
            await _stop.CancelAsync();
            await running;
        }

        /// <summary>Retries every call whose outcome went unseen with its request id until it answers: the ledger
        /// replays what it applied and applies once what it did not.</summary>
        public async Task ResolveUnseenAsync()
        {
            foreach (var request in Unseen)
            {
                for (var attempt = 1; ; attempt++)
                {
                    try
                    {
                        var response = await server.Ledger.DeductAsync(request);
                        Acknowledged.Add(new Acknowledgement(request.RequestId, request.GrantId, request.InvoiceNo, response.DeductionId, response.AppliedFen));
                        break;
                    }
                    catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable && attempt < 50)
                    {
                        await Task.Delay(200);
                    }
                }
            }
        }
    }
}
