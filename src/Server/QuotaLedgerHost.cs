using System.Threading.RateLimiting;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection.Extensions;
using QuotaLedger.Server.Admin;
using QuotaLedger.Server.Alerts;
using QuotaLedger.Server.Bureau;
using QuotaLedger.Server.Engine;
using QuotaLedger.Server.Feed;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Registry;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.Server.Telemetry;

namespace QuotaLedger.Server;

/// <summary>Builds the server: the services, the database, authentication, and the gRPC endpoints (each also as JSON over
/// HTTP, <see cref="JsonApi"/>).</summary>
public static class QuotaLedgerHost
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        DevelopmentMode.RequireOneEnvironment(
            Environment.GetEnvironmentVariable("DOTNET_ENVIRONMENT"), Environment.GetEnvironmentVariable("ASPNETCORE_ENVIRONMENT"));
        var builder = WebApplication.CreateBuilder(args);
        AddConfigFile(builder.Configuration);
        configure?.Invoke(builder);

        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSettings<DatabaseOptions>("Database");
        builder.Services.AddSettings<LocalPostgresOptions>("LocalPostgres");
        builder.Services.AddSettings<DeductionOptions>("Deductions");
        builder.Services.AddSettings<ExpiryOptions>("Expiry");
        builder.Services.AddSettings<AlertOptions>("Alerts");
        builder.Services.AddSettings<RateLimitOptions>("RateLimits");
        builder.Services.AddSettings<CheckpointOptions>("Checkpoints");
        builder.Services.AddSettings<RequestLimitOptions>("Requests");
        builder.AddServerTelemetry();
        builder.Services.AddSingleton<LedgerDatabase>();
        builder.Services.AddHostedService<DatabaseStartup>();
        builder.Services.AddDbContextPool<LedgerDb>((services, options) => options
            .UseNpgsql(services.GetRequiredService<LedgerDatabase>().DataSource)
            .UseSnakeCaseNamingConvention());
        builder.Services.AddScoped<Idempotency>();
        builder.Services.AddSingleton<WriteQueue>();
        builder.Services.AddHostedService(services => services.GetRequiredService<WriteQueue>());
        builder.Services.AddHostedService<ExpiryService>();
        builder.Services.AddHostedService<AlertPassService>();
        builder.Services.AddSettings<WatchOptions>("Watch");
        builder.Services.AddSingleton<FeedHub>();
        builder.Services.AddHostedService(services => services.GetRequiredService<FeedHub>());

        // Read while the host is built: it decides the security mode and the authentication handlers.
        var auth = Settings.Read<AuthOptions>(builder.Configuration, "Auth");
        var development = DevelopmentMode.Decide(builder.Configuration, builder.Environment, auth);
        if (DevelopmentClock.From(builder.Configuration, development) is { } clock)
        {
            builder.Services.AddSingleton<TimeProvider>(clock);
        }

        var forwarded = Settings.Read<ForwardedHeadersSettings>(builder.Configuration, "ForwardedHeaders");
        builder.AddCallerAuthentication(auth);
        AddCheckpoints(builder, development);
        builder.Services.AddSingleton(new SecurityMode(development));
        builder.Services.AddSingleton<FailedAuthentication>();
        builder.Services.AddSingleton<CallerGate>();
        builder.Services.AddSingleton(services =>
        {
            var limits = services.GetRequiredService<RateLimitOptions>();
            return PartitionedRateLimiter.Create<string, string>(caller => RateLimitPartition.GetTokenBucketLimiter(caller, _ =>
                new TokenBucketRateLimiterOptions
                {
                    TokenLimit = limits.Burst,
                    TokensPerPeriod = limits.PermitsPerSecond,
                    ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                    QueueLimit = 0,
                    AutoReplenishment = true,
                }));
        });

        builder.Services.AddGrpc(options =>
        {
            // Outermost first: errors from the caller check are translated too.
            options.Interceptors.Add<ErrorInterceptor>();
            options.Interceptors.Add<CallerInterceptor>();
        }).AddJsonApi();
        // The same limit as RequestChecks applies before a message is read; this one also holds for a compressed message.
        // Read as it stands: gRPC's options are resolved while the host is built, and a bad value is refused at start by
        // RequestLimitOptions' check, naming the key.
        builder.Services.AddOptions<global::Grpc.AspNetCore.Server.GrpcServiceOptions>()
            .Configure<IConfiguration>((grpc, configuration) => grpc.MaxReceiveMessageSize = RequestLimitOptions.MaxBodyBytesIn(configuration));
        builder.Services.AddGrpcReflection();
        builder.Services.AddGrpcHealthChecks().AddCheck<DatabaseHealthCheck>("ledger-database");

        var app = builder.Build();
        if (forwarded.Configured)
        {
            // First: the failed-authentication gate then counts the client a trusted proxy names, not the proxy.
            app.UseForwardedHeaders(forwarded.ToOptions());
        }

        if (!development)
        {
            app.Use(app.Services.GetRequiredService<FailedAuthentication>().GateAsync);
        }

        app.UseAuthentication();
        app.UseRequestChecks();
        if (development)
        {
            DevelopmentMode.Announce(app);
        }

        app.MapOpenApiDocument();
        app.MapGrpcService<AdminGrpcService>();
        app.MapGrpcService<RegistryGrpcService>();
        app.MapGrpcService<LedgerGrpcService>();
        app.MapGrpcService<Redemption.RedemptionGrpcService>();
        app.MapGrpcService<AlertGrpcService>();
        app.MapGrpcHealthChecksService();
        app.MapGrpcReflectionService();
        app.MapBureauPage();
        return app;
    }

    /// <summary>The checkpoint signer, from <c>Checkpoints:SigningKeyFile</c>, which secured mode requires (checked before
    /// the server listens). In development without one, a key beside the local cluster's folder.</summary>
    private static void AddCheckpoints(WebApplicationBuilder builder, bool development)
    {
        if (!development && string.IsNullOrWhiteSpace(builder.Configuration["Checkpoints:SigningKeyFile"]))
        {
            // Throws the refusal that says what to configure.
            CheckpointSigner.FromOptions(new CheckpointOptions(), development: false, "");
        }

        builder.Services.AddSingleton(services =>
        {
            var options = services.GetRequiredService<CheckpointOptions>();
            var localFolder = Path.GetDirectoryName(Path.GetFullPath(services.GetRequiredService<LocalPostgresOptions>().DataDirectory ?? "/var/tmp/quotaledger/pgdata"))!;
            return CheckpointSigner.FromOptions(options, services.GetRequiredService<SecurityMode>().Development,
                Path.Combine(localFolder, "checkpoint-signing.key"));
        });
        builder.Services.AddHostedService<CheckpointService>();
    }

    /// <summary><c>--config-file PATH</c>: a JSON file read after appsettings but before environment variables and the
    /// command line, like every other configuration file, so an operator can override any of its values from outside.</summary>
    private static void AddConfigFile(ConfigurationManager configuration)
    {
        if (configuration["config-file"] is not { Length: > 0 } path)
        {
            return;
        }

        var sources = configuration.Sources;
        var after = -1;
        for (var i = 0; i < sources.Count; i++)
        {
            if (sources[i] is JsonConfigurationSource)
            {
                after = i;
            }
        }

        var file = new JsonConfigurationSource { Path = Path.GetFullPath(path), Optional = false, ReloadOnChange = false };
        file.ResolveFileProvider();
        sources.Insert(after + 1, file);
    }
}
