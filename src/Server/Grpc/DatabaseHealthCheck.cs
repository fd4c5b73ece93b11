using Microsoft.Extensions.Diagnostics.HealthChecks;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Grpc;

/// <summary>Healthy while the ledger database answers.</summary>
internal sealed class DatabaseHealthCheck(LedgerDb db) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        await db.Database.CanConnectAsync(cancellationToken)
            ? HealthCheckResult.Healthy()
            : HealthCheckResult.Unhealthy("The ledger database does not answer.");
}
