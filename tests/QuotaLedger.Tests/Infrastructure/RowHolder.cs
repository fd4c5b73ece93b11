using Npgsql;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>A row of the ledger held FOR UPDATE from a connection of the test, as another server instance or a person
/// in psql would, until released or disposed.</summary>
internal sealed class RowHolder : IAsyncDisposable
{
    private readonly NpgsqlConnection _connection;
    private readonly NpgsqlTransaction _transaction;
    private bool _released;

    private RowHolder(NpgsqlConnection connection, NpgsqlTransaction transaction) => (_connection, _transaction) = (connection, transaction);

    /// <summary>Holds the unit-year the grant belongs to.</summary>
    public static Task<RowHolder> UnitYearOfAsync(TestDatabase database, long grantId) =>
        HoldAsync(database, "SELECT id FROM unit_years WHERE id = (SELECT unit_year_id FROM grants WHERE id = $1) FOR UPDATE", grantId);

    /// <summary>Holds the contract the grant was made on.</summary>
    public static Task<RowHolder> ContractOfAsync(TestDatabase database, long grantId) =>
        HoldAsync(database, "SELECT id FROM contracts WHERE id = (SELECT contract_id FROM grants WHERE id = $1) FOR UPDATE", grantId);

    private static async Task<RowHolder> HoldAsync(TestDatabase database, string sql, long grantId)
    {
        var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        var transaction = await connection.BeginTransactionAsync();
        await using var lockRow = new NpgsqlCommand(sql, connection, transaction);
        lockRow.Parameters.Add(new NpgsqlParameter { Value = grantId });
        Assert.NotNull(await lockRow.ExecuteScalarAsync());
        return new RowHolder(connection, transaction);
    }

    public async Task ReleaseAsync()
    {
        if (!_released)
        {
            _released = true;
            await _transaction.RollbackAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await ReleaseAsync();
        await _transaction.DisposeAsync();
        await _connection.DisposeAsync();
    }
}
