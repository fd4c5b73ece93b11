using System.Threading.Channels;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Feed;

/// <summary>The live tail of the journal, shared by every watcher of this server: one loop reads the entries that became
/// visible (in commit order, <see cref="CommitOrder"/>, a batch at a time) and hands each subscriber, in memory, those
/// that match its filter. The loop reads every <see cref="WatchOptions.PollInterval"/> (one indexed statement per server,
/// whatever the number of watchers). It is not woken by NOTIFY: PostgreSQL serializes the commits of every transaction
/// that notifies (a database-wide lock held through the commit's WAL flush), which would put every journal write, the
/// deductions included, in one line; the poll costs the writers nothing. A subscriber's buffer is bounded; one that falls
/// further behind is ended with OVERLOADED and resumes from its cursor.
///
/// The promise to a subscriber: every entry the loop reads after the subscriber joined is handed to it. Everything the
/// loop read before is below the xmin of that read, hence visible to any read the subscriber makes after joining (see
/// <see cref="Watcher"/>): so a subscriber that reads the database once more after joining misses nothing.</summary>
internal sealed partial class FeedHub(LedgerDatabase database, WatchOptions options, IHostApplicationLifetime lifetime, ILogger<FeedHub> logger)
    : BackgroundService
{
    private readonly Lock _gate = new();
    private readonly List<Subscription> _subscribers = [];
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _stopping;

    /// <summary>The last position the loop has read up to; only the loop reads and moves it.</summary>
    private FeedPosition _head;

    /// <summary>Joins the live tail: from now on, every entry the loop reads that matches <paramref name="filter"/>.</summary>
    public async Task<Subscription> SubscribeAsync(EntryFilter filter, CancellationToken ct)
    {
        await _ready.Task.WaitAsync(ct);
        var subscription = new Subscription(this, filter, options.MaxBuffered);
        lock (_gate)
        {
            if (_stopping)
            {
                throw Stopping();
            }

            _subscribers.Add(subscription);
        }

        return subscription;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The web server waits for open calls to end before the host stops its services: watchers end when stopping begins.
        using var stopping = lifetime.ApplicationStopping.Register(Stop);
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    if (!_ready.Task.IsCompleted)
                    {
                        _head = await CommitOrder.EndAsync(database.DataSource, stoppingToken);
                        _ready.TrySetResult();
                    }

                    await ReadNewAsync(stoppingToken);
                }
                catch (Exception e) when (!stoppingToken.IsCancellationRequested)
                {
                    LogTailFailed(logger, e.Message);
                    Fail(e);
                }

                // A wall-clock bound on the lag, not ledger time: the poll must go on whatever the server's clock says.
                await Task.Delay(options.PollInterval, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            Stop();
        }
    }

    /// <summary>Reads what became visible since the head, batch by batch, and hands it out. With nobody subscribed it
    /// only moves the head to the current end (a subscriber that joins later reads what it needs itself).</summary>
    private async Task ReadNewAsync(CancellationToken ct)
    {
        while (true)
        {
            bool idle;
            lock (_gate)
            {
                idle = _subscribers.Count == 0;
            }

            if (idle)
            {
                var end = await CommitOrder.EndAsync(database.DataSource, ct);
                lock (_gate)
                {
                    if (_subscribers.Count == 0)
                    {
                        _head = end > _head ? end : _head;
                        return;
                    }
                }

                continue;
            }

            var batch = await CommitOrder.ReadAsync(database.DataSource, EntryFilter.All, _head, options.BatchSize, alerts: true, ct);
            if (batch.Count > 0)
            {
                Publish(batch);
            }

            if (batch.Count < options.BatchSize)
            {
                return;
            }
        }
    }

    private void Publish(List<FeedItem> batch)
    {
        lock (_gate)
        {
            for (var i = _subscribers.Count - 1; i >= 0; i--)
            {
                var subscriber = _subscribers[i];
                foreach (var item in batch)
                {
                    if (subscriber.Filter.Matches(item.Event) && !subscriber.Offer(item))
                    {
                        _subscribers.RemoveAt(i);
                        subscriber.End(new LedgerException(Reason.Overloaded,
                            $"The watcher fell more than {options.MaxBuffered} events behind the journal. Resume with after_cursor = the last cursor received."));
                        break;
                    }
                }
            }

            _head = batch[^1].Position;
        }
    }

    /// <summary>Ends every subscriber with the failure of the tail's read: each resumes from its cursor.</summary>
    private void Fail(Exception failure)
    {
        lock (_gate)
        {
            foreach (var subscriber in _subscribers)
            {
                subscriber.End((Exception?)StoreFailures.Translate(failure) ?? new InvalidOperationException("The journal's live tail failed.", failure));
            }

            _subscribers.Clear();
        }
    }

    private void Stop()
    {
        lock (_gate)
        {
            _stopping = true;
            foreach (var subscriber in _subscribers)
            {
                subscriber.End(Stopping());
            }

            _subscribers.Clear();
        }

        _ready.TrySetException(Stopping());
    }

    private static LedgerException Stopping() =>
        new(Reason.Overloaded, "The server is stopping. Resume with after_cursor = the last cursor received, on this server once it is back or on another.");

    private void Remove(Subscription subscription)
    {
        lock (_gate)
        {
            _subscribers.Remove(subscription);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The journal's live tail failed; its watchers were ended and it retries: {Error}")]
    private static partial void LogTailFailed(ILogger logger, string error);

    /// <summary>One watcher's place in the live tail: a bounded buffer of the entries that match its filter, in commit
    /// order. Leaving (Dispose) takes it out of the tail.</summary>
    public sealed class Subscription : IDisposable
    {
        private readonly FeedHub _hub;
        private readonly Channel<FeedItem> _buffer;

        internal Subscription(FeedHub hub, EntryFilter filter, int capacity)
        {
            _hub = hub;
            Filter = filter;
            _buffer = System.Threading.Channels.Channel.CreateBounded<FeedItem>(new BoundedChannelOptions(capacity)
            {
                SingleReader = true,
                SingleWriter = true,
                FullMode = BoundedChannelFullMode.Wait,
            });
        }

        public EntryFilter Filter { get; }

        /// <summary>What the tail handed over, in order; it ends with the exception that ended the subscription.</summary>
        public ChannelReader<FeedItem> Reader => _buffer.Reader;

        internal bool Offer(FeedItem item) => _buffer.Writer.TryWrite(item);

        internal void End(Exception reason) => _buffer.Writer.TryComplete(reason);

        public void Dispose() => _hub.Remove(this);
    }
}
