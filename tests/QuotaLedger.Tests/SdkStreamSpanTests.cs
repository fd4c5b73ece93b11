using System.Collections.Concurrent;
using System.Diagnostics;
using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>Streams are traced as unary calls are: one span for the logical call (a listing, a watch), each stream it
/// opens a client span under it.</summary>
[Collection(FeedTests.Collection)]
public sealed class SdkStreamSpanTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task A_listing_and_a_watch_are_each_a_span_with_a_client_span_per_stream()
    {
        var spans = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == QuotaLedgerTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Enqueue,
        };
        ActivitySource.AddActivityListener(listener);
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 10_000);
        using var ledger = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = fixture.Server.BaseAddress, HttpHandler = fixture.Server.CreateHandler() });

        var listed = 0;
        await foreach (var _ in ledger.ListEntriesAsync(new EntryFilter(GrantId: grant.GrantId)))
        {
            listed++;
        }

        await foreach (var e in ledger.WatchAsync(new WatchFilter(GrantId: grant.GrantId)))
        {
            Assert.Equal(grant.GrantId, e.Entry?.GrantId);
            break;
        }

        Assert.Equal(1, listed);
        foreach (var method in new[] { "ListEntries", "Watch" })
        {
            var call = Assert.Single(spans, s => s.OperationName == $"quotaledger.v1.LedgerService/{method}" && s.Kind == ActivityKind.Internal);
            var stream = Assert.Single(spans, s => s.OperationName == call.OperationName && s.Kind == ActivityKind.Client);
            Assert.Equal(call.SpanId, stream.ParentSpanId);
            Assert.Equal("grpc", stream.GetTagItem("rpc.system"));
            Assert.Equal(method, stream.GetTagItem("rpc.method"));
            Assert.Equal(1, stream.GetTagItem("quotaledger.attempt"));
        }

        Assert.Equal("ok", Assert.Single(spans, s => s.OperationName.EndsWith("/ListEntries", StringComparison.Ordinal) && s.Kind == ActivityKind.Internal)
            .GetTagItem("quotaledger.outcome"));
    }
}
