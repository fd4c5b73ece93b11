using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Admin;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Registry;
using QuotaLedger.Server.Storage;

var builder = WebApplication.CreateBuilder(args);

builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddSingleton<LedgerDatabase>();
builder.Services.AddHostedService<DatabaseStartup>();
builder.Services.AddDbContextPool<LedgerDb>((services, options) => options
    .UseNpgsql(services.GetRequiredService<LedgerDatabase>().DataSource)
    .UseSnakeCaseNamingConvention());
builder.Services.AddScoped<Idempotency>();
builder.Services.AddHostedService<ExpiryService>();

builder.Services.AddGrpc(options =>
{
    options.Interceptors.Add<ErrorInterceptor>();
    options.MaxReceiveMessageSize = 64 * 1024;
});
builder.Services.AddGrpcReflection();
builder.Services.AddGrpcHealthChecks().AddCheck<DatabaseHealthCheck>("ledger-database");

var app = builder.Build();

app.MapGrpcService<AdminGrpcService>();
app.MapGrpcService<RegistryGrpcService>();
app.MapGrpcService<LedgerGrpcService>();
app.MapGrpcHealthChecksService();
app.MapGrpcReflectionService();

await app.RunAsync();

/// <summary>The server's entry point, public so tests can host it.</summary>
public partial class Program;
