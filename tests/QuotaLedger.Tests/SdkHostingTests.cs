using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Options;
using QuotaLedger.Client;
using QuotaLedger.Server.Security;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>The SDK in a partner's host: options bound from configuration and validated at start, named clients, the gRPC
/// client factory's handlers and interceptors on top of the client's TLS, and its logs, traces and metrics.</summary>
public sealed class SdkHostingTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly DateTimeOffset s_now = new(2026, 6, 15, 2, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Options_bind_from_configuration_and_an_unknown_key_is_an_error()
    {
        var services = new ServiceCollection();
        services.AddQuotaLedgerClient(Configuration(new()
        {
            ["QuotaLedger:Address"] = "https://ledger.example:5443",
            ["QuotaLedger:DefaultDeadline"] = "00:00:07",
            ["QuotaLedger:Retry:MaxAttempts"] = "3",
        }).GetSection("QuotaLedger"));
        using var provider = services.BuildServiceProvider();
        var options = provider.GetRequiredService<IOptions<QuotaLedgerClientOptions>>().Value;
        Assert.Equal(new Uri("https://ledger.example:5443"), options.Address);
        Assert.Equal(TimeSpan.FromSeconds(7), options.DefaultDeadline);
        Assert.Equal(3, options.Retry.MaxAttempts);

        var typo = new ServiceCollection();
        typo.AddQuotaLedgerClient(Configuration(new() { ["QuotaLedger:Adress"] = "https://ledger.example" }).GetSection("QuotaLedger"));
        using var typoProvider = typo.BuildServiceProvider();
        var error = Assert.Throws<InvalidOperationException>(() => typoProvider.GetRequiredService<IOptions<QuotaLedgerClientOptions>>().Value);
        Assert.Contains("Adress", error.Message);
    }

    [Theory]
    [InlineData(null, null, null, "Address is required")]
    [InlineData("http://ledger.example:5080", null, null, "plain HTTP")]
    [InlineData("ftp://ledger.example", null, null, "http:// or https://")]
    [InlineData("https://ledger.example", "-00:00:01", null, "DefaultDeadline must be positive")]
    [InlineData("https://ledger.example", null, "0", "MaxAttempts must be at least 1")]
    public async Task Unusable_options_stop_the_host_at_start_naming_the_problem(string? address, string? deadline, string? attempts, string problem)
    {
        var builder = Host.CreateApplicationBuilder();
        var settings = new Dictionary<string, string?> { ["QuotaLedger:Address"] = address, ["QuotaLedger:DefaultDeadline"] = deadline, ["QuotaLedger:Retry:MaxAttempts"] = attempts };
        builder.Configuration.AddInMemoryCollection(settings.Where(s => s.Value is not null));
        builder.Services.AddQuotaLedgerClient(builder.Configuration.GetSection("QuotaLedger"));
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(error.Failures, f => f.Contains(problem, StringComparison.Ordinal));
    }

    [Fact]
    public void Plain_http_is_accepted_to_loopback_and_elsewhere_only_when_allowed()
    {
        Assert.Empty(new QuotaLedgerClientOptions { Address = new("http://127.0.0.1:5080") }.Problems());
        Assert.NotEmpty(new QuotaLedgerClientOptions { Address = new("http://ledger.internal:5080") }.Problems());
        Assert.Empty(new QuotaLedgerClientOptions { Address = new("http://ledger.internal:5080"), AllowPlaintext = true }.Problems());
        Assert.Throws<InvalidOperationException>(() => new QuotaLedgerClient(new QuotaLedgerClientOptions()));
    }

    [Fact]
    public async Task Named_clients_talk_to_their_own_servers_through_their_own_handlers_and_interceptors()
    {
        await using var other = fixture.StartServer(s_now);
        var handlerSaw = new List<string>();
        var interceptorSaw = new List<string>();
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddQuotaLedgerClient("city", options =>
            {
                options.Address = fixture.Server.BaseAddress;
                options.HttpHandler = fixture.Server.CreateHandler();
            })
            .AddHttpMessageHandler(() => new Recording(handlerSaw))
            .AddInterceptor(() => new RecordingInterceptor(interceptorSaw));
        var districtSaw = new List<string>();
        services.AddQuotaLedgerClient("district", options =>
            {
                options.Address = other.BaseAddress;
                options.HttpHandler = other.CreateHandler();
            })
            .AddHttpMessageHandler(() => new Recording(districtSaw));
        using var provider = services.BuildServiceProvider();
        var factory = provider.GetRequiredService<IQuotaLedgerClientFactory>();

        var city = factory.Get("city");
        var district = factory.Get("district");
        Assert.Same(city, factory.Get("city"));
        Assert.NotSame(city, district);
        Assert.Null(provider.GetService<IQuotaLedgerClient>());

        var provider1 = TestUscc.New();
        await city.RegisterProviderAsync(provider1, "registered in the city ledger", ["IDC-B1-20260001"]);
        Assert.Equal(provider1, (await city.GetProviderAsync(provider1)).Uscc);
        Assert.Equal(provider1, (await district.GetProviderAsync(provider1)).Uscc); // the two test servers share one database
        Assert.Equal(["/quotaledger.v1.RegistryService/GetProvider"], districtSaw);
        Assert.Equal(["/quotaledger.v1.RegistryService/RegisterProvider", "/quotaledger.v1.RegistryService/GetProvider"], handlerSaw);
        Assert.Equal(["quotaledger.v1.RegistryService/RegisterProvider", "quotaledger.v1.RegistryService/GetProvider"], interceptorSaw);
    }

    [Fact]
    public async Task A_client_from_configuration_keeps_its_mutual_TLS_under_the_factorys_handlers()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now);
        var directory = Directory.CreateTempSubdirectory("quotaledger-sdk-").FullName;
        try
        {
            var bureau = server.Certificate(TestUscc.New(), Role.Bureau);
            await File.WriteAllTextAsync(Path.Combine(directory, "client.pem"), bureau.ExportCertificatePem());
            await File.WriteAllTextAsync(Path.Combine(directory, "client.key"), bureau.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
            await File.WriteAllTextAsync(Path.Combine(directory, "ca.pem"), server.Ca.ExportCertificatePem());
            var seen = new List<string>();
            var builder = Host.CreateApplicationBuilder();
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["QuotaLedger:Address"] = server.Address,
                ["QuotaLedger:ClientCertificateFile"] = Path.Combine(directory, "client.pem"),
                ["QuotaLedger:ClientCertificateKeyFile"] = Path.Combine(directory, "client.key"),
                ["QuotaLedger:TrustedServerCaFile"] = Path.Combine(directory, "ca.pem"),
            });
            builder.Services.AddQuotaLedgerClient(builder.Configuration.GetSection("QuotaLedger")).AddHttpMessageHandler(() => new Recording(seen));
            using var host = builder.Build();
            await host.StartAsync();

            var ledger = host.Services.GetRequiredService<IQuotaLedgerClient>();
            var funded = await ledger.FundBudgetAsync(2026, new Fen(1));

            Assert.Equal(2026, funded.Year);
            Assert.Equal(["/quotaledger.v1.AdminService/FundBudget"], seen);
            await host.StopAsync();
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task A_call_is_one_span_with_an_attempt_per_try_and_is_counted_and_logged()
    {
        // Every SDK client of the process (other classes' tests run alongside) reports to this listener.
        var spans = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == QuotaLedgerTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Enqueue,
        };
        ActivitySource.AddActivityListener(listener);
        using var metrics = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var meterFactory = metrics.GetRequiredService<IMeterFactory>();
        using var calls = new MetricCollector<long>(meterFactory, QuotaLedgerTelemetry.Name, "quotaledger.client.calls");
        using var retries = new MetricCollector<long>(meterFactory, QuotaLedgerTelemetry.Name, "quotaledger.client.retries");
        using var duration = new MetricCollector<double>(meterFactory, QuotaLedgerTelemetry.Name, "quotaledger.client.call.duration");
        var logs = new FakeLogCollector();
        using var loggerFactory = LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(new FakeLoggerProvider(logs)));

        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 10_000);
        var dropFirst = new DropResponses("/quotaledger.v1.LedgerService/Deduct") { InnerHandler = fixture.Server.CreateHandler() };
        using var client = new QuotaLedgerClient(new QuotaLedgerClientOptions
        {
            Address = fixture.Server.BaseAddress,
            HttpHandler = dropFirst,
            Retry = { InitialBackoff = TimeSpan.FromMilliseconds(10), MaxBackoff = TimeSpan.FromMilliseconds(50) },
        }, loggerFactory, meterFactory);

        await client.DeductAsync(deal.Provider, grant.GrantId, "SPAN-" + Ids.New()[..8], new Fen(4_000), new DateOnly(2026, 6, 1), "span-1");
        await Assert.ThrowsAsync<QuotaLedgerException>(() => client.DeductAsync(deal.Provider, grant.GrantId, "SPAN-X", new Fen(1), new DateOnly(2026, 6, 1), "span-2"));

        var call = Assert.Single(spans, s => s.Kind == ActivityKind.Internal && (string?)s.GetTagItem("quotaledger.request_id") == "span-1");
        Assert.Equal("quotaledger.v1.LedgerService/Deduct", call.DisplayName);
        Assert.Equal("grpc", call.GetTagItem("rpc.system"));
        Assert.Equal("Deduct", call.GetTagItem("rpc.method"));
        Assert.Equal("ok", call.GetTagItem("quotaledger.outcome"));
        var attempts = spans.Where(s => s.ParentSpanId == call.SpanId).OrderBy(s => s.StartTimeUtc).ToList();
        Assert.Equal([ActivityKind.Client, ActivityKind.Client], attempts.Select(a => a.Kind));
        Assert.Equal([(int)StatusCode.Unavailable, (int)StatusCode.OK], attempts.Select(a => (int)a.GetTagItem("rpc.grpc.status_code")!));
        var refused = Assert.Single(spans, s => s.Kind == ActivityKind.Internal && (string?)s.GetTagItem("quotaledger.request_id") == "span-2");
        Assert.Equal("INVALID_AMOUNT", refused.GetTagItem("quotaledger.reason"));
        Assert.Equal(ActivityStatusCode.Error, refused.Status);

        Assert.Equal(["ok", "refused"], calls.GetMeasurementSnapshot().Select(m => (string)m.Tags["quotaledger.outcome"]!));
        Assert.Equal(1, Assert.Single(retries.GetMeasurementSnapshot()).Value);
        Assert.Equal(2, duration.GetMeasurementSnapshot().Count);
        Assert.Contains(logs.GetSnapshot(), l => l.Level == LogLevel.Debug && l.Message.Contains("retrying", StringComparison.Ordinal) && l.Message.Contains("span-1", StringComparison.Ordinal));
        Assert.Contains(logs.GetSnapshot(), l => l.Level == LogLevel.Debug && l.Message.Contains("refused", StringComparison.Ordinal) && l.Message.Contains("span-2", StringComparison.Ordinal));
    }

    private static IConfiguration Configuration(Dictionary<string, string?> values) => new ConfigurationBuilder().AddInMemoryCollection(values).Build();

    private sealed class Recording(List<string> seen) : DelegatingHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            lock (seen)
            {
                seen.Add(request.RequestUri!.AbsolutePath);
            }

            return base.SendAsync(request, cancellationToken);
        }
    }

    private sealed class RecordingInterceptor(List<string> seen) : Interceptor
    {
        public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context,
            AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
        {
            lock (seen)
            {
                seen.Add(context.Method.FullName.TrimStart('/'));
            }

            return continuation(request, context);
        }
    }
}
