using System.Data;
using Npgsql;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;

namespace QuotaLedger.Server.Admin;

/// <summary>Recomputes the journal in one consistent snapshot: the signed checkpoints first (their digests, signatures
/// and links), then every entry in id order (its balance, its link to its chain's previous entry, its hash, and the
/// hash a checkpoint signed for it), then each account's balance from its postings. Streams the entries, keeping only
/// each chain's head and the signed hashes in memory.</summary>
internal static class JournalVerification
{
    public static async Task<VerifyJournalResponse> VerifyAsync(LedgerDatabase database, CheckpointSigner signer, long checkpointId, CancellationToken ct)
    {
        await using var connection = await database.DataSource.OpenConnectionAsync(ct);
        await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, ct);
        await database.Options.AllowAuditAsync(connection, transaction, ct);
        var response = new VerifyJournalResponse();

        var checkpoints = checkpointId < 0 ? [] : await CheckpointsAsync(connection, transaction, checkpointId, ct);
        if (checkpointId > 0 && checkpoints.LastOrDefault()?.Id != checkpointId)
        {
            // Never a verdict against another checkpoint: one asked for and gone (deleted by an insider, say) is the finding.
            throw UnknownCheckpoint(checkpointId);
        }

        var verdict = Checkpoints.VerifyChain(checkpoints, signer.Verifies);
        response.CheckpointId = verdict.LastId;
        response.CheckpointsVerified = verdict.Count;
        var auditor = new JournalAuditor(verdict.Signed);
        await using (var command = new NpgsqlCommand($"SELECT {JournalRows.Columns} FROM journal_entries e ORDER BY e.id", connection, transaction))
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var (entry, postings) = JournalRows.Read(reader);
                if (!auditor.Check(entry, postings))
                {
                    break;
                }
            }
        }

        auditor.Finish();
        response.EntriesChecked = auditor.EntriesChecked;
        response.Chains = auditor.Chains;
        response.FirstBadEntryId = auditor.FirstBadEntryId;
        response.Problem = verdict.Problem ?? auditor.Problem;

        await using (var accounts = new NpgsqlCommand(
            $"""
            SELECT count(*)::int,
                   coalesce(min(a.id) FILTER (WHERE a.balance_fen <> CASE WHEN a.kind = {(short)AccountKind.Funding} THEN -1 ELSE 1 END
                                                  * coalesce(p.total, 0)), 0)::bigint
            FROM accounts a LEFT JOIN (SELECT account_id, sum(amount_fen) AS total FROM postings GROUP BY account_id) p ON p.account_id = a.id
            """,
            connection, transaction))
        await using (var reader = await accounts.ExecuteReaderAsync(ct))
        {
            await reader.ReadAsync(ct);
            response.AccountsChecked = reader.GetInt32(0);
            response.FirstBadAccountId = reader.GetInt64(1);
        }

        if (response.FirstBadAccountId != 0 && response.Problem.Length == 0)
        {
            response.Problem = $"Account {response.FirstBadAccountId}'s balance differs from the sum of its postings.";
        }

        await transaction.CommitAsync(ct);
        response.Ok = verdict.Problem is null && auditor.Ok && response.FirstBadAccountId == 0;
        return response;
    }

    public static LedgerException UnknownCheckpoint(long checkpointId) =>
        new(Reason.UnknownCheckpoint, $"There is no checkpoint {checkpointId}. If it was made (you hold a copy of it, or a receipt it signed), it has been removed from the ledger.");

    /// <summary>The checkpoints up to the one asked for (0: all, the latest last).</summary>
    private static async Task<List<CheckpointRow>> CheckpointsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, long upTo, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(
            "SELECT id, created_at, body, digest, key_id, signature FROM checkpoints WHERE $1 = 0 OR id <= $1 ORDER BY id", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = upTo });
        var rows = new List<CheckpointRow>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            rows.Add(Checkpoints.ReadRow(reader));
        }

        return rows;
    }
}
