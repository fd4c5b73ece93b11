using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace QuotaLedger.Server.Storage;

/// <summary>Where the ledger's database is: <c>ConnectionStrings:Ledger</c> when set, otherwise a private local
/// cluster this process starts. Known once <see cref="DatabaseStartup"/> has run, before the server takes calls.</summary>
public sealed class LedgerDatabase : IAsyncDisposable
{
    private NpgsqlDataSource? _dataSource;

    public NpgsqlDataSource DataSource =>
        _dataSource ?? throw new InvalidOperationException("The ledger database is not started yet.");

    internal void Use(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        builder.MaxPoolSize = Math.Max(builder.MaxPoolSize, 100);
        // The hot path repeats the same few statements: let Npgsql prepare them server-side once per connection
        // instead of PostgreSQL parsing and planning each one per call (see docs/benchmarks.md).
        if (builder.MaxAutoPrepare == 0)
        {
            builder.MaxAutoPrepare = 64;
            builder.AutoPrepareMinUsages = 2;
        }
        // Nothing here changes session state, so a pooled connection needs no reset statements when reused.
        builder.NoResetOnClose = true;
        _dataSource = new NpgsqlDataSourceBuilder(builder.ConnectionString).Build();
    }

    public async ValueTask DisposeAsync()
    {
        if (_dataSource is not null)
        {
            await _dataSource.DisposeAsync();
        }
    }
}

/// <summary>Starts the private cluster when no connection string is configured, then applies the migrations.
/// Runs before Kestrel starts listening (hosted services start in order, the web server last).</summary>
internal sealed partial class DatabaseStartup(
    IConfiguration configuration,
    LedgerDatabase database,
    IServiceProvider services,
    ILogger<DatabaseStartup> logger) : IHostedService
{
    private LocalPostgresCluster? _cluster;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var connectionString = configuration.GetConnectionString("Ledger");
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            var options = configuration.GetSection("LocalPostgres").Get<LocalPostgresOptions>() ?? new LocalPostgresOptions();
            LogStartingLocalCluster(logger);
            try
            {
                _cluster = await LocalPostgresCluster.StartAsync(options, logger, cancellationToken);
            }
            catch (PostgresBinariesNotFoundException e)
            {
                LogNoPostgres(logger, e.Message);
                throw;
            }

            connectionString = _cluster.ConnectionString;
        }

        database.Use(connectionString);
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LedgerDb>();
        await db.Database.MigrateAsync(cancellationToken);
        LogMigrated(logger, db.Database.GetDbConnection().Database);
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Database {Database} is migrated and ready")]
    private static partial void LogMigrated(ILogger logger, string database);
}
