using System.Data;
using Npgsql;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;

namespace QuotaLedger.Server.Admin;

/// <summary>The trial balance: per account kind, the postings' debits and credits, the stored balances, and the
/// balances recomputed from the postings. Every figure is read in one snapshot (a read-only REPEATABLE READ
/// transaction), so deductions committing meanwhile can never make it report a mismatch that is not there.</summary>
internal static class Books
{
    public static async Task<TrialBalanceResponse> TrialBalanceAsync(LedgerDatabase database, int year, CancellationToken ct)
    {
        await using var connection = await database.DataSource.OpenConnectionAsync(ct);
        await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, ct);
        await database.Options.AllowAuditAsync(connection, transaction, ct);
        var response = new TrialBalanceResponse { Year = year };
        var mismatched = 0;
        foreach (var kind in Enum.GetValues<AccountKind>())
        {
            var normal = Posting.Journal.IsDebitNormal(kind) ? 1 : -1;
            var line = await QueryRowAsync(
                connection,
                transaction,
                """
                SELECT count(*)::int,
                       coalesce(sum(p.debit), 0)::bigint,
                       coalesce(sum(p.credit), 0)::bigint,
                       coalesce(sum(a.balance_fen), 0)::bigint,
                       count(*) FILTER (WHERE a.balance_fen <> $3 * coalesce(p.debit - p.credit, 0))::int
                FROM accounts a
                LEFT JOIN (SELECT account_id,
                                  sum(amount_fen) FILTER (WHERE amount_fen > 0) AS debit,
                                  -sum(amount_fen) FILTER (WHERE amount_fen < 0) AS credit
                           FROM postings GROUP BY account_id) p0 ON p0.account_id = a.id
                CROSS JOIN LATERAL (SELECT coalesce(p0.debit, 0) AS debit, coalesce(p0.credit, 0) AS credit) p
                WHERE a.kind = $1 AND ($2 = 0 OR a.year = $2)
                """,
                r => (Accounts: r.GetInt32(0), Debit: r.GetInt64(1), Credit: r.GetInt64(2), Balance: r.GetInt64(3), Mismatched: r.GetInt32(4)),
                ct,
                (short)kind, year, normal);

            response.Kinds.Add(new AccountKindBalance
            {
                Kind = kind.ToApi(),
                Accounts = line.Accounts,
                DebitFen = line.Debit,
                CreditFen = line.Credit,
                BalanceFen = line.Balance,
                PostingsBalanceFen = normal * (line.Debit - line.Credit),
            });
            response.TotalDebitFen += line.Debit;
            response.TotalCreditFen += line.Credit;
            mismatched += line.Mismatched;
        }

        response.UnbalancedEntries = await QueryRowAsync(
            connection,
            transaction,
            """
            SELECT count(*) FROM (
              SELECT e.id FROM journal_entries e JOIN postings p ON p.entry_id = e.id
              WHERE $1 = 0 OR e.year = $1
              GROUP BY e.id HAVING sum(p.amount_fen) <> 0 OR count(*) < 2) unbalanced
            """,
            r => r.GetInt64(0),
            ct,
            year);
        await transaction.CommitAsync(ct);
        response.BalancesMatchPostings = mismatched == 0;
        response.Balanced = response.TotalDebitFen == response.TotalCreditFen && response.UnbalancedEntries == 0;
        return response;
    }

    private static async Task<T> QueryRowAsync<T>(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string sql, Func<NpgsqlDataReader, T> read, CancellationToken ct, params object[] parameters)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = parameter });
        }

        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        return read(reader);
    }
}
