using Npgsql;

namespace QuotaLedger.Server.Storage;

/// <summary>Reads journal entries with their postings in one statement, for the readers that check the journal
/// (VerifyJournal, checkpoints, the chaining of an older database's entries): <see cref="Columns"/> over
/// <c>journal_entries e</c>, read back by <see cref="Read"/>. A hash an older database has not computed yet reads as
/// empty.</summary>
public static class JournalRows
{
    public const string Columns =
        """
        e.id, e.kind, e.created_at, e.year, e.unit_uscc, e.provider_uscc, e.grant_id, e.counterparty_uscc, e.counterparty_grant_id,
        e.request_id, e.caller, e.memo, e.reverses_entry_id, e.chain_key, e.prev_hash, e.hash,
        ARRAY(SELECT p.account_id FROM postings p WHERE p.entry_id = e.id ORDER BY p.id),
        ARRAY(SELECT p.amount_fen FROM postings p WHERE p.entry_id = e.id ORDER BY p.id)
        """;

    public static (JournalEntryRow Entry, List<(long AccountId, long AmountFen)> Postings) Read(NpgsqlDataReader reader)
    {
        var entry = new JournalEntryRow
        {
            Id = reader.GetInt64(0),
            Kind = (EntryKind)reader.GetInt16(1),
            CreatedAt = reader.GetFieldValue<DateTimeOffset>(2),
            Year = reader.GetInt32(3),
            UnitUscc = reader.IsDBNull(4) ? null : reader.GetString(4),
            ProviderUscc = reader.IsDBNull(5) ? null : reader.GetString(5),
            GrantId = reader.IsDBNull(6) ? null : reader.GetInt64(6),
            CounterpartyUscc = reader.IsDBNull(7) ? null : reader.GetString(7),
            CounterpartyGrantId = reader.IsDBNull(8) ? null : reader.GetInt64(8),
            RequestId = reader.GetString(9),
            Caller = reader.GetString(10),
            Memo = reader.GetString(11),
            ReversesEntryId = reader.IsDBNull(12) ? null : reader.GetInt64(12),
            ChainKey = reader.GetString(13),
            PrevHash = reader.IsDBNull(14) ? [] : reader.GetFieldValue<byte[]>(14),
            Hash = reader.IsDBNull(15) ? [] : reader.GetFieldValue<byte[]>(15),
        };
        return (entry, [.. reader.GetFieldValue<long[]>(16).Zip(reader.GetFieldValue<long[]>(17))]);
    }
}
