using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql;

namespace QuotaLedger.Server.Storage;

/// <summary>Where the ledger's database is: <c>ConnectionStrings:Ledger</c> when set, otherwise a private local
/// cluster this process starts. Known once <see cref="DatabaseStartup"/> has run, before the server takes calls.</summary>
public sealed class LedgerDatabase(DatabaseOptions options, TimeProvider time) : IAsyncDisposable
{
    /// <summary>How long a multi-host data source trusts what it last saw of a host (primary, standby, read-only,
    /// offline) when the connection string leaves Npgsql's default of 10 s: during a failover the promoted standby is
    /// tried again within a second of taking writes, not up to 10 s later.</summary>
    internal const int FailoverHostRecheckSeconds = 1;

    private const int NpgsqlDefaultHostRecheckSeconds = 10;

    private NpgsqlDataSource? _dataSource;
    private NpgsqlDataSource? _healthSource;
    private long _hostsForgottenAt = long.MinValue;

    /// <summary>The limits every serving session runs under.</summary>
    public DatabaseOptions Options { get; } = options;

    public NpgsqlDataSource DataSource =>
        _dataSource ?? throw new InvalidOperationException("The ledger database is not started yet.");

    /// <summary>For the health check: a connection of its own per check, outside the pool (an exhausted pool is load,
    /// not a dead database), bounded to 2 s to connect and 2 s to answer (a database that stops answering without
    /// refusing reads as down, not as a check that hangs).</summary>
    public NpgsqlDataSource HealthSource =>
        _healthSource ?? throw new InvalidOperationException("The ledger database is not started yet.");

    internal void Use(string connectionString)
    {
        var builder = Options.Apply(new NpgsqlConnectionStringBuilder(connectionString));
        // The hot path repeats the same few statements: let Npgsql prepare them server-side once per connection
        // instead of PostgreSQL parsing and planning each one per call (see docs/benchmarks.md).
        if (builder.MaxAutoPrepare == 0)
        {
            builder.MaxAutoPrepare = 64;
            builder.AutoPrepareMinUsages = 2;
        }
        // Nothing here changes session state beyond a transaction (SET LOCAL), so a pooled connection needs no reset
        // statements when reused.
        builder.NoResetOnClose = true;
        if (builder.Host?.Contains(',', StringComparison.Ordinal) == true && builder.HostRecheckSeconds == NpgsqlDefaultHostRecheckSeconds)
        {
            builder.HostRecheckSeconds = FailoverHostRecheckSeconds;
        }

        _dataSource = new NpgsqlDataSourceBuilder(builder.ConnectionString).Build();
        _healthSource = new NpgsqlDataSourceBuilder(
            new NpgsqlConnectionStringBuilder(builder.ConnectionString) { Pooling = false, Timeout = 2, CommandTimeout = 2 }.ConnectionString).Build();
    }

    /// <summary>After a failure that says a host is gone or no longer takes writes (a failover): drops the pool's idle
    /// connections, which lead to the old primary, and, with several hosts, what Npgsql remembers of each, so the next
    /// connection looks for the primary at once instead of trusting a state seen before the failover. At most once a
    /// second: a failover fails many calls at once.</summary>
    public void ForgetHosts()
    {
        var now = time.GetTimestamp();
        var last = Interlocked.Read(ref _hostsForgottenAt);
        if ((last != long.MinValue && time.GetElapsedTime(last, now) < TimeSpan.FromSeconds(1))
            || Interlocked.CompareExchange(ref _hostsForgottenAt, now, last) != last || _dataSource is not { } source)
        {
            return;
        }

        source.Clear();
        (source as NpgsqlMultiHostDataSource)?.ClearDatabaseStates();
    }

    public async ValueTask DisposeAsync()
    {
        if (_healthSource is not null)
        {
            await _healthSource.DisposeAsync();
        }

        if (_dataSource is not null)
        {
            await _dataSource.DisposeAsync();
        }
    }
}

/// <summary>Starts the private cluster when no connection string is configured (in Development only; anywhere else
/// that refuses to start), migrates the schema as its owner and
/// gives the serving role its privileges (<see cref="DatabaseRoles"/>), then points the server at the serving role.
/// Runs before Kestrel starts listening (hosted services start in order, the web server last). When the server stops it
/// leaves the cluster, which the last server using it stops.</summary>
internal sealed partial class DatabaseStartup(
    IConfiguration configuration,
    IHostEnvironment environment,
    LocalPostgresOptions localPostgres,
    LedgerDatabase database,
    ILogger<DatabaseStartup> logger) : IHostedService
{
    private LocalPostgresCluster? _cluster;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var serving = configuration.GetConnectionString("Ledger");
        var owner = configuration.GetConnectionString("LedgerMigrations");
        if (string.IsNullOrWhiteSpace(serving))
        {
            // The private cluster is a development convenience. Elsewhere a missing (or mistyped) connection string would
            // make a second, empty ledger on local disk and serve it as though it were the one.
            if (!environment.IsDevelopment())
            {
                throw new Security.StartupRefusedException(
                    $"ConnectionStrings:Ledger is not set, and the environment is '{environment.EnvironmentName}', not Development: refusing to start " +
                    "rather than serve an empty ledger from a private local cluster. Set ConnectionStrings__Ledger to the serving role's connection string " +
                    "(and ConnectionStrings__LedgerMigrations to the schema owner's), or set ASPNETCORE_ENVIRONMENT=Development for a local development cluster.");
            }

            LogStartingLocalCluster(logger);
            try
            {
                _cluster = await LocalPostgresCluster.StartAsync(localPostgres, logger, cancellationToken);
            }
            catch (PostgresBinariesNotFoundException e)
            {
                LogNoPostgres(logger, e.Message);
                throw;
            }

            (owner, serving) = (_cluster.ConnectionString, _cluster.ServingConnectionString);
        }

        await Schema.PrepareAsync(owner, serving, logger, cancellationToken);
        database.Use(serving);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "ConnectionStrings:Ledger is not set: starting a private local PostgreSQL cluster for development")]
    private static partial void LogStartingLocalCluster(ILogger logger);

    [LoggerMessage(Level = LogLevel.Critical, Message = "Cannot start: {Advice}")]
    private static partial void LogNoPostgres(ILogger logger, string advice);
}

/// <summary>Brings the schema up to date as its owner and hands the serving role exactly its privileges; also the
/// <c>migrate</c> command, for deployments that migrate separately from serving.</summary>
public static partial class Schema
{
    /// <summary>With an owner connection: migrates as the owner and grants the serving role its privileges. With only
    /// the serving connection: migrates with it if it owns the schema (and warns that the server then runs with owner
    /// rights), and otherwise requires the schema to be current.</summary>
    public static async Task PrepareAsync(string? owner, string serving, ILogger logger, CancellationToken ct)
    {
        // The start's connections are closed when it ends, not left idle in pools beside the serving one: the pool the
        // operator configures is every connection the server keeps.
        serving = Unpooled(serving);
        owner = owner is null ? null : Unpooled(owner);
        await using var servingConnection = new NpgsqlConnection(serving);
        await servingConnection.OpenAsync(ct);
        var servingRole = await CurrentUserAsync(servingConnection, ct);
        if (string.IsNullOrWhiteSpace(owner))
        {
            if (await DatabaseRoles.OwnsSchemaAsync(servingConnection, ct))
            {
                LogOwnerRights(logger, servingRole);
                await MigrateAsync(serving, ct);
                LogMigrated(logger, servingConnection.Database, servingRole);
                return;
            }

            await using var db = Context(serving);
            var pending = (await db.Database.GetPendingMigrationsAsync(ct)).ToList();
            if (pending.Count > 0)
            {
                throw new Security.StartupRefusedException(
                    $"The database {servingConnection.Database} lacks {pending.Count} migration(s) ({string.Join(", ", pending)}), and the serving role " +
                    $"{servingRole} may not run them. Set ConnectionStrings:LedgerMigrations to the schema owner's connection string, or run " +
                    "`dotnet QuotaLedger.Server.dll migrate` with it first.");
            }

            return;
        }

        await MigrateAsync(owner, ct);
        await using var ownerConnection = new NpgsqlConnection(owner);
        await ownerConnection.OpenAsync(ct);
        var ownerRole = await CurrentUserAsync(ownerConnection, ct);
        if (ownerRole == servingRole)
        {
            LogOwnerRights(logger, servingRole);
        }
        else
        {
            await DatabaseRoles.GrantServingAsync(ownerConnection, servingRole, ct);
        }

        LogMigrated(logger, ownerConnection.Database, servingRole);
    }

    /// <summary><c>migrate</c>: migrates with <c>ConnectionStrings:LedgerMigrations</c> (or <c>Ledger</c>) and grants the
    /// serving role of <c>ConnectionStrings:Ledger</c> its privileges. Returns the process's exit code.</summary>
    public static async Task<int> RunMigrateCommandAsync(string[] args)
    {
        var builder = Host.CreateApplicationBuilder(args);
        using var host = builder.Build();
        var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("QuotaLedger.Migrate");
        var owner = builder.Configuration.GetConnectionString("LedgerMigrations");
        var serving = builder.Configuration.GetConnectionString("Ledger");
        if (string.IsNullOrWhiteSpace(owner) && string.IsNullOrWhiteSpace(serving))
        {
            await Console.Error.WriteLineAsync("migrate: set ConnectionStrings:LedgerMigrations (the schema owner) and ConnectionStrings:Ledger (the serving role).");
            return 2;
        }

        await PrepareAsync(string.IsNullOrWhiteSpace(owner) ? serving : owner, string.IsNullOrWhiteSpace(serving) ? owner! : serving, logger, CancellationToken.None);
        return 0;
    }

    /// <summary>Applies the pending migrations. Before the one that makes every entry's hash required, the entries of an
    /// older database are chained (<see cref="LegacyChains"/>): a data step in C#, since the hash is computed here.</summary>
    private static async Task MigrateAsync(string connectionString, CancellationToken ct)
    {
        await using var db = Context(connectionString);
        var pending = (await db.Database.GetPendingMigrationsAsync(ct)).ToList();
        var index = pending.IndexOf(LegacyChains.Before);
        if (index > 0)
        {
            await db.GetService<IMigrator>().MigrateAsync(pending[index - 1], ct);
        }

        if (index >= 0)
        {
            await using var owner = new NpgsqlConnection(connectionString);
            await owner.OpenAsync(ct);
            await LegacyChains.ChainAsync(owner, ct);
        }

        await db.Database.MigrateAsync(ct);
    }

    private static string Unpooled(string connectionString) =>
        string.IsNullOrWhiteSpace(connectionString) ? connectionString : new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString;

    private static LedgerDb Context(string connectionString) =>
        new(new DbContextOptionsBuilder<LedgerDb>().UseNpgsql(connectionString).UseSnakeCaseNamingConvention().Options);

    private static async Task<string> CurrentUserAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT current_user", connection);
        return (string)(await command.ExecuteScalarAsync(ct))!;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The server connects as {Role}, which owns the ledger's schema: it could alter the journal's tables or disable their triggers. Give it a serving role of its own (ConnectionStrings:Ledger) and the owner's connection to ConnectionStrings:LedgerMigrations")]
    private static partial void LogOwnerRights(ILogger logger, string role);

    [LoggerMessage(Level = LogLevel.Information, Message = "Database {Database} is migrated and ready; the server serves as {Role}")]
    private static partial void LogMigrated(ILogger logger, string database, string role);
}
