using Npgsql;
using QuotaLedger.Server.Posting;

namespace QuotaLedger.Server.Storage;

/// <summary>Chains the journal entries of a database older than the hash chain, before the migration that makes every
/// entry's hash required. Each chain that holds an unchained entry is walked from its first entry: an entry that was
/// chained must still match its own hash (otherwise it was altered, and the upgrade stops rather than launder it), and
/// every entry is linked to the one before it. Runs as the schema's owner, the only role that may rewrite these columns,
/// in one transaction.</summary>
internal static class LegacyChains
{
    /// <summary>The migration this step must run before.</summary>
    public const string Before = "20261129180149_ChainEveryEntry";

    public static async Task<int> ChainAsync(NpgsqlConnection owner, CancellationToken ct)
    {
        await using var transaction = await owner.BeginTransactionAsync(ct);
        var entries = await ReadUnchainedChainsAsync(owner, transaction, ct);
        if (entries.Count == 0)
        {
            await transaction.CommitAsync(ct);
            return 0;
        }

        await Execute(owner, transaction, "ALTER TABLE journal_entries DISABLE TRIGGER journal_entries_append_only", ct);
        var rewritten = 0;
        foreach (var chain in entries.GroupBy(e => e.Entry.ChainKey))
        {
            var previous = Array.Empty<byte>();
            foreach (var (entry, postings, wasChained) in chain.OrderBy(e => e.Entry.Id))
            {
                if (wasChained && !Chain.HashOf(entry, postings, entry.PrevHash).AsSpan().SequenceEqual(entry.Hash))
                {
                    throw new InvalidOperationException(
                        $"Journal entry {entry.Id} no longer matches its own hash: it was altered. The upgrade stops here; investigate before migrating.");
                }

                var hash = Chain.HashOf(entry, postings, previous);
                await using var update = new NpgsqlCommand("UPDATE journal_entries SET chain_key = $1, prev_hash = $2, hash = $3 WHERE id = $4", owner, transaction)
                {
                    Parameters = { new() { Value = entry.ChainKey }, new() { Value = previous }, new() { Value = hash }, new() { Value = entry.Id } },
                };
                await update.ExecuteNonQueryAsync(ct);
                rewritten++;
                previous = hash;
            }
        }

        await Execute(owner, transaction, "ALTER TABLE journal_entries ENABLE TRIGGER journal_entries_append_only", ct);
        await transaction.CommitAsync(ct);
        return rewritten;
    }

    /// <summary>Every entry of every chain that has an unchained entry, with its postings.</summary>
    private static async Task<List<(JournalEntryRow Entry, List<(long AccountId, long AmountFen)> Postings, bool WasChained)>> ReadUnchainedChainsAsync(
        NpgsqlConnection owner, NpgsqlTransaction transaction, CancellationToken ct)
    {
        const string KeyOf = "coalesce(e.chain_key, CASE WHEN e.unit_uscc IS NULL THEN e.year::text ELSE e.unit_uscc || ':' || e.year END)";
        await using var command = new NpgsqlCommand(
            $"""
            SELECT e.id, e.kind, e.created_at, e.year, e.unit_uscc, e.provider_uscc, e.grant_id, e.counterparty_uscc, e.counterparty_grant_id,
                   e.request_id, e.caller, e.memo, e.reverses_entry_id, {KeyOf}, e.prev_hash, e.hash,
                   ARRAY(SELECT p.account_id FROM postings p WHERE p.entry_id = e.id ORDER BY p.id),
                   ARRAY(SELECT p.amount_fen FROM postings p WHERE p.entry_id = e.id ORDER BY p.id)
            FROM journal_entries e
            WHERE {KeyOf} IN (SELECT {KeyOf} FROM journal_entries e WHERE e.hash IS NULL OR e.prev_hash IS NULL OR e.chain_key IS NULL)
            ORDER BY e.id
            """,
            owner, transaction);
        var entries = new List<(JournalEntryRow, List<(long, long)>, bool)>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var (entry, postings) = JournalRows.Read(reader);
            entries.Add((entry, postings, !reader.IsDBNull(15) && !reader.IsDBNull(14)));
        }

        return entries;
    }

    private static async Task Execute(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync(ct);
    }
}
