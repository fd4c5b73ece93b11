using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>What the SDK throws when a call does not succeed: a refusal, no definite answer, or the caller's own
/// cancellation, each its own type, against a real server.</summary>
public sealed class SdkFailureTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly DateOnly s_invoiceDate = new(2026, 6, 1);

    private QuotaLedgerClient Client(HttpMessageHandler? wrap = null, Action<QuotaLedgerClientOptions>? configure = null)
    {
        var handler = fixture.Server.CreateHandler();
        if (wrap is DelegatingHandler delegating)
        {
            delegating.InnerHandler = handler;
        }

        var options = new QuotaLedgerClientOptions
        {
            Address = fixture.Server.BaseAddress,
            HttpHandler = wrap ?? handler,
            Retry = { InitialBackoff = TimeSpan.FromMilliseconds(20), MaxBackoff = TimeSpan.FromMilliseconds(100) },
        };
        configure?.Invoke(options);
        return new QuotaLedgerClient(options);
    }

    [Fact]
    public async Task A_deduction_whose_every_answer_is_lost_is_outcome_unknown_and_applied_once_when_retried_with_its_request_id()
    {
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 10_000);
        var dropper = new DropResponses("/quotaledger.v1.LedgerService/Deduct", drop: 3);
        using var client = Client(dropper, options => options.Retry.MaxAttempts = 3);
        var invoice = "UNKNOWN-" + Ids.New()[..8];

        var unknown = await Assert.ThrowsAsync<QuotaLedgerUnavailableException>(
            () => client.DeductAsync(deal.Provider, grant.GrantId, invoice, new Fen(4_000), s_invoiceDate));

        Assert.True(unknown.OutcomeUnknown);
        Assert.Equal(3, unknown.Attempts);
        Assert.NotNull(unknown.RequestId);
        Assert.Contains(unknown.RequestId, unknown.Message);

        var retried = await client.DeductAsync(deal.Provider, grant.GrantId, invoice, new Fen(4_000), s_invoiceDate, unknown.RequestId);
        Assert.Equal(new Fen(2_000), retried.Applied);
        Assert.Equal(new Fen(8_000), (await client.GetGrantAsync(grant.GrantId)).Remaining);
    }

    [Fact]
    public async Task A_call_that_never_reached_the_server_is_unavailable_with_nothing_applied()
    {
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 10_000);
        // Without waiting for a connection, attempts that could not connect count as any other.
        using var client = Client(new RefuseConnections(), options =>
        {
            options.Retry.MaxAttempts = 2;
            options.Reconnect.WaitForConnection = TimeSpan.Zero;
        });

        var unavailable = await Assert.ThrowsAsync<QuotaLedgerUnavailableException>(
            () => client.DeductAsync(deal.Provider, grant.GrantId, "NEVER-" + Ids.New()[..8], new Fen(4_000), s_invoiceDate));

        Assert.False(unavailable.OutcomeUnknown);
        Assert.Equal(2, unavailable.Attempts);
        Assert.Equal(Grpc.Core.StatusCode.Unavailable, unavailable.StatusCode);
        using var plain = Client();
        Assert.Equal(new Fen(10_000), (await plain.GetGrantAsync(grant.GrantId)).Remaining);
    }

    [Fact]
    public async Task An_internal_error_is_not_a_refusal_and_is_not_retried()
    {
        var internalError = new AnswerStatus(Grpc.Core.StatusCode.Internal, "a bug");
        using var client = Client(internalError);

        var failure = await Assert.ThrowsAsync<QuotaLedgerUnavailableException>(
            () => client.GrantAsync(TestUscc.New(), "HT-1", new Fen(100), requestId: "internal-1"));

        Assert.True(failure.OutcomeUnknown);
        Assert.Equal("internal-1", failure.RequestId);
        Assert.Equal(Grpc.Core.StatusCode.Internal, failure.StatusCode);
        Assert.Equal(1, internalError.Requests);
    }

    [Fact]
    public async Task Cancellation_by_the_caller_is_an_OperationCanceledException_not_a_refusal()
    {
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 10_000);
        using var client = Client(new HoldRequests(TimeSpan.FromSeconds(30)));
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        var canceled = await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => client.DeductAsync(deal.Provider, grant.GrantId, "CANCEL-" + Ids.New()[..8], new Fen(4_000), s_invoiceDate, "cancel-1", cancel.Token));

        Assert.Equal(cancel.Token, canceled.CancellationToken);
        Assert.Equal("cancel-1", canceled.Data["QuotaLedger.RequestId"]);
    }

    [Fact]
    public async Task Cancellation_during_the_backoff_between_attempts_is_an_OperationCanceledException()
    {
        using var client = Client(new RefuseConnections(), options =>
        {
            options.Retry.MaxAttempts = 10;
            options.Retry.InitialBackoff = TimeSpan.FromSeconds(5);
            options.Retry.MaxBackoff = TimeSpan.FromSeconds(5);
        });
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetYearPolicyAsync(2026, cancel.Token));
    }

    [Fact]
    public async Task A_per_call_deadline_bounds_one_call_and_leaves_the_client_default_alone()
    {
        var held = new HoldRequests(TimeSpan.FromSeconds(3), first: 1);
        using var client = Client(held, options => options.Retry.MaxAttempts = 1);

        var late = await Assert.ThrowsAsync<QuotaLedgerUnavailableException>(() => client.WithDeadline(TimeSpan.FromMilliseconds(300)).GetYearPolicyAsync(2026));
        Assert.Equal(Grpc.Core.StatusCode.DeadlineExceeded, late.StatusCode);
        Assert.Null(late.RequestId);
        Assert.False(late.OutcomeUnknown);

        Assert.Equal(5_000, (await client.GetYearPolicyAsync(2026)).SelfControllableRatioBp);
        Assert.Throws<ArgumentOutOfRangeException>(() => client.WithDeadline(TimeSpan.FromSeconds(-1)));
    }

    [Fact]
    public async Task A_refusal_carries_its_request_id_and_is_never_retried()
    {
        var counter = new CountRequests();
        using var client = Client(counter);

        var refusal = await Assert.ThrowsAsync<QuotaLedgerException>(() => client.GrantAsync(TestUscc.New(), "NOPE", new Fen(100), requestId: "refused-1"));

        Assert.Equal(LedgerReason.UnknownProvider, refusal.Reason);
        Assert.Equal("refused-1", refusal.RequestId);
        Assert.Equal(1, counter.Requests);
    }

    [Fact]
    public async Task A_credentials_refusal_after_an_attempt_that_may_have_applied_leaves_the_outcome_unknown()
    {
        var deal = await fixture.Server.NewDealAsync();
        var flaky = new DropThenAnswer("/quotaledger.v1.LedgerService/Grant", Grpc.Core.StatusCode.Unauthenticated);
        using var client = Client(flaky);

        var unknown = await Assert.ThrowsAsync<QuotaLedgerUnavailableException>(
            () => client.GrantAsync(deal.Provider, deal.ContractNo, new Fen(1_000), requestId: "grant-then-token-expired"));

        Assert.True(unknown.OutcomeUnknown);
        Assert.Equal(Grpc.Core.StatusCode.Unauthenticated, unknown.StatusCode);
        Assert.Equal(2, unknown.Attempts);
        using var plain = Client();
        var replay = await plain.GrantAsync(deal.Provider, deal.ContractNo, new Fen(1_000), requestId: "grant-then-token-expired");
        Assert.Equal(new Fen(1_000), (await plain.GetUnitYearAsync(deal.Unit, 2026)).GrantedOpen);
        Assert.Equal(new Fen(1_000), replay.Amount);
    }

    [Fact]
    public async Task A_client_on_a_fake_clock_still_calls_within_its_real_deadline()
    {
        using var client = Client(configure: options => options.TimeProvider = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(new DateTimeOffset(2000, 1, 1, 0, 0, 0, TimeSpan.Zero)));

        Assert.Equal(5_000, (await client.GetYearPolicyAsync(2026)).SelfControllableRatioBp);
    }

    /// <summary>The first call of a method reaches the server and its answer is lost; every later one is answered with
    /// one status without reaching it (as when credentials expire between attempts).</summary>
    private sealed class DropThenAnswer(string path, Grpc.Core.StatusCode status) : DelegatingHandler
    {
        private int _seen;

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (request.RequestUri!.AbsolutePath != path)
            {
                return await base.SendAsync(request, cancellationToken);
            }

            if (Interlocked.Increment(ref _seen) == 1)
            {
                var lost = await base.SendAsync(request, cancellationToken);
                await lost.Content.ReadAsByteArrayAsync(cancellationToken);
                lost.Dispose();
                throw TransportFaults.Reset();
            }

            return TransportFaults.StatusOnly(status, "the token expired");
        }
    }

    /// <summary>A server that cannot be connected to.</summary>
    private sealed class RefuseConnections : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromException<HttpResponseMessage>(new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused (127.0.0.1:1)",
                new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.ConnectionRefused)));
    }

    /// <summary>Answers every call with one gRPC status, as a server would in a trailers-only response.</summary>
    private sealed class AnswerStatus(Grpc.Core.StatusCode status, string message) : HttpMessageHandler
    {
        public int Requests { get; private set; }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Requests++;
            return Task.FromResult(TransportFaults.StatusOnly(status, message));
        }
    }

    /// <summary>Holds requests back (the first <c>first</c> of them, or all) until the delay passes or the call is canceled.</summary>
    private sealed class HoldRequests(TimeSpan delay, int first = int.MaxValue) : DelegatingHandler
    {
        private int _seen;

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (Interlocked.Increment(ref _seen) <= first)
            {
                await Task.Delay(delay, cancellationToken);
            }

            return await base.SendAsync(request, cancellationToken);
        }
    }
}
