using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Grpc;

/// <summary>Healthy while the ledger database answers a query, on a connection of the check's own
/// (<see cref="LedgerDatabase.HealthSource"/>): a pooled connection opens without a round trip, so a database that went
/// away behind it would still look healthy, and a pool exhausted by load would look like a dead database.</summary>
internal sealed class DatabaseHealthCheck(LedgerDatabase database) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await using var command = database.HealthSource.CreateCommand("SELECT 1");
            await command.ExecuteScalarAsync(cancellationToken);
            return HealthCheckResult.Healthy();
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            return HealthCheckResult.Unhealthy("The ledger database does not answer: " + e.Message);
        }
    }
}
