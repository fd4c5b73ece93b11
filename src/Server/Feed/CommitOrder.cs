using Npgsql;
using NpgsqlTypes;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Feed;

/// <summary>One event of the feed at its place in commit order. The event (and the entry in it) is built once and
/// shared by every watcher it goes to: nothing changes it after it is read.</summary>
internal sealed record FeedItem(FeedPosition Position, WatchEvent Event, JournalEntry Entry);

/// <summary>Reads journal entries in commit order: only entries whose transaction is below the statement snapshot's
/// xmin (every transaction below it has ended, so no entry can appear there any more), ordered by (tx_id, id), after a
/// position. Each read takes a connection from the pool for one statement only, so a long-lived watcher holds none
/// between reads.</summary>
internal static class CommitOrder
{
    private const string Visible = "e.tx_id < pg_snapshot_xmin(pg_current_snapshot())";

    public static async Task<List<FeedItem>> ReadAsync(NpgsqlDataSource source, EntryFilter filter, FeedPosition after, int limit, CancellationToken ct)
    {
        await using var connection = await source.OpenConnectionAsync(ct);
        await using var command = new NpgsqlCommand { Connection = connection };
        var (tx, id) = after.EntryBound;
        command.Parameters.Add(new NpgsqlParameter { Value = tx, NpgsqlDbType = NpgsqlDbType.Xid8 });
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        command.Parameters.Add(new NpgsqlParameter { Value = limit });
        var conditions = filter.AppendSql(command);
        command.CommandText =
            $"""
            SELECT {JournalRows.Columns}, e.deduction_id, e.tx_id,
                   ARRAY(SELECT a.kind FROM postings p JOIN accounts a ON a.id = p.account_id WHERE p.entry_id = e.id ORDER BY p.id)
            FROM journal_entries e
            WHERE {Visible} AND (e.tx_id, e.id) > ($1, $2){conditions}
            ORDER BY e.tx_id, e.id
            LIMIT $3
            """;
        var items = new List<FeedItem>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var (row, postings) = JournalRows.Read(reader);
            row.DeductionId = reader.IsDBNull(18) ? null : reader.GetInt64(18);
            var position = new FeedPosition(reader.GetFieldValue<ulong>(19), FeedSource.Entry, row.Id);
            var kinds = reader.GetFieldValue<short[]>(20);
            var entry = Statements.ToApi(row, postings.Select((p, i) => (p.AccountId, (Storage.AccountKind)kinds[i], p.AmountFen)));
            entry.Cursor = position.Cursor;
            items.Add(new FeedItem(position, new WatchEvent { Entry = entry, Cursor = position.Cursor }, entry));
        }

        return items;
    }

    /// <summary>The position of the last entry every reader can see now: the current end of the feed.</summary>
    public static async Task<FeedPosition> EndAsync(NpgsqlDataSource source, CancellationToken ct)
    {
        await using var connection = await source.OpenConnectionAsync(ct);
        await using var command = new NpgsqlCommand(
            $"SELECT e.tx_id, e.id FROM journal_entries e WHERE {Visible} ORDER BY e.tx_id DESC, e.id DESC LIMIT 1", connection);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct)
            ? new FeedPosition(reader.GetFieldValue<ulong>(0), FeedSource.Entry, reader.GetInt64(1))
            : FeedPosition.Start;
    }
}
