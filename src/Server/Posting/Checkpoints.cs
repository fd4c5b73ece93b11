using System.Data;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Npgsql;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Posting;

/// <summary>Signed checkpoints: the hash chains anchored outside the database. Anyone with write access can recompute a
/// chain after altering an entry; nobody without the signing key can sign a checkpoint over the altered hashes. Each
/// checkpoint signs every chain's head (and a Merkle root over them), the hash of every entry since the previous
/// checkpoint, and the previous checkpoint's digest, so checkpoints form a chain of their own and together sign every
/// entry once.</summary>
internal static class Checkpoints
{
    /// <summary>The session-level advisory lock that lets one checkpoint be made at a time, across servers.</summary>
    private const long MakerLock = 7_170_002;

    /// <summary>Makes a checkpoint of what is committed now, after checking every entry it signs for the first time; or
    /// returns the latest checkpoint when nothing was written since. Refuses to sign a journal that does not verify.</summary>
    public static async Task<CheckpointRow> MakeAsync(LedgerDatabase database, CheckpointSigner signer, DateTimeOffset now, CancellationToken ct)
    {
        await using var connection = await database.DataSource.OpenConnectionAsync(ct);
        await ExecuteAsync(connection, null, $"SELECT pg_advisory_lock({MakerLock})", ct);
        try
        {
            // The snapshot is taken after the lock: it sees the checkpoint another maker committed before.
            await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, ct);
            await database.Options.AllowAuditAsync(connection, transaction, ct);
            var row = await SignAsync(connection, transaction, signer, now, seal: null, ct);
            await transaction.CommitAsync(ct);
            return row;
        }
        finally
        {
            await ExecuteAsync(connection, null, $"SELECT pg_advisory_unlock({MakerLock})", CancellationToken.None);
        }
    }

    /// <summary>The checkpoint a seal follows, read (and the makers' lock taken) before the close holds journal inserts
    /// off, so the lock is not held while a large checkpoint body is read.</summary>
    public sealed record SealBasis(CheckpointRow? Latest, CheckpointBody Body);

    /// <summary>Takes the makers' lock for the rest of the transaction (no other checkpoint can be made before the seal)
    /// and reads the latest checkpoint.</summary>
    public static async Task<SealBasis> PrepareSealAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken ct)
    {
        await ExecuteAsync(connection, transaction, $"SELECT pg_advisory_xact_lock({MakerLock})", ct);
        var latest = await LatestAsync(connection, transaction, ct);
        return new SealBasis(latest, latest is null ? new CheckpointBody() : CheckpointBody.Parser.ParseFrom(latest.Body));
    }

    /// <summary>Makes a checkpoint that seals a period's closing, in the closing's own transaction (which holds journal
    /// inserts off), committed, or not, with the closing. When the latest checkpoint already signs every entry of
    /// <paramref name="cover"/> (each chain's last entry of the period at or before its head), the seal signs no new
    /// entry (its heads are that checkpoint's; the next checkpoint signs what came since), so journal inserts wait for a
    /// signature, not for a check of every entry written since; otherwise it signs everything new, as any checkpoint.</summary>
    public static Task<CheckpointRow> SealAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, CheckpointSigner signer, DateTimeOffset now, PeriodSeal seal,
        IEnumerable<ChainSpan> cover, SealBasis basis, CancellationToken ct)
    {
        var heads = basis.Body.Heads.ToDictionary(h => h.ChainKey, h => h.EntryId, StringComparer.Ordinal);
        var signed = basis.Latest is not null && cover.All(span => heads.TryGetValue(span.ChainKey, out var head) && head >= span.LastEntryId);
        return SignAsync(connection, transaction, signer, now, seal, ct, basis, signNew: !signed);
    }

    /// <summary>Signs what the transaction sees since the latest checkpoint (with <paramref name="signNew"/> false, nothing
    /// new: a seal over the latest heads); without a seal and with nothing new, returns the latest checkpoint instead.</summary>
    private static async Task<CheckpointRow> SignAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, CheckpointSigner signer, DateTimeOffset now, PeriodSeal? seal, CancellationToken ct,
        SealBasis? basis = null, bool signNew = true)
    {
        var previous = basis is null ? await LatestAsync(connection, transaction, ct) : basis.Latest;
        var previousBody = basis?.Body ?? (previous is null ? new CheckpointBody() : CheckpointBody.Parser.ParseFrom(previous.Body));
        var heads = previousBody.Heads.ToDictionary(h => h.ChainKey, h => h.Clone(), StringComparer.Ordinal);

        var auditor = new JournalAuditor();
        foreach (var head in heads.Values)
        {
            auditor.Resume(head.ChainKey, head.Hash.ToByteArray());
        }

        var leaves = new List<(string Chain, long Id, byte[] Hash)>();
        if (signNew)
        {
            await using (var command = new NpgsqlCommand(
                $"""
                WITH known AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS k(chain_key, entry_id))
                SELECT {JournalRows.Columns}
                FROM journal_entries e LEFT JOIN known ON known.chain_key = e.chain_key
                WHERE e.id > coalesce(known.entry_id, 0)
                ORDER BY e.id
                """,
                connection, transaction))
            {
                command.Parameters.Add(new NpgsqlParameter { Value = heads.Keys.ToArray() });
                command.Parameters.Add(new NpgsqlParameter { Value = heads.Values.Select(h => h.EntryId).ToArray() });
                await using var reader = await command.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    var (entry, postings) = JournalRows.Read(reader);
                    if (!auditor.Check(entry, postings))
                    {
                        throw new InvalidOperationException($"Refusing to sign a checkpoint over a journal that does not verify: {auditor.Problem}");
                    }

                    leaves.Add((entry.ChainKey, entry.Id, entry.Hash));
                    heads[entry.ChainKey] = new ChainHead
                    {
                        ChainKey = entry.ChainKey,
                        EntryId = entry.Id,
                        Hash = ByteString.CopyFrom(entry.Hash),
                        Length = (heads.TryGetValue(entry.ChainKey, out var head) ? head.Length : 0) + 1,
                    };
                }
            }
        }

        if (previous is not null && leaves.Count == 0 && seal is null)
        {
            return previous;
        }

        var orderedHeads = heads.Values.OrderBy(h => h.ChainKey, StringComparer.Ordinal).ToList();
        var body = new CheckpointBody
        {
            Version = 1,
            Sequence = previousBody.Sequence + 1,
            CreatedAt = now.ToTimestamp(),
            PreviousDigest = ByteString.CopyFrom(previous?.Digest ?? []),
            Heads = { orderedHeads },
            HeadsRoot = ByteString.CopyFrom(HeadsRoot(orderedHeads)),
            Leaves =
            {
                leaves.OrderBy(l => l.Chain, StringComparer.Ordinal).ThenBy(l => l.Id)
                    .Select(l => new EntryLeaf { EntryId = l.Id, Hash = ByteString.CopyFrom(l.Hash) }),
            },
            Entries = previousBody.Entries + leaves.Count,
            Seal = seal,
        };
        var bytes = body.ToByteArray();
        var row = new CheckpointRow
        {
            CreatedAt = now,
            Body = bytes,
            Digest = SHA256.HashData(bytes),
            KeyId = signer.KeyId,
            Signature = signer.Sign(bytes),
        };
        await using (var insert = new NpgsqlCommand(
            "INSERT INTO checkpoints (created_at, body, digest, key_id, signature) VALUES ($1, $2, $3, $4, $5) RETURNING id", connection, transaction))
        {
            insert.Parameters.Add(new NpgsqlParameter { Value = row.CreatedAt });
            insert.Parameters.Add(new NpgsqlParameter { Value = row.Body });
            insert.Parameters.Add(new NpgsqlParameter { Value = row.Digest });
            insert.Parameters.Add(new NpgsqlParameter { Value = row.KeyId });
            insert.Parameters.Add(new NpgsqlParameter { Value = row.Signature });
            row.Id = (long)(await insert.ExecuteScalarAsync(ct))!;
        }

        return row;
    }

    /// <summary>What a run of checkpoints, oldest first, signs: each entry's hash and the checkpoint that first signed it;
    /// or the first problem with the checkpoints themselves (a digest, a signature, a broken link, a wrong root).</summary>
    public sealed record Verdict(Dictionary<long, (byte[] Hash, long Checkpoint)> Signed, string? Problem, long LastId, int Count);

    /// <param name="checkpoints">The run of checkpoints, oldest first.</param>
    /// <param name="signatureValid">Whether a key id, a body and a signature verify.</param>
    /// <param name="fromMidway">The run starts after a checkpoint the caller does not hold (a period's export): the first
    /// checkpoint's link to the one before it is taken as given; every later link is checked.</param>
    public static Verdict VerifyChain(IEnumerable<CheckpointRow> checkpoints, Func<string, byte[], byte[], bool> signatureValid, bool fromMidway = false)
    {
        var signed = new Dictionary<long, (byte[], long)>();
        var (previousDigest, sequence, lastId, count) = (Array.Empty<byte>(), 0L, 0L, 0);
        foreach (var checkpoint in checkpoints)
        {
            if (fromMidway && count == 0 && SHA256.HashData(checkpoint.Body).AsSpan().SequenceEqual(checkpoint.Digest))
            {
                var first = CheckpointBody.Parser.ParseFrom(checkpoint.Body);
                (previousDigest, sequence) = (first.PreviousDigest.ToByteArray(), first.Sequence - 1);
            }

            string? problem = null;
            CheckpointBody? body = null;
            if (!SHA256.HashData(checkpoint.Body).AsSpan().SequenceEqual(checkpoint.Digest))
            {
                problem = "its digest does not match its body";
            }
            else if (!signatureValid(checkpoint.KeyId, checkpoint.Body, checkpoint.Signature))
            {
                problem = $"it is not signed by a trusted key (key {checkpoint.KeyId})";
            }
            else if ((body = CheckpointBody.Parser.ParseFrom(checkpoint.Body)).Sequence != sequence + 1
                || !body.PreviousDigest.Span.SequenceEqual(previousDigest))
            {
                problem = "it does not follow the checkpoint before it (one was removed, inserted or altered)";
            }
            else if (!body.HeadsRoot.Span.SequenceEqual(HeadsRoot(body.Heads)))
            {
                problem = "its Merkle root does not match its chain heads";
            }

            if (problem is not null)
            {
                return new Verdict(signed, $"Checkpoint {checkpoint.Id}: {problem}.", lastId, count);
            }

            foreach (var leaf in body!.Leaves)
            {
                signed[leaf.EntryId] = (leaf.Hash.ToByteArray(), checkpoint.Id);
            }

            (previousDigest, sequence, lastId, count) = (checkpoint.Digest, body.Sequence, checkpoint.Id, count + 1);
        }

        return new Verdict(signed, null, lastId, count);
    }

    /// <summary>RFC 6962 root over the heads; a leaf is the chain key, a zero byte, the entry id and the chain's length as
    /// big-endian 64-bit integers, and the entry's hash.</summary>
    public static byte[] HeadsRoot(IEnumerable<ChainHead> heads) =>
        MerkleTree.Root([.. heads.Select(h =>
        {
            var leaf = new List<byte>(Encoding.UTF8.GetBytes(h.ChainKey)) { 0 };
            leaf.AddRange(BigEndian(h.EntryId));
            leaf.AddRange(BigEndian(h.Length));
            leaf.AddRange(h.Hash.ToByteArray());
            return leaf.ToArray();
        })]);

    public static V1.Checkpoint ToApi(CheckpointRow row) => new()
    {
        CheckpointId = row.Id,
        Body = ByteString.CopyFrom(row.Body),
        Signature = ByteString.CopyFrom(row.Signature),
        KeyId = row.KeyId,
        Digest = ByteString.CopyFrom(row.Digest),
        Decoded = CheckpointBody.Parser.ParseFrom(row.Body),
    };

    public static CheckpointRow FromApi(V1.Checkpoint checkpoint) => new()
    {
        Id = checkpoint.CheckpointId,
        Body = checkpoint.Body.ToByteArray(),
        Digest = checkpoint.Digest.ToByteArray(),
        KeyId = checkpoint.KeyId,
        Signature = checkpoint.Signature.ToByteArray(),
    };

    private static byte[] BigEndian(long value)
    {
        var bytes = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes, value);
        return bytes;
    }

    private static async Task<CheckpointRow?> LatestAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(
            "SELECT id, created_at, body, digest, key_id, signature FROM checkpoints ORDER BY id DESC LIMIT 1", connection, transaction);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? ReadRow(reader) : null;
    }

    internal static CheckpointRow ReadRow(NpgsqlDataReader reader) => new()
    {
        Id = reader.GetInt64(0),
        CreatedAt = reader.GetFieldValue<DateTimeOffset>(1),
        Body = reader.GetFieldValue<byte[]>(2),
        Digest = reader.GetFieldValue<byte[]>(3),
        KeyId = reader.GetString(4),
        Signature = reader.GetFieldValue<byte[]>(5),
    };

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync(ct);
    }
}
