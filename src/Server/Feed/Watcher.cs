using Grpc.Core;
using Npgsql;
using QuotaLedger.Server.Ledger;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Feed;

/// <summary>One Watch call: catches up from the database, then joins the shared live tail without a gap or a repeat.
///
/// 1. Catch up with its own reads (a page at a time, written as it goes) until a read comes back short: nothing is held
///    in the server for it while it may be far behind.
/// 2. Join the tail, then read the database once more up to the end. From joining on, the tail hands it every entry it
///    reads; every entry the tail had read before is below that read's xmin, so this second catch-up, made later, sees
///    it. Together they miss nothing.
/// 3. Send what the tail hands over, skipping every position at or before the last one sent (what both the second
///    catch-up and the tail delivered).</summary>
internal static class Watcher
{
    public static async Task RunAsync(FeedHub hub, NpgsqlDataSource source, WatchOptions options, EntryFilter filter, FeedPosition after,
        IServerStreamWriter<WatchEvent> stream, CancellationToken ct)
    {
        after = await CatchUpAsync(source, options, filter, after, stream, ct);
        using var subscription = await hub.SubscribeAsync(filter, ct);
        after = await CatchUpAsync(source, options, filter, after, stream, ct);
        // Ends only by cancellation or with the exception that ended the subscription (the tail failed, the watcher fell
        // too far behind, the server is stopping), after what was already handed over is sent.
        await foreach (var item in subscription.Reader.ReadAllAsync(ct))
        {
            if (item.Position <= after)
            {
                continue;
            }

            await stream.WriteAsync(item.Event, ct);
            after = item.Position;
        }
    }

    private static async Task<FeedPosition> CatchUpAsync(NpgsqlDataSource source, WatchOptions options, EntryFilter filter, FeedPosition after,
        IServerStreamWriter<WatchEvent> stream, CancellationToken ct)
    {
        while (true)
        {
            var page = await CommitOrder.ReadAsync(source, filter, after, options.BatchSize, alerts: true, ct);
            foreach (var item in page)
            {
                await stream.WriteAsync(item.Event, ct);
                after = item.Position;
            }

            if (page.Count < options.BatchSize)
            {
                return after;
            }
        }
    }
}
