using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using QuotaLedger.Server;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>The server in development mode on real loopback ports, as <c>dotnet run</c> starts it (appsettings and
/// appsettings.Development.json), each endpoint moved to a free port: <c>Grpc</c> (HTTP/2, plain) and <c>Web</c>
/// (HTTP/1.1, for a browser). With a clock of its own, and gRPC clients on its own port.</summary>
public sealed class DevelopmentServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly GrpcChannel _channel;

    private DevelopmentServer(WebApplication app, FakeTimeProvider clock, int grpcPort, int webPort)
    {
        _app = app;
        Clock = clock;
        WebAddress = new Uri($"http://127.0.0.1:{webPort}");
        _channel = GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
        Api = new Clients(_channel);
    }

    public FakeTimeProvider Clock { get; }

    /// <summary>The HTTP/1.1 endpoint that serves the bureau's page.</summary>
    public Uri WebAddress { get; }

    internal Clients Api { get; }

    public static async Task<DevelopmentServer> StartAsync(TestDatabase database, DateTimeOffset now)
    {
        var grpcPort = TestPorts.Free();
        var webPort = TestPorts.Free();
        var clock = new FakeTimeProvider(now.ToUniversalTime());
        var config = new Dictionary<string, string?>(database.ServerSettings)
        {
            ["Expiry:Enabled"] = "false",
            ["Alerts:Enabled"] = "false",
            ["Checkpoints:Enabled"] = "false",
            ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{grpcPort}",
            ["Kestrel:Endpoints:Web:Url"] = $"http://127.0.0.1:{webPort}",
        };
        var app = QuotaLedgerHost.Build(["--environment", "Development"], builder =>
        {
            builder.Configuration.AddInMemoryCollection(config);
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.Services.RemoveAll<TimeProvider>();
            builder.Services.AddSingleton<TimeProvider>(clock);
        });
        await app.StartAsync();
        return new DevelopmentServer(app, clock, grpcPort, webPort);
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
