using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using QuotaLedger.V1;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>One in-memory instance of the server (the real Program, its real database), with a clock of its own
/// and gRPC clients over the test host. Several instances may share one database, as several servers would.</summary>
public sealed class LedgerServer : IAsyncDisposable
{
    private readonly WebApplicationFactory<Program> _factory;

    private LedgerServer(WebApplicationFactory<Program> factory, FakeTimeProvider clock)
    {
        _factory = factory;
        Clock = clock;
        Channel = GrpcChannel.ForAddress(factory.Server.BaseAddress, new GrpcChannelOptions
        {
            HttpHandler = factory.Server.CreateHandler(),
        });
        Admin = new AdminService.AdminServiceClient(Channel);
        Registry = new RegistryService.RegistryServiceClient(Channel);
        Ledger = new LedgerService.LedgerServiceClient(Channel);
        Redemption = new RedemptionService.RedemptionServiceClient(Channel);
    }

    public FakeTimeProvider Clock { get; }

    /// <summary>The server's services, for tests that look inside it.</summary>
    public IServiceProvider Services => _factory.Services;

    public Uri BaseAddress => _factory.Server.BaseAddress;

    /// <summary>A handler into the in-memory server, for clients built by tests (the SDK's, say).</summary>
    public HttpMessageHandler CreateHandler() => _factory.Server.CreateHandler();

    public GrpcChannel Channel { get; }

    internal AdminService.AdminServiceClient Admin { get; }

    internal RegistryService.RegistryServiceClient Registry { get; }

    internal LedgerService.LedgerServiceClient Ledger { get; }

    internal RedemptionService.RedemptionServiceClient Redemption { get; }

    public static LedgerServer Start(TestDatabase database, DateTimeOffset now, bool backgroundExpiry = false, IDictionary<string, string?>? settings = null) =>
        Start(database.ServerSettings, now, backgroundExpiry, settings);

    /// <summary>A server on the database the connection strings in <paramref name="databaseSettings"/> name.</summary>
    public static LedgerServer Start(IDictionary<string, string?> databaseSettings, DateTimeOffset now, bool backgroundExpiry = false, IDictionary<string, string?>? settings = null)
    {
        var clock = new FakeTimeProvider(now.ToUniversalTime());
        var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(host =>
        {
            host.ConfigureAppConfiguration(config => config.AddInMemoryCollection(new Dictionary<string, string?>
            {
                // Tests run the expiry pass on demand unless they test the background pass itself.
                ["Expiry:Enabled"] = backgroundExpiry ? "true" : "false",
                // And the alert pass likewise (AlertService.RunAlertPass), unless the test's settings say otherwise.
                ["Alerts:Enabled"] = settings?.TryGetValue("Alerts:Enabled", out var alerts) == true ? alerts : "false",
            }.Concat(databaseSettings).Concat((settings ?? new Dictionary<string, string?>()).Where(s => s.Key != "Alerts:Enabled"))));
            host.ConfigureLogging(logging => logging.SetMinimumLevel(LogLevel.Warning));
            host.ConfigureServices(services =>
            {
                services.RemoveAll<TimeProvider>();
                services.AddSingleton<TimeProvider>(clock);
            });
        });
        return new LedgerServer(factory, clock);
    }

    public async ValueTask DisposeAsync()
    {
        Channel.Dispose();
        await _factory.DisposeAsync();
    }
}
