namespace QuotaLedger.Server.Feed;

/// <summary>The change feed (configuration section <c>Watch</c>).</summary>
public sealed class WatchOptions : ICheckedSettings
{
    /// <summary>How often the shared tail reads the journal: a watcher sees an entry at most this long (plus the read)
    /// after it commits, unless an older transaction still open holds the commit order back.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How many entries one read of the journal takes, for the tail and for a watcher catching up.</summary>
    public int BatchSize { get; set; } = 500;

    /// <summary>How many events the server holds for one watcher that reads more slowly than entries commit; a watcher
    /// further behind is ended with UNAVAILABLE (OVERLOADED) and resumes from its last cursor.</summary>
    public int MaxBuffered { get; set; } = 10_000;

    public IEnumerable<string> Problems() =>
        Settings.Range(nameof(PollInterval), PollInterval, TimeSpan.FromMilliseconds(10), TimeSpan.FromMinutes(1))
            .Concat(Settings.Range(nameof(BatchSize), BatchSize, 1, 10_000))
            .Concat(Settings.Range(nameof(MaxBuffered), MaxBuffered, 1, 1_000_000));
}
