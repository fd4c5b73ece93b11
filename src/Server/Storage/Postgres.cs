using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace QuotaLedger.Server.Storage;

public static class Postgres
{
    /// <summary>True when <paramref name="exception"/> is a unique violation of <paramref name="constraint"/>
    /// (or of any unique constraint when none is named).</summary>
    public static bool IsUniqueViolation(Exception exception, string? constraint = null) =>
        (exception as PostgresException ?? exception.InnerException as PostgresException) is { SqlState: PostgresErrorCodes.UniqueViolation } pg
        && (constraint is null || pg.ConstraintName == constraint);

    public static bool IsUniqueViolation(DbUpdateException exception, string? constraint = null) =>
        IsUniqueViolation((Exception)exception, constraint);
}

public static class LedgerDbSql
{
    /// <summary>Runs a query with positional parameters ($1, $2...) on the context's connection and transaction, and
    /// reads its first row. For the aggregate reads EF's LINQ would make awkward.</summary>
    public static async Task<T> QueryRowAsync<T>(this LedgerDb db, string sql, Func<NpgsqlDataReader, T> read, CancellationToken ct, params object[] parameters)
    {
        var rows = await QueryAsync(db, sql, read, ct, maxRows: 1, parameters);
        return rows.Count == 1 ? rows[0] : throw new InvalidOperationException("The query returned no row.");
    }

    /// <summary>Runs a query as <see cref="QueryRowAsync"/> does, and reads every row.</summary>
    public static Task<List<T>> QueryListAsync<T>(this LedgerDb db, string sql, Func<NpgsqlDataReader, T> read, CancellationToken ct, params object[] parameters) =>
        QueryAsync(db, sql, read, ct, maxRows: int.MaxValue, parameters);

    private static async Task<List<T>> QueryAsync<T>(LedgerDb db, string sql, Func<NpgsqlDataReader, T> read, CancellationToken ct, int maxRows, object[] parameters)
    {
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            await using var command = new NpgsqlCommand(sql, (NpgsqlConnection)db.Database.GetDbConnection());
            command.Transaction = (NpgsqlTransaction?)db.Database.CurrentTransaction?.GetDbTransaction();
            foreach (var parameter in parameters)
            {
                command.Parameters.Add(new NpgsqlParameter { Value = parameter });
            }

            var rows = new List<T>();
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (rows.Count < maxRows && await reader.ReadAsync(ct))
            {
                rows.Add(read(reader));
            }

            return rows;
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }
}
