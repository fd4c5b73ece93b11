using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using QuotaLedger.Server.Storage;
using Testcontainers.PostgreSql;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>The PostgreSQL server a test run uses, in order of preference: a connection string from the environment
/// (<c>QUOTALEDGER_TEST_DB</c>, a role that may create databases and roles), a Testcontainers container where a Docker
/// engine answers, or a throwaway local cluster started from the machine's PostgreSQL binaries. It is started once per
/// run (<see cref="Shared"/>) with the run's serving role and a template database migrated once, from which every test
/// class's database is copied (<c>CREATE DATABASE ... TEMPLATE</c>, no migration per class). A missing server fails the
/// run; it never skips. <see cref="LedgerTestFramework"/> drops what the run made when the last test has run.</summary>
public sealed class PostgresServer : IAsyncDisposable
{
    public const string EnvironmentVariable = "QUOTALEDGER_TEST_DB";

    private static readonly Lazy<Task<PostgresServer>> s_shared = new(() => StartAsync(privateCluster: false));

    private readonly NpgsqlConnectionStringBuilder _server;
    private readonly IAsyncDisposable? _owner;
    private string? _template;

    private PostgresServer(string connectionString, IAsyncDisposable? owner, string source)
    {
        _server = new NpgsqlConnectionStringBuilder(connectionString);
        _owner = owner;
        Source = source;
    }

    /// <summary>The run's server, started by the first test class that asks for a database.</summary>
    public static Task<PostgresServer> Shared => s_shared.Value;

    /// <summary>Drops what the run made on its server and stops it, if a test class started it (and it started).</summary>
    public static async Task DisposeSharedAsync()
    {
        if (s_shared.IsValueCreated && await s_shared.Value.ContinueWith(started => started.IsCompletedSuccessfully ? started.Result : null, TaskScheduler.Default) is { } server)
        {
            await server.DisposeAsync();
        }
    }

    /// <summary>Where the server came from: the environment variable, Testcontainers, or a local cluster.</summary>
    public string Source { get; }

    /// <summary>The login role the run's servers serve as: no rights but what the migrations grant it in each database.</summary>
    public string ServingRole { get; } = $"ql_serving_{Guid.NewGuid():N}"[..24];

    public string ServingPassword { get; } = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));

    /// <summary>The local cluster the server is, when the run (or a test) started one of its own.</summary>
    public LocalPostgresCluster? Cluster => _owner as LocalPostgresCluster;

    /// <summary>A server of one's own on a throwaway local cluster, whatever the environment names: for a test that
    /// stops, restarts or kills PostgreSQL, which must not touch the server the rest of the suite runs on. Its databases
    /// start empty (no template); the test's server migrates them.</summary>
    public static Task<PostgresServer> StartPrivateAsync() => StartAsync(privateCluster: true);

    /// <summary>A database of the server as its superuser (which owns the schema), with a 120-second wait for a pooled
    /// connection (the races queue hundreds of calls on one unit-year; on a slow machine that may take longer than
    /// Npgsql's default 15 seconds) and at most 30 pooled connections, so that the test classes running side by side
    /// stay within the server's connection limit.</summary>
    public string ConnectionStringFor(string database) =>
        new NpgsqlConnectionStringBuilder(_server.ConnectionString) { Database = database, Timeout = 120, MaxPoolSize = 30 }.ConnectionString;

    /// <summary>Creates a database: a copy of the migrated template (the run's server), or empty (a private one, or when
    /// <paramref name="empty"/>). Returns its name.</summary>
    public async Task<string> CreateDatabaseAsync(string prefix, bool empty = false)
    {
        var name = $"{prefix}_{Guid.NewGuid():N}"[..40];
        var template = empty || _template is null ? "" : $" TEMPLATE \"{_template}\"";
        await ExecuteAsync($"CREATE DATABASE \"{name}\"{template}");
        return name;
    }

    public Task DropDatabaseAsync(string name) => ExecuteAsync($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");

    private static async Task<PostgresServer> StartAsync(bool privateCluster)
    {
        PostgresServer server;
        if (!privateCluster && Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } given)
        {
            server = new PostgresServer(given, null, EnvironmentVariable);
        }
        else if (!privateCluster && await TryContainerAsync() is { } container)
        {
            server = new PostgresServer(container.GetConnectionString(), container, "Testcontainers");
        }
        else
        {
            var cluster = await LocalPostgresCluster.StartAsync(
                new LocalPostgresOptions
                {
                    DataDirectory = Path.Combine(Path.GetTempPath(), $"quotaledger-tests-{Guid.NewGuid():N}", "pgdata"),
                    DeleteOnDispose = true,
                },
                NullLogger.Instance);
            server = new PostgresServer(cluster.ConnectionString, cluster, "local cluster");
        }

        try
        {
            if (server.Cluster is not null && !privateCluster)
            {
                // A throwaway cluster need not survive a power cut: no flushes to disk (PostgreSQL's "non-durable
                // settings"). On a shared machine a commit's flush can otherwise wait seconds behind others' writes. A
                // private cluster keeps them: its tests crash PostgreSQL.
                foreach (var setting in new[] { "fsync", "synchronous_commit", "full_page_writes" })
                {
                    await server.ExecuteAsync($"ALTER SYSTEM SET {setting} = off");
                }

                await server.ExecuteAsync("SELECT pg_reload_conf()");
            }

            await using (var connection = await server.OpenAdminAsync())
            {
                await DatabaseRoles.EnsureLoginRoleAsync(connection, server.ServingRole, server.ServingPassword, CancellationToken.None);
            }

            if (!privateCluster)
            {
                await server.MigrateTemplateAsync();
            }
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }

        return server;
    }

    /// <summary>Migrates the template as the server's start does (the owner migrates, the serving role is granted its
    /// privileges), then closes it to connections, as <c>CREATE DATABASE ... TEMPLATE</c> requires of its source.</summary>
    private async Task MigrateTemplateAsync()
    {
        var template = await CreateDatabaseAsync("quotaledger_template", empty: true);
        var owner = ConnectionStringFor(template);
        var serving = new NpgsqlConnectionStringBuilder(owner) { Username = ServingRole, Password = ServingPassword }.ConnectionString;
        await Schema.PrepareAsync(owner, serving, NullLogger.Instance, CancellationToken.None);
        await ExecuteAsync($"ALTER DATABASE \"{template}\" WITH ALLOW_CONNECTIONS false");
        await using (var connection = await OpenAdminAsync())
        {
            await using var terminate = new NpgsqlCommand("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", connection);
            terminate.Parameters.Add(new NpgsqlParameter { Value = template });
            await terminate.ExecuteNonQueryAsync();
        }

        _template = template;
    }

    /// <summary>Drops the template and the serving role (test classes drop their own databases), then stops the server
    /// when the run started it.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_template is not null)
            {
                await ExecuteAsync($"ALTER DATABASE \"{_template}\" WITH ALLOW_CONNECTIONS true");
                await DropDatabaseAsync(_template);
            }

            await ExecuteAsync($"DROP ROLE IF EXISTS \"{ServingRole}\"");
        }
        finally
        {
            if (_owner is not null)
            {
                await _owner.DisposeAsync();
            }
        }
    }

    /// <summary>The server's maintenance database as its superuser, unpooled: for statements on databases and roles.</summary>
    private async Task<NpgsqlConnection> OpenAdminAsync()
    {
        var admin = new NpgsqlConnectionStringBuilder(_server.ConnectionString) { Database = "postgres", Pooling = false };
        var connection = new NpgsqlConnection(admin.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    /// <summary>A statement naming a database or role, which PostgreSQL does not take as a parameter (the names are the
    /// run's own).</summary>
    private async Task ExecuteAsync(string sql)
    {
        await using var connection = await OpenAdminAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<PostgreSqlContainer?> TryContainerAsync()
    {
        PostgreSqlContainer? container = null;
        try
        {
            container = new PostgreSqlBuilder("postgres:15-alpine").Build();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            await container.StartAsync(timeout.Token);
            return container;
        }
        catch (Exception)
        {
            // No Docker engine answers here: fall back to a local cluster.
            if (container is not null)
            {
                await container.DisposeAsync();
            }

            return null;
        }
    }
}
