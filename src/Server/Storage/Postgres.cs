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
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            await using var command = new NpgsqlCommand(sql, (NpgsqlConnection)db.Database.GetDbConnection());
            command.Transaction = (NpgsqlTransaction?)db.Database.CurrentTransaction?.GetDbTransaction();
            foreach (var parameter in parameters)
            {
                command.Parameters.Add(new NpgsqlParameter { Value = parameter });
            }

            await using var reader = await command.ExecuteReaderAsync(ct);
            if (!await reader.ReadAsync(ct))
            {
                throw new InvalidOperationException("The query returned no row.");
            }

            return read(reader);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }
}
