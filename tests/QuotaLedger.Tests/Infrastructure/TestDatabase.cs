using Npgsql;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>A database of a test class's own (<see cref="LedgerFixture"/>), copied from the run's migrated template on
/// the run's <see cref="PostgresServer"/>, and dropped when the class is done; or, for a test that stops or kills
/// PostgreSQL, a database on a private cluster (<see cref="StartPrivateAsync"/>). Every server of the run serves as the
/// run's serving role.</summary>
public sealed class TestDatabase : IAsyncDisposable
{
    private readonly PostgresServer _server;
    private readonly bool _ownsServer;
    private readonly List<string> _siblings = [];

    private TestDatabase(PostgresServer server, bool ownsServer, string name)
    {
        _server = server;
        _ownsServer = ownsServer;
        DatabaseName = name;
    }

    public string Source => _server.Source;

    public string DatabaseName { get; }

    /// <summary>The login role the servers serve as: no rights but what the migrations grant it.</summary>
    public string ServingRole => _server.ServingRole;

    /// <summary>The database as the server's superuser, which owns the schema.</summary>
    public string ConnectionString => _server.ConnectionStringFor(DatabaseName);

    /// <summary>The database as the serving role, as the server connects (ConnectionStrings:Ledger).</summary>
    public string ServingConnectionString => Serving(ConnectionString);

    /// <summary>Both connection strings a server gets: it serves as the serving role and migrates as the owner.</summary>
    public IDictionary<string, string?> ServerSettings => SettingsFor(ConnectionString);

    /// <summary>The same split for another database of the server (a sibling). Every server on the database and its
    /// siblings signs checkpoints with one key (<see cref="CheckpointKeyFile"/>) and makes them only when asked.</summary>
    public IDictionary<string, string?> SettingsFor(string ownerConnectionString) => new Dictionary<string, string?>
    {
        ["ConnectionStrings:Ledger"] = Serving(ownerConnectionString),
        ["ConnectionStrings:LedgerMigrations"] = ownerConnectionString,
        ["Checkpoints:SigningKeyFile"] = CheckpointKeyFile,
        ["Checkpoints:Enabled"] = "false",
    };

    /// <summary>The checkpoint signing key (PEM) of the database and its siblings, and its public half.</summary>
    public string CheckpointKeyFile { get; } = WriteCheckpointKey();

    public string CheckpointPublicKeyFile => CheckpointKeyFile + ".pub";

    /// <summary>The local cluster the database lives on when it is a private one, or the run started one.</summary>
    public LocalPostgresCluster? Cluster => _server.Cluster;

    /// <summary>A copy of the run's migrated template on the run's server.</summary>
    public static async Task<TestDatabase> StartAsync()
    {
        var server = await PostgresServer.Shared;
        return new TestDatabase(server, ownsServer: false, await server.CreateDatabaseAsync("quotaledger_test"));
    }

    /// <summary>A database on a throwaway local cluster of its own, whatever the environment names: for a test that
    /// stops, restarts or kills PostgreSQL, which must not touch the server the rest of the suite runs on. It starts
    /// empty; the test's server migrates it.</summary>
    public static async Task<TestDatabase> StartPrivateAsync()
    {
        var server = await PostgresServer.StartPrivateAsync();
        try
        {
            return new TestDatabase(server, ownsServer: true, await server.CreateDatabaseAsync("quotaledger_test"));
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>Another database on the same server, empty (not migrated), for a test that must damage its data on
    /// purpose or watch a server migrate.</summary>
    public async Task<string> CreateSiblingAsync()
    {
        var name = await _server.CreateDatabaseAsync("quotaledger_scratch", empty: true);
        lock (_siblings)
        {
            _siblings.Add(name);
        }

        return _server.ConnectionStringFor(name);
    }

    /// <summary>Drops the database and its siblings (closing whatever connections are left to them), and stops a private
    /// server.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            foreach (var name in _siblings.Append(DatabaseName))
            {
                // This process's idle connections to it, not other classes' (ClearAllPools would close theirs too).
                var owner = _server.ConnectionStringFor(name);
                foreach (var connectionString in new[] { owner, Serving(owner) })
                {
                    await using var connection = new NpgsqlConnection(connectionString);
                    NpgsqlConnection.ClearPool(connection);
                }

                await _server.DropDatabaseAsync(name);
            }
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(CheckpointKeyFile)!, recursive: true);
            if (_ownsServer)
            {
                await _server.DisposeAsync();
            }
        }
    }

    private string Serving(string ownerConnectionString) =>
        new NpgsqlConnectionStringBuilder(ownerConnectionString) { Username = _server.ServingRole, Password = _server.ServingPassword }.ConnectionString;

    private static string WriteCheckpointKey()
    {
        var directory = Directory.CreateTempSubdirectory("quotaledger-checkpoint-key-").FullName;
        var file = Path.Combine(directory, "checkpoint-signing.key");
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        File.WriteAllText(file, key.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(file + ".pub", key.ExportSubjectPublicKeyInfoPem());
        return file;
    }
}
