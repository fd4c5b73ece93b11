using Grpc.Health.V1;
using Grpc.Reflection.V1Alpha;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

public sealed class ServingTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task Health_answers_serving()
    {
        var health = new Health.HealthClient(fixture.Server.Channel);
        var response = await health.CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, response.Status);
    }

    [Fact]
    public async Task Reflection_lists_the_three_services()
    {
        var reflection = new ServerReflection.ServerReflectionClient(fixture.Server.Channel);
        using var call = reflection.ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var names = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("quotaledger.v1.AdminService", names);
        Assert.Contains("quotaledger.v1.RegistryService", names);
        Assert.Contains("quotaledger.v1.LedgerService", names);
        Assert.Contains("grpc.health.v1.Health", names);
    }
}
