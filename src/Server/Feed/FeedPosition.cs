using System.Globalization;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Feed;

/// <summary>What the feed carries, in this order within one transaction: its journal entries, then the alerts they
/// raised (alert rows carry the tx_id of the transaction that wrote them too).</summary>
internal enum FeedSource
{
    Entry = 0,
    Alert = 1,
}

/// <summary>A place in the feed's commit order: the transaction that wrote the row (its xid8), the source, the row's id,
/// compared in that order. Rows of transactions below a snapshot's xmin can no longer appear, so a reader that only
/// sends those, in this order, and resumes after the last one it sent never skips a row and never repeats one. The
/// cursor is its text form, opaque to clients: <c>v1:tx:source:id</c>.</summary>
internal readonly record struct FeedPosition(ulong TxId, FeedSource Source, long Id) : IComparable<FeedPosition>
{
    /// <summary>Before every row: the start of the feed.</summary>
    public static readonly FeedPosition Start = new(0, FeedSource.Entry, 0);

    public int CompareTo(FeedPosition other) =>
        TxId != other.TxId ? TxId.CompareTo(other.TxId)
        : Source != other.Source ? Source.CompareTo(other.Source)
        : Id.CompareTo(other.Id);

    public static bool operator <(FeedPosition a, FeedPosition b) => a.CompareTo(b) < 0;

    public static bool operator >(FeedPosition a, FeedPosition b) => a.CompareTo(b) > 0;

    public static bool operator <=(FeedPosition a, FeedPosition b) => a.CompareTo(b) <= 0;

    public static bool operator >=(FeedPosition a, FeedPosition b) => a.CompareTo(b) >= 0;

    /// <summary>The last journal entry at or before this position, as a bound on (tx_id, id): an entry is after this
    /// position exactly when its (tx_id, id) is after the bound.</summary>
    public (ulong TxId, long Id) EntryBound => Source switch
    {
        FeedSource.Entry => (TxId, Id),
        _ => (TxId, long.MaxValue),
    };

    /// <summary>The last alert at or before this position, as a bound on (tx_id, id). Alert ids start at 1, so (tx, 0)
    /// puts every alert of the position's transaction after an entry of it.</summary>
    public (ulong TxId, long Id) AlertBound => Source switch
    {
        FeedSource.Alert => (TxId, Id),
        _ => (TxId, 0),
    };

    public string Cursor => string.Create(CultureInfo.InvariantCulture, $"v1:{TxId}:{(int)Source}:{Id}");

    /// <summary>Parses a cursor the server sent; anything else answers INVALID_ARGUMENT naming the field.</summary>
    public static FeedPosition Parse(string cursor, string field)
    {
        var parts = cursor.Split(':');
        if (parts.Length == 4 && parts[0] == "v1"
            && ulong.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var tx)
            && int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var source) && Enum.IsDefined((FeedSource)source)
            && long.TryParse(parts[3], NumberStyles.None, CultureInfo.InvariantCulture, out var id))
        {
            return new FeedPosition(tx, (FeedSource)source, id);
        }

        throw new LedgerException(Reason.InvalidArgument,
            $"{field} is not a cursor this server sent; pass back a cursor exactly as received, or leave it empty to start at the beginning.");
    }
}
