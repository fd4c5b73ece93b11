using Npgsql;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace QuotaLedger.Server.Telemetry;

/// <summary>The <c>Telemetry</c> section: where OpenTelemetry sends traces and metrics. Empty, nothing is exported
/// and no instrumentation is registered; the ledger's own meter is there all the same, for <c>dotnet-counters</c>.</summary>
public sealed class TelemetryOptions : ICheckedSettings
{
    /// <summary>The OTLP collector's address, e.g. <c>http://127.0.0.1:4317</c> (gRPC) or <c>http://127.0.0.1:4318</c>
    /// (HTTP). Empty: telemetry is off.</summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary><c>Grpc</c> (the default) or <c>HttpProtobuf</c>.</summary>
    public OtlpExportProtocol OtlpProtocol { get; set; } = OtlpExportProtocol.Grpc;

    /// <summary>The resource's <c>service.name</c>.</summary>
    public string ServiceName { get; set; } = "quotaledger-server";

    public bool Enabled => !string.IsNullOrWhiteSpace(OtlpEndpoint);

    public IEnumerable<string> Problems()
    {
        if (Enabled && (!Uri.TryCreate(OtlpEndpoint, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https")))
        {
            yield return $"{nameof(OtlpEndpoint)} must be an http or https address; it is \"{OtlpEndpoint}\".";
        }

        if (!Enum.IsDefined(OtlpProtocol))
        {
            yield return $"{nameof(OtlpProtocol)} must be Grpc or HttpProtobuf; it is {OtlpProtocol}.";
        }

        if (string.IsNullOrWhiteSpace(ServiceName))
        {
            yield return $"{nameof(ServiceName)} must not be empty.";
        }
    }
}

internal static class TelemetrySetup
{
    /// <summary>The ASP.NET Core instrumentation's switch for the rpc.* attributes of gRPC calls (experimental upstream).</summary>
    private const string GrpcAttributes = "OTEL_DOTNET_EXPERIMENTAL_ASPNETCORE_ENABLE_GRPC_INSTRUMENTATION";

    /// <summary>The ledger's meter, always; with <c>Telemetry:OtlpEndpoint</c>, OpenTelemetry's tracer and meter
    /// providers too: ASP.NET Core (with gRPC's attributes), Npgsql, the runtime and the ledger's own spans and
    /// instruments, exported over OTLP.</summary>
    public static void AddServerTelemetry(this WebApplicationBuilder builder)
    {
        builder.Services.AddSingleton<LedgerMetrics>();
        var options = Settings.Read<TelemetryOptions>(builder.Configuration, "Telemetry");
        if (!options.Enabled)
        {
            return;
        }

        // On unless an operator set the switch otherwise.
        builder.Configuration[GrpcAttributes] ??= "true";
        var endpoint = new Uri(options.OtlpEndpoint!, UriKind.Absolute);
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(options.ServiceName, serviceVersion: ServerTelemetry.Version))
            .WithTracing(tracing => tracing
                .AddSource(ServerTelemetry.Name)
                .AddAspNetCoreInstrumentation()
                .AddNpgsql()
                .AddOtlpExporter(otlp => Point(otlp, options.OtlpProtocol, endpoint, "v1/traces")))
            .WithMetrics(metrics => metrics
                .AddMeter(ServerTelemetry.Name)
                .AddAspNetCoreInstrumentation()
                .AddNpgsqlInstrumentation()
                .AddMeter("System.Runtime")
                .AddOtlpExporter(otlp => Point(otlp, options.OtlpProtocol, endpoint, "v1/metrics")));
    }

    /// <summary>An endpoint set in code is used as it is: over HTTP it must name the signal's path itself.</summary>
    private static void Point(OtlpExporterOptions otlp, OtlpExportProtocol protocol, Uri endpoint, string signalPath)
    {
        otlp.Protocol = protocol;
        otlp.Endpoint = protocol == OtlpExportProtocol.HttpProtobuf
            ? new Uri(endpoint.AbsoluteUri.TrimEnd('/') + "/" + signalPath)
            : endpoint;
    }
}
