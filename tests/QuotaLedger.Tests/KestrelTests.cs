using System.Diagnostics;
using System.Net;
using Grpc.Health.V1;
using Grpc.Net.Client;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The real server process on a real loopback port: plain-HTTP gRPC (HTTP/2 prior knowledge), as clients in
/// other languages call it in development, and JSON over HTTP/1.1 on the development JSON endpoint beside it.</summary>
[Collection(LedgerCollection.Name)]
public sealed class KestrelTests(LedgerFixture fixture)
{
    [Fact]
    public async Task The_server_process_answers_health_and_calls_over_plain_http2_and_json_over_http1()
    {
        var port = TestPorts.Free();
        var jsonPort = TestPorts.Free();
        var serverDll = Path.Combine(AppContext.BaseDirectory, "QuotaLedger.Server.dll");
        var start = new ProcessStartInfo("dotnet", [serverDll])
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment =
            {
                ["ConnectionStrings__Ledger"] = fixture.Database.ServingConnectionString,
                ["ConnectionStrings__LedgerMigrations"] = fixture.Database.ConnectionString,
                // The run's key: a development server without one would write its key beside the default local cluster.
                ["Checkpoints__SigningKeyFile"] = fixture.Database.CheckpointKeyFile,
                ["Kestrel__Endpoints__Grpc__Url"] = $"http://127.0.0.1:{port}",
                // Its protocol (HTTP/1.1 only) comes from appsettings.Development.json.
                ["Kestrel__Endpoints__Web__Url"] = $"http://127.0.0.1:{jsonPort}",
                ["DOTNET_ENVIRONMENT"] = "Development",
                ["Expiry__Enabled"] = "false",
            },
        };
        using var process = Process.Start(start)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
            var health = new Health.HealthClient(channel);
            var status = await WaitUntilServingAsync(health);
            Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, status);

            var admin = new AdminService.AdminServiceClient(channel);
            var policy = await admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 });
            Assert.Equal(5_000, policy.SelfControllableRatioBp);

            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{jsonPort}") };
            using var json = await http.GetAsync("/v1/program-years/2026/policy");
            Assert.Equal(HttpVersion.Version11, json.Version);
            var body = System.Text.Json.Nodes.JsonNode.Parse(await json.EnsureSuccessStatusCode().Content.ReadAsStringAsync())!;
            Assert.Equal(5_000, body["selfControllableRatioBp"]!.GetValue<int>());
            (await http.GetAsync("/openapi/v1.json")).EnsureSuccessStatusCode();
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    private static async Task<HealthCheckResponse.Types.ServingStatus> WaitUntilServingAsync(Health.HealthClient health)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try
            {
                return (await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(5))).Status;
            }
            catch (Grpc.Core.RpcException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(200);
            }
        }
    }
}
