using Npgsql;
using QuotaLedger.Server.Storage;
using Testcontainers.PostgreSql;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>The PostgreSQL server the tests run against, in order of preference: a connection string from the
/// environment (<c>QUOTALEDGER_TEST_DB</c>), a Testcontainers container where a Docker engine answers, or a throwaway
/// local cluster started from the machine's PostgreSQL binaries. Each run gets a database of its own, dropped at the
/// end. A missing database fails the run; it never skips.</summary>
public sealed class TestDatabase : IAsyncDisposable
{
    public const string EnvironmentVariable = "QUOTALEDGER_TEST_DB";

    private readonly NpgsqlConnectionStringBuilder _server;
    private readonly IAsyncDisposable? _owner;

    private TestDatabase(string serverConnectionString, IAsyncDisposable? owner, string source)
    {
        _server = new NpgsqlConnectionStringBuilder(serverConnectionString);
        _owner = owner;
        Source = source;
        DatabaseName = $"quotaledger_test_{Guid.NewGuid():N}"[..40];
        ServingRole = $"ql_serving_{Guid.NewGuid():N}"[..24];
    }

    /// <summary>The login role the servers of the run serve as: no rights but what the migrations grant it.</summary>
    public string ServingRole { get; }

    private readonly string _servingPassword = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));

    /// <summary>The run's database as the serving role, as the server connects (ConnectionStrings:Ledger).</summary>
    public string ServingConnectionString =>
        new NpgsqlConnectionStringBuilder(ConnectionString) { Username = ServingRole, Password = _servingPassword }.ConnectionString;

    /// <summary>Both connection strings a server of the run gets: it serves as the serving role and migrates as the owner.</summary>
    public IDictionary<string, string?> ServerSettings => SettingsFor(ConnectionString);

    /// <summary>The same split for another database of the server (a sibling). Every server of the run signs checkpoints
    /// with one key (<see cref="CheckpointKeyFile"/>) and makes them only when asked.</summary>
    public IDictionary<string, string?> SettingsFor(string ownerConnectionString) => new Dictionary<string, string?>
    {
        ["ConnectionStrings:Ledger"] = new NpgsqlConnectionStringBuilder(ownerConnectionString) { Username = ServingRole, Password = _servingPassword }.ConnectionString,
        ["ConnectionStrings:LedgerMigrations"] = ownerConnectionString,
        ["Checkpoints:SigningKeyFile"] = CheckpointKeyFile,
        ["Checkpoints:Enabled"] = "false",
    };

    /// <summary>The run's checkpoint signing key (PEM), and its public half.</summary>
    public string CheckpointKeyFile { get; } = WriteCheckpointKey();

    public string CheckpointPublicKeyFile => CheckpointKeyFile + ".pub";

    private static string WriteCheckpointKey()
    {
        var directory = Directory.CreateTempSubdirectory("quotaledger-checkpoint-key-").FullName;
        var file = Path.Combine(directory, "checkpoint-signing.key");
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        File.WriteAllText(file, key.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(file + ".pub", key.ExportSubjectPublicKeyInfoPem());
        return file;
    }

    public string Source { get; }

    public string DatabaseName { get; }

    private readonly List<string> _siblings = [];

    /// <summary>The run's database as the server's superuser, which owns the schema. The races queue hundreds of calls on
    /// one unit-year, so waiting for a pooled connection may take longer than Npgsql's default 15 seconds on a slow machine.</summary>
    public string ConnectionString => new NpgsqlConnectionStringBuilder(_server.ConnectionString) { Database = DatabaseName, Timeout = 120 }.ConnectionString;

    /// <summary>Another fresh database on the same server, for a test that must damage its data on purpose.</summary>
    public async Task<string> CreateSiblingAsync()
    {
        var name = $"quotaledger_scratch_{Guid.NewGuid():N}"[..40];
        await ExecuteOnServerAsync($"CREATE DATABASE \"{name}\"");
        lock (_siblings)
        {
            _siblings.Add(name);
        }

        return new NpgsqlConnectionStringBuilder(_server.ConnectionString) { Database = name }.ConnectionString;
    }

    /// <summary>The local cluster the database lives on when the run started one of its own.</summary>
    public LocalPostgresCluster? Cluster => _owner as LocalPostgresCluster;

    public static Task<TestDatabase> StartAsync() => StartAsync(privateCluster: false);

    /// <summary>A database on a throwaway local cluster of its own, whatever the environment names: for a test that
    /// stops, restarts or kills PostgreSQL, which must not touch the server the rest of the suite runs on.</summary>
    public static Task<TestDatabase> StartPrivateAsync() => StartAsync(privateCluster: true);

    private static async Task<TestDatabase> StartAsync(bool privateCluster)
    {
        TestDatabase database;
        if (!privateCluster && Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } given)
        {
            database = new TestDatabase(given, null, EnvironmentVariable);
        }
        else if (!privateCluster && await TryContainerAsync() is { } container)
        {
            database = new TestDatabase(container.GetConnectionString(), container, "Testcontainers");
        }
        else
        {
            var cluster = await LocalPostgresCluster.StartAsync(
                new LocalPostgresOptions
                {
                    DataDirectory = Path.Combine(Path.GetTempPath(), $"quotaledger-tests-{Guid.NewGuid():N}", "pgdata"),
                    DeleteOnDispose = true,
                },
                Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
            database = new TestDatabase(cluster.ConnectionString, cluster, "local cluster");
        }

        await database.ExecuteOnServerAsync($"CREATE DATABASE \"{database.DatabaseName}\"");
        await using (var connection = new NpgsqlConnection(database.ConnectionString))
        {
            await connection.OpenAsync();
            await DatabaseRoles.EnsureLoginRoleAsync(connection, database.ServingRole, database._servingPassword, CancellationToken.None);
        }

        return database;
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        try
        {
            foreach (var name in _siblings.Append(DatabaseName))
            {
                await ExecuteOnServerAsync($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            }

            await ExecuteOnServerAsync($"DROP ROLE IF EXISTS \"{ServingRole}\"");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(CheckpointKeyFile)!, recursive: true);
            if (_owner is not null)
            {
                await _owner.DisposeAsync();
            }
        }
    }

    private async Task ExecuteOnServerAsync(string sql)
    {
        var admin = new NpgsqlConnectionStringBuilder(_server.ConnectionString) { Database = "postgres", Pooling = false };
        await using var connection = new NpgsqlConnection(admin.ConnectionString);
        await connection.OpenAsync();
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
