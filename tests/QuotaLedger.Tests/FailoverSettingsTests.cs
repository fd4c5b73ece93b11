using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using QuotaLedger.Server.Storage;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>A server given several hosts finds the one that takes writes soon after a failover: Npgsql's memory of each
/// host's state (primary, standby, read-only, offline) lasts a second, not its default ten, unless the operator says
/// otherwise. (The failover itself is measured with loadtest/ha.sh; see docs/reliability.md.)</summary>
public sealed class FailoverSettingsTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Theory]
    [InlineData(null, 1)]
    [InlineData(5, 5)]
    public async Task With_several_hosts_the_server_rechecks_each_hosts_state_every_second_unless_told_otherwise(int? configured, int expected)
    {
        var serving = new NpgsqlConnectionStringBuilder(fixture.Database.ServingConnectionString);
        var hosts = new NpgsqlConnectionStringBuilder(serving.ConnectionString)
        {
            // The same server twice is enough for Npgsql to manage the hosts as a failover set.
            Host = $"{serving.Host}:{serving.Port},{serving.Host}:{serving.Port}",
            TargetSessionAttributes = "read-write",
        };
        if (configured is { } seconds)
        {
            hosts.HostRecheckSeconds = seconds;
        }

        var settings = new Dictionary<string, string?>(fixture.Database.ServerSettings) { ["ConnectionStrings:Ledger"] = hosts.ConnectionString };
        await using var server = LedgerServer.Start(settings, LedgerFixture.Now);
        Assert.Equal(2026, (await server.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 })).Year);

        var source = server.Services.GetRequiredService<LedgerDatabase>().DataSource;
        Assert.IsType<NpgsqlMultiHostDataSource>(source);
        Assert.Equal(expected, new NpgsqlConnectionStringBuilder(source.ConnectionString).HostRecheckSeconds);

        // Forgetting the hosts (what a failed call does in a failover) leaves the server serving.
        server.Services.GetRequiredService<LedgerDatabase>().ForgetHosts();
        Assert.Equal(2026, (await server.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 })).Year);
    }
}
