using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The deduction engine under a lock held elsewhere, a full queue, callers that give up, and a stopping host:
/// every other unit-year goes on, and every deduction is applied once or answered UNAVAILABLE with nothing applied.</summary>
public sealed class DeductionEngineTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private const long Share = 500;

    [Theory]
    [InlineData("unit-year")]
    [InlineData("contract")]
    public async Task A_unit_year_locked_by_another_session_delays_only_its_own_deductions(string heldRow)
    {
        // A transaction waiting for the held row would wait this long: longer than the test ever waits.
        var settings = Settings(lockTimeout: "00:10:00");
        settings["Database:StatementTimeout"] = "00:10:00";
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: settings);
        var held = await server.NewDealAsync();
        var free = await server.NewDealAsync();
        var heldGrant = await server.GrantAsync(held, 100_000);
        var freeGrant = await server.GrantAsync(free, 100_000);

        await using var holder = heldRow == "contract" ? await HoldContractAsync(heldGrant.GrantId) : await HoldUnitYearAsync(heldGrant.GrantId);
        var waiting = server.Ledger.DeductAsync(held.DeductRequest(heldGrant.GrantId, 1_000)).ResponseAsync;
        await UntilSomeoneWaitsOnALockAsync();

        // The deductions of every other unit-year go on while that one waits (the bound only keeps a failure from
        // hanging the suite for the lock timeout).
        var others = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => server.Ledger.DeductAsync(free.DeductRequest(freeGrant.GrantId, 1_000)).ResponseAsync))
            .WaitAsync(TimeSpan.FromMinutes(1));
        Assert.All(others, r => Assert.Equal(Share, r.AppliedFen));
        Assert.False(waiting.IsCompleted);

        await holder.ReleaseAsync();
        Assert.Equal(Share, (await waiting).AppliedFen);
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task Two_deductions_of_one_invoice_in_one_batch_the_refusal_names_the_one_applied()
    {
        var settings = Settings(lockTimeout: "00:10:00");
        settings["Database:StatementTimeout"] = "00:10:00";
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: settings);
        var deal = await server.NewDealAsync();
        var grantA = await server.GrantAsync(deal, 100_000);
        var grantB = await server.GrantAsync(deal, 100_000);
        var invoice = "BATCHDUP-" + Ids.New()[..8];
        var onA = deal.DeductRequest(grantA.GrantId, 1_000, invoice);
        var onB = deal.DeductRequest(grantB.GrantId, 1_000, invoice);

        // A pilot deduction waits for the held unit-year on a lock waiter, which keeps the unit-year busy: the calls that
        // arrive meanwhile queue, and once the pilot is through one worker takes them all into one transaction. The
        // third resends the second with its request id, replayed from within that batch.
        Task<object> first, second, resent;
        await using (var holder = await HoldUnitYearAsync(grantA.GrantId))
        {
            var pilot = server.Ledger.DeductAsync(deal.DeductRequest(grantA.GrantId, 1_000)).ResponseAsync;
            await UntilSomeoneWaitsOnALockAsync();
            (first, second, resent) = (ResponseOrRefusalAsync(server, onA), ResponseOrRefusalAsync(server, onB), ResponseOrRefusalAsync(server, onB));
            // The in-process server receives the three calls well within this; none can be answered before the lock goes.
            await Task.Delay(TimeSpan.FromSeconds(1));
            Assert.False(first.IsCompleted || second.IsCompleted || resent.IsCompleted);
            await holder.ReleaseAsync();
            Assert.Equal(Share, (await pilot).AppliedFen);
        }

        var outcomes = await Task.WhenAll(first, second, resent);
        Assert.Equal(1, await TransactionsRecordingAsync(onA.RequestId, onB.RequestId));
        // Whichever of the two arrived first was applied; every refusal names it.
        var (winner, winnerGrant, loser) = outcomes[0] is DeductResponse ? (0, grantA.GrantId, onB) : (1, grantB.GrantId, onA);
        var applied = Assert.IsType<DeductResponse>(outcomes[winner]);
        var expected = Refusal.DuplicateOf(applied.DeductionId, winnerGrant, invoice);
        var refusals = outcomes.OfType<RpcException>().ToList();
        Assert.NotEmpty(refusals);
        Assert.All(refusals, refused =>
        {
            Assert.Equal("DUPLICATE_INVOICE", Refusal.ReasonOf(refused));
            Assert.Equal(expected, Refusal.MetadataOf(refused));
        });

        // Replayed later from its record, in a transaction of its own, the refusal names the same deduction.
        var replayed = Assert.IsType<RpcException>(await ResponseOrRefusalAsync(server, loser));
        Assert.Equal(expected, Refusal.MetadataOf(replayed));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_deduction_whose_unit_year_stays_locked_past_the_lock_timeout_is_answered_unavailable_and_not_applied(bool coalesce)
    {
        var settings = Settings(lockTimeout: "00:00:00.300");
        settings["Deductions:Coalesce"] = coalesce ? "true" : "false";
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: settings);
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        var request = deal.DeductRequest(grant.GrantId, 1_000);

        await using (var holder = await HoldUnitYearAsync(grant.GrantId))
        {
            await Refusal.AssertAsync(() => server.Ledger.DeductAsync(request).ResponseAsync, StatusCode.Unavailable, "STORE_UNAVAILABLE");
            Assert.Equal(100_000, (await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId })).RemainingFen);
            await holder.ReleaseAsync();
        }

        // Nothing of it was recorded: the retry with its request id applies it, once.
        var applied = await server.Ledger.DeductAsync(request);
        Assert.Equal(100_000 - Share, applied.GrantRemainingFen);
        Assert.Equal(applied, await server.Ledger.DeductAsync(request));
    }

    [Fact]
    public async Task A_full_queue_refuses_at_once_with_overloaded_and_applies_nothing_of_the_refused_call()
    {
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: Settings(lockTimeout: "00:00:30", maxWaiting: 1));
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        var requests = Enumerable.Range(0, 3).Select(_ => deal.DeductRequest(grant.GrantId, 1_000)).ToList();

        await using var holder = await HoldUnitYearAsync(grant.GrantId);
        var first = server.Ledger.DeductAsync(requests[0]).ResponseAsync;
        await UntilSomeoneWaitsOnALockAsync();
        // The unit-year is busy with the first; of the next two one waits in the queue and the other finds it full.
        var next = requests.Skip(1).Select(r => Outcome(server.Ledger.DeductAsync(r).ResponseAsync)).ToList();
        var refused = await Task.WhenAny(next);
        Assert.Equal("OVERLOADED", (await refused).Reason);
        Assert.Equal(StatusCode.Unavailable, (await refused).Status);

        await holder.ReleaseAsync();
        Assert.Equal(Share, (await first).AppliedFen);
        var queued = await next.Single(t => t != refused);
        Assert.Equal(Share, queued.Response!.AppliedFen);

        var retried = await server.Ledger.DeductAsync(requests[next.IndexOf(refused) + 1]);
        Assert.Equal(100_000 - (3 * Share), retried.GrantRemainingFen);
    }

    [Fact]
    public async Task A_caller_that_gives_up_while_its_deduction_waits_withdraws_it()
    {
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: Settings(lockTimeout: "00:00:30"));
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        var given = deal.DeductRequest(grant.GrantId, 1_000);

        await using var holder = await HoldUnitYearAsync(grant.GrantId);
        var first = server.Ledger.DeductAsync(deal.DeductRequest(grant.GrantId, 1_000)).ResponseAsync;
        await UntilSomeoneWaitsOnALockAsync();
        // The caller gives up by canceling (a deadline ends the same way on the server, through the call's cancellation,
        // but over the in-memory test transport the client then sees its own timer race the server's abort).
        using (var giveUp = new CancellationTokenSource(TimeSpan.FromMilliseconds(300)))
        {
            var gaveUp = await Assert.ThrowsAsync<RpcException>(() => server.Ledger.DeductAsync(given, cancellationToken: giveUp.Token).ResponseAsync);
            Assert.Equal(StatusCode.Cancelled, gaveUp.StatusCode);
        }

        await holder.ReleaseAsync();
        await first;
        // Had the withdrawn deduction stayed in the queue, it would have been applied before this one (per unit-year,
        // deductions keep their order of arrival).
        var after = await server.Ledger.DeductAsync(deal.DeductRequest(grant.GrantId, 1_000));
        Assert.Equal(100_000 - (2 * Share), after.GrantRemainingFen);
        Assert.Equal(100_000 - (3 * Share), (await server.Ledger.DeductAsync(given)).GrantRemainingFen);
    }

    [Fact]
    public async Task Stopping_answers_the_waiting_deductions_unavailable_and_finishes_the_one_in_flight()
    {
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: Settings(lockTimeout: "00:00:30"));
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        var queue = server.Services.GetServices<IHostedService>().Single(s => s.GetType().Name == "WriteQueue");

        await using var holder = await HoldUnitYearAsync(grant.GrantId);
        var inFlight = server.Ledger.DeductAsync(deal.DeductRequest(grant.GrantId, 1_000)).ResponseAsync;
        await UntilSomeoneWaitsOnALockAsync();
        var waitingRequest = deal.DeductRequest(grant.GrantId, 1_000);
        var waiting = Outcome(server.Ledger.DeductAsync(waitingRequest).ResponseAsync);
        await Task.Delay(TimeSpan.FromMilliseconds(200));

        var stopped = queue.StopAsync(CancellationToken.None);
        Assert.Equal("OVERLOADED", (await waiting).Reason);
        await Refusal.AssertAsync(() => server.Ledger.DeductAsync(deal.DeductRequest(grant.GrantId, 1_000)).ResponseAsync, StatusCode.Unavailable, "OVERLOADED");
        Assert.False(stopped.IsCompleted);

        await holder.ReleaseAsync();
        Assert.Equal(100_000 - Share, (await inFlight).GrantRemainingFen);
        await stopped;
        Assert.Equal(100_000 - Share, (await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId })).RemainingFen);

        // Another instance applies the refused deduction when it is retried with its request id.
        await using var next = fixture.StartServer(LedgerFixture.Now);
        Assert.Equal(100_000 - (2 * Share), (await next.Ledger.DeductAsync(waitingRequest)).GrantRemainingFen);
    }

    private static Dictionary<string, string?> Settings(string lockTimeout, int maxWaiting = 10_000) => new()
    {
        ["Database:LockTimeout"] = lockTimeout,
        ["Deductions:MaxWaiting"] = maxWaiting.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    private sealed record Result(DeductResponse? Response, StatusCode Status, string Reason);

    private static async Task<Result> Outcome(Task<DeductResponse> call)
    {
        try
        {
            return new Result(await call, StatusCode.OK, "");
        }
        catch (RpcException e)
        {
            return new Result(null, e.StatusCode, Refusal.ReasonOf(e));
        }
    }

    private static async Task<object> ResponseOrRefusalAsync(LedgerServer server, DeductRequest request)
    {
        try
        {
            return await server.Ledger.DeductAsync(request);
        }
        catch (RpcException e)
        {
            return e;
        }
    }

    /// <summary>How many transactions recorded the outcomes of two request ids (PostgreSQL's xmin of each record).</summary>
    private async Task<int> TransactionsRecordingAsync(string requestOne, string requestTwo)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(DISTINCT xmin::text) FROM idempotency_records WHERE request_id IN ($1, $2)", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = requestOne });
        command.Parameters.Add(new NpgsqlParameter { Value = requestTwo });
        return Convert.ToInt32(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Waits until a session of the suite's database waits for a lock: the server's transaction queued behind
    /// the test's.</summary>
    private async Task UntilSomeoneWaitsOnALockAsync()
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        for (var polls = 0; ; polls++)
        {
            await using var command = new NpgsqlCommand(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'", connection);
            if ((long)(await command.ExecuteScalarAsync())! > 0)
            {
                return;
            }

            Assert.True(polls < 200, "No session started waiting for the held lock.");
            await Task.Delay(50);
        }
    }

    /// <summary>Holds the row of a grant's unit-year (or contract) FOR UPDATE from a connection of the test.</summary>
    private Task<RowHolder> HoldUnitYearAsync(long grantId) => RowHolder.UnitYearOfAsync(fixture.Database, grantId);

    private Task<RowHolder> HoldContractAsync(long grantId) => RowHolder.ContractOfAsync(fixture.Database, grantId);
}
