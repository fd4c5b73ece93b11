using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>The client by role: <see cref="IQuotaLedgerClient"/> is made of one interface per service, each registered
/// as the same client, so code that deducts depends on <see cref="ILedgerClient"/> and its tests fake only that; and the
/// options of reconnecting and of watches bind from configuration and are checked at start.</summary>
public sealed class SdkRoleTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task Each_role_interface_resolves_to_the_one_client_and_a_class_needing_one_role_runs_on_it()
    {
        using var services = new ServiceCollection()
            .AddQuotaLedgerClient(options =>
            {
                options.Address = fixture.Server.BaseAddress;
                options.HttpHandler = fixture.Server.CreateHandler();
            })
            .Services.BuildServiceProvider();

        var client = services.GetRequiredService<IQuotaLedgerClient>();
        Assert.Same(client, services.GetRequiredService<ILedgerClient>());
        Assert.Same(client, services.GetRequiredService<IRegistryClient>());
        Assert.Same(client, services.GetRequiredService<IAdminClient>());
        Assert.Same(client, services.GetRequiredService<IRedemptionClient>());
        Assert.Same(client, services.GetRequiredService<IAlertsClient>());
        Assert.Equal(5_000, (await services.GetRequiredService<IAdminClient>().GetYearPolicyAsync(2026)).SelfControllableRatioBp);
        // Members the role interfaces declare are the composed interface's too: code written against it still compiles.
        Assert.Equal(61, typeof(IQuotaLedgerClient).GetInterfaces().Sum(i => i.GetMethods().Length) + typeof(IQuotaLedgerClient).GetMethods().Length);
    }

    [Fact]
    public void Reconnect_and_watch_options_bind_from_configuration_and_unusable_values_are_named()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["QuotaLedger:Address"] = "http://127.0.0.1:5080",
            ["QuotaLedger:Reconnect:MaxBackoff"] = "00:00:02",
            ["QuotaLedger:Reconnect:WaitForConnection"] = "00:00:03",
            ["QuotaLedger:Watch:ReconnectFor"] = "00:01:00",
        }).Build();
        using var services = new ServiceCollection().AddQuotaLedgerClient(configuration.GetSection("QuotaLedger")).Services.BuildServiceProvider();
        var options = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<QuotaLedgerClientOptions>>().Value;
        Assert.Equal(TimeSpan.FromSeconds(2), options.Reconnect.MaxBackoff);
        Assert.Equal(TimeSpan.FromMilliseconds(200), options.Reconnect.InitialBackoff);
        Assert.Equal(TimeSpan.FromSeconds(3), options.Reconnect.WaitForConnection);
        Assert.Equal(TimeSpan.FromMinutes(1), options.Watch.ReconnectFor);

        var unusable = new QuotaLedgerClientOptions
        {
            Address = new Uri("http://127.0.0.1:5080"),
            Reconnect = { InitialBackoff = TimeSpan.FromSeconds(3), MaxBackoff = TimeSpan.FromSeconds(1), WaitForConnection = TimeSpan.FromSeconds(-1) },
            Watch = { ReconnectFor = TimeSpan.FromDays(2) },
        };
        var problems = unusable.Problems();
        Assert.Contains(problems, p => p.StartsWith("Reconnect:InitialBackoff", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Reconnect:WaitForConnection", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Watch:ReconnectFor", StringComparison.Ordinal));
        Assert.Throws<InvalidOperationException>(() => new QuotaLedgerClient(unusable));
    }
}
