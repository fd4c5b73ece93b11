using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>Least privilege in the database: the suite's servers serve as a role that owns nothing and may change only
/// what moves; the owner migrates.</summary>
public sealed class ServingRoleTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task The_serving_role_cannot_edit_delete_or_truncate_the_journal_nor_disable_its_triggers()
    {
        var deal = await fixture.Server.NewDealAsync();
        await fixture.Server.GrantAsync(deal, 1_000);
        var dataSource = fixture.Server.Services.GetRequiredService<LedgerDatabase>().DataSource;
        Assert.Equal(fixture.Database.ServingRole, new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).Username);

        foreach (var sql in new[]
        {
            "UPDATE journal_entries SET memo = 'rewritten'",
            "DELETE FROM postings",
            "TRUNCATE journal_entries CASCADE",
            "TRUNCATE deductions",
            "ALTER TABLE journal_entries DISABLE TRIGGER ALL",
            "DROP TRIGGER journal_entries_append_only ON journal_entries",
            "SET session_replication_role = replica",
            "UPDATE grants SET amount_fen = amount_fen + 1",
            "UPDATE contracts SET amount_fen = amount_fen + 1",
            "UPDATE unit_years SET year = year",
            "DELETE FROM idempotency_records",
            "CREATE TABLE shadow_journal (id bigint)",
            "CREATE OR REPLACE FUNCTION refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
            $"ALTER ROLE {fixture.Database.ServingRole} SUPERUSER",
        })
        {
            var error = await RefusedAsServingAsync(sql);
            Assert.True(error.SqlState is PostgresErrorCodes.InsufficientPrivilege or PostgresErrorCodes.UndefinedFunction,
                $"{sql}: {error.SqlState} {error.MessageText}");
        }

        await using var connection = await OpenAsServingAsync();
        await using var owned = new NpgsqlCommand(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), (SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user))",
            connection);
        await using var reader = await owned.ExecuteReaderAsync();
        await reader.ReadAsync();
        Assert.False(reader.GetBoolean(0));
        Assert.Equal(0, reader.GetInt64(1));
        await Books.AssertHoldAsync(fixture.Server);
    }

    [Fact]
    public async Task Every_table_has_its_privileges_written_down()
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var tables = new List<string>();
        while (await reader.ReadAsync())
        {
            tables.Add(reader.GetString(0));
        }

        Assert.DoesNotContain(tables, t => !DatabaseRoles.Writable.ContainsKey(t) && !DatabaseRoles.ReadOnly.Contains(t));
    }

    [Fact]
    public async Task Given_only_an_owner_the_server_migrates_and_warns_and_given_only_a_serving_role_it_refuses_an_old_schema()
    {
        var sibling = await fixture.Database.CreateSiblingAsync();
        var servingOnSibling = new NpgsqlConnectionStringBuilder(fixture.Database.ServingConnectionString)
        {
            Database = new NpgsqlConnectionStringBuilder(sibling).Database,
        }.ConnectionString;

        var refused = await Assert.ThrowsAsync<StartupRefusedException>(() => Schema.PrepareAsync(null, servingOnSibling, NullLogger(), CancellationToken.None));
        Assert.Contains("LedgerMigrations", refused.Message, StringComparison.Ordinal);

        var warnings = new ListLogger();
        await Schema.PrepareAsync(null, sibling, warnings, CancellationToken.None);
        Assert.Contains(warnings.Messages, m => m.Contains("owns the ledger's schema", StringComparison.Ordinal));

        // Once migrated by the owner with the serving role named, the serving role serves without owner rights.
        var split = new ListLogger();
        await Schema.PrepareAsync(sibling, servingOnSibling, split, CancellationToken.None);
        Assert.DoesNotContain(split.Messages, m => m.Contains("owns the ledger's schema", StringComparison.Ordinal));
        await Schema.PrepareAsync(null, servingOnSibling, split, CancellationToken.None);
    }

    private static ILogger NullLogger() => Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    private async Task<NpgsqlConnection> OpenAsServingAsync()
    {
        var connection = new NpgsqlConnection(fixture.Database.ServingConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    private async Task<PostgresException> RefusedAsServingAsync(string sql)
    {
        await using var connection = await OpenAsServingAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        return await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());
    }

    private sealed class ListLogger : ILogger
    {
        public List<string> Messages { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Messages)
            {
                Messages.Add(formatter(state, exception));
            }
        }
    }
}
