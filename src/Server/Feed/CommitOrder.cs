using System.Data;
using Npgsql;
using NpgsqlTypes;
using QuotaLedger.Server.Alerts;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Feed;

/// <summary>One event of the feed at its place in commit order: a journal entry or an alert. The event is built once
/// and shared by every watcher it goes to: nothing changes it after it is read.</summary>
internal sealed record FeedItem(FeedPosition Position, WatchEvent Event);

/// <summary>Reads the feed in commit order: rows ordered by (feed_order, source, id), after a position, and only rows
/// whose feed_order is below the snapshot's xmin. A row's feed_order is at least its transaction's id and, along a hash
/// chain, at least its predecessor's (set by a trigger on insert, see the FeedOrder migration), and a transaction
/// below xmin has ended: so no row can appear below that bound any more, and each chain comes in order. Journal
/// entries, and with them (for Watch) the alerts, whose feed_order is the raising entry's: an alert comes right after
/// the entry that crossed its threshold. Entries and alerts are read from one snapshot, so a transaction that ends
/// between the two reads cannot hand over its alerts without its entries. Each read takes a connection from the pool
/// and gives it back, so a long-lived watcher holds none between reads.</summary>
internal static class CommitOrder
{
    private const string Visible = "e.feed_order < pg_snapshot_xmin(pg_current_snapshot())";
    private const string AlertVisible = "a.feed_order < pg_snapshot_xmin(pg_current_snapshot())";

    /// <summary>The first <paramref name="limit"/> events after <paramref name="after"/> that match the filter: journal
    /// entries, and alerts too when <paramref name="alerts"/>. Fewer than the limit means the end of what is visible.</summary>
    public static async Task<List<FeedItem>> ReadAsync(NpgsqlDataSource source, EntryFilter filter, FeedPosition after, int limit, bool alerts,
        CancellationToken ct)
    {
        await using var connection = await source.OpenConnectionAsync(ct);
        if (!alerts)
        {
            return await ReadEntriesAsync(connection, filter, after, limit, ct);
        }

        // Both reads see one snapshot (repeatable read), hence one xmin: in read committed each statement would take its
        // own, and a transaction that ended between them would show its alerts without its entries, which the next read,
        // already past the alerts, would never send.
        await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, ct);
        var entries = await ReadEntriesAsync(connection, filter, after, limit, ct);
        // Each list holds the first `limit` of its own source, so the first `limit` of their merge are the first of all.
        var raised = await ReadAlertsAsync(connection, filter, after, limit, ct);
        await transaction.CommitAsync(ct);
        if (raised.Count == 0)
        {
            return entries;
        }

        var merged = new List<FeedItem>(Math.Min(limit, entries.Count + raised.Count));
        int i = 0, j = 0;
        while (merged.Count < limit && (i < entries.Count || j < raised.Count))
        {
            merged.Add(j == raised.Count || (i < entries.Count && entries[i].Position < raised[j].Position) ? entries[i++] : raised[j++]);
        }

        return merged;
    }

    private static async Task<List<FeedItem>> ReadEntriesAsync(NpgsqlConnection connection, EntryFilter filter, FeedPosition after, int limit,
        CancellationToken ct)
    {
        await using var command = new NpgsqlCommand { Connection = connection };
        var (tx, id) = after.EntryBound;
        command.Parameters.Add(new NpgsqlParameter { Value = tx, NpgsqlDbType = NpgsqlDbType.Xid8 });
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        command.Parameters.Add(new NpgsqlParameter { Value = limit });
        var conditions = filter.AppendSql(command);
        command.CommandText =
            $"""
            SELECT {JournalRows.Columns}, e.deduction_id, e.feed_order,
                   ARRAY(SELECT a.kind FROM postings p JOIN accounts a ON a.id = p.account_id WHERE p.entry_id = e.id ORDER BY p.id)
            FROM journal_entries e
            WHERE {Visible} AND (e.feed_order, e.id) > ($1, $2){conditions}
            ORDER BY e.feed_order, e.id
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
            items.Add(new FeedItem(position, new WatchEvent { Entry = entry, Cursor = position.Cursor }));
        }

        return items;
    }

    private static async Task<List<FeedItem>> ReadAlertsAsync(NpgsqlConnection connection, EntryFilter filter, FeedPosition after, int limit,
        CancellationToken ct)
    {
        await using var command = new NpgsqlCommand { Connection = connection };
        var (tx, id) = after.AlertBound;
        command.Parameters.Add(new NpgsqlParameter { Value = tx, NpgsqlDbType = NpgsqlDbType.Xid8 });
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        command.Parameters.Add(new NpgsqlParameter { Value = limit });
        var conditions = filter.AppendAlertSql(command);
        command.CommandText =
            $"""
            SELECT a.id, a.year, a.kind, a.threshold_bp, a.threshold_days, a.unit_uscc, a.provider_uscc, a.grant_id,
                   a.redemption_id, a.figure_fen, a.limit_fen, a.base_fen, a.created_at, a.entry_id, a.feed_order
            FROM alerts a
            WHERE {AlertVisible} AND (a.feed_order, a.id) > ($1, $2){conditions}
            ORDER BY a.feed_order, a.id
            LIMIT $3
            """;
        var items = new List<FeedItem>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var row = new AlertRow
            {
                Id = reader.GetInt64(0),
                Year = reader.GetInt32(1),
                Kind = (Storage.AlertKind)reader.GetInt16(2),
                ThresholdBp = reader.GetInt32(3),
                ThresholdDays = reader.GetInt32(4),
                UnitUscc = reader.IsDBNull(5) ? null : reader.GetString(5),
                ProviderUscc = reader.IsDBNull(6) ? null : reader.GetString(6),
                GrantId = reader.IsDBNull(7) ? null : reader.GetInt64(7),
                RedemptionId = reader.IsDBNull(8) ? null : reader.GetInt64(8),
                FigureFen = reader.GetInt64(9),
                LimitFen = reader.GetInt64(10),
                BaseFen = reader.GetInt64(11),
                CreatedAt = reader.GetFieldValue<DateTimeOffset>(12),
                EntryId = reader.IsDBNull(13) ? null : reader.GetInt64(13),
            };
            var position = new FeedPosition(reader.GetFieldValue<ulong>(14), FeedSource.Alert, row.Id);
            items.Add(new FeedItem(position, new WatchEvent { Alert = AlertGrpcService.ToApi(row), Cursor = position.Cursor }));
        }

        return items;
    }

    /// <summary>The position of the last row (entry or alert) every reader can see now: the current end of the feed.
    /// One statement, one snapshot, for both sources.</summary>
    public static async Task<FeedPosition> EndAsync(NpgsqlDataSource source, CancellationToken ct)
    {
        await using var connection = await source.OpenConnectionAsync(ct);
        await using var command = new NpgsqlCommand(
            $"""
            SELECT e.feed_order, e.id, a.feed_order, a.id
            FROM (SELECT) one
            LEFT JOIN LATERAL (SELECT e.feed_order, e.id FROM journal_entries e WHERE {Visible} ORDER BY e.feed_order DESC, e.id DESC LIMIT 1) e ON true
            LEFT JOIN LATERAL (SELECT a.feed_order, a.id FROM alerts a WHERE {AlertVisible} ORDER BY a.feed_order DESC, a.id DESC LIMIT 1) a ON true
            """, connection);
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        var end = FeedPosition.Start;
        if (!reader.IsDBNull(0))
        {
            end = new FeedPosition(reader.GetFieldValue<ulong>(0), FeedSource.Entry, reader.GetInt64(1));
        }

        if (!reader.IsDBNull(2))
        {
            var alert = new FeedPosition(reader.GetFieldValue<ulong>(2), FeedSource.Alert, reader.GetInt64(3));
            end = alert > end ? alert : end;
        }

        return end;
    }
}
