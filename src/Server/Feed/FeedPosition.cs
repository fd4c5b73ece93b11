using System.Globalization;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Feed;

/// <summary>What the feed carries, in this order at one feed_order: journal entries, then the alerts they raised (an
/// alert row carries the feed_order of the entry that raised it).</summary>
internal enum FeedSource
{
    Entry = 0,
    Alert = 1,
}

/// <summary>A place in the feed's commit order: the row's feed_order (its transaction's id, raised to its chain
/// predecessor's: see <see cref="CommitOrder"/>), the source, the row's id, compared in that order. No row can appear
/// below a snapshot's xmin any more, so a reader that only sends rows below it, in this order, and resumes after the
/// last one it sent never skips a row and never repeats one. The cursor is its text form, opaque to clients:
/// <c>v1:order:source:id</c> (for rows written before the feed_order, order is their transaction id: the same cursor).</summary>
internal readonly record struct FeedPosition(ulong Order, FeedSource Source, long Id) : IComparable<FeedPosition>
{
    /// <summary>Before every row: the start of the feed.</summary>
    public static readonly FeedPosition Start = new(0, FeedSource.Entry, 0);

    public int CompareTo(FeedPosition other) =>
        Order != other.Order ? Order.CompareTo(other.Order)
        : Source != other.Source ? Source.CompareTo(other.Source)
        : Id.CompareTo(other.Id);

    public static bool operator <(FeedPosition a, FeedPosition b) => a.CompareTo(b) < 0;

    public static bool operator >(FeedPosition a, FeedPosition b) => a.CompareTo(b) > 0;

    public static bool operator <=(FeedPosition a, FeedPosition b) => a.CompareTo(b) <= 0;

    public static bool operator >=(FeedPosition a, FeedPosition b) => a.CompareTo(b) >= 0;

    /// <summary>The last journal entry at or before this position, as a bound on (feed_order, id): an entry is after
    /// this position exactly when its (feed_order, id) is after the bound.</summary>
    public (ulong Order, long Id) EntryBound => Source switch
    {
        FeedSource.Entry => (Order, Id),
        _ => (Order, long.MaxValue),
    };

    /// <summary>The last alert at or before this position, as a bound on (feed_order, id). Alert ids start at 1, so
    /// (order, 0) puts every alert of the position's feed_order after an entry of it.</summary>
    public (ulong Order, long Id) AlertBound => Source switch
    {
        FeedSource.Alert => (Order, Id),
        _ => (Order, 0),
    };

    public string Cursor => string.Create(CultureInfo.InvariantCulture, $"v1:{Order}:{(int)Source}:{Id}");

    /// <summary>Parses a cursor the server sent; anything else answers INVALID_ARGUMENT naming the field.</summary>
    public static FeedPosition Parse(string cursor, string field)
    {
        var parts = cursor.Split(':');
        if (parts.Length == 4 && parts[0] == "v1"
            && ulong.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var order)
            && int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var source) && Enum.IsDefined((FeedSource)source)
            && long.TryParse(parts[3], NumberStyles.None, CultureInfo.InvariantCulture, out var id))
        {
            return new FeedPosition(order, (FeedSource)source, id);
        }

        throw new LedgerException(Reason.InvalidArgument,
            $"{field} is not a cursor this server sent; pass back a cursor exactly as received, or leave it empty to start at the beginning.");
    }
}
