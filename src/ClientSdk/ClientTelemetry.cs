using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Reflection;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace QuotaLedger.Client;

/// <summary>The client's traces and metrics. Traces: one span per logical call (<see cref="ActivityKind.Internal"/>, named
/// <c>{rpc.service}/{rpc.method}</c>), each attempt a <see cref="ActivityKind.Client"/> child, tagged after OpenTelemetry's
/// RPC conventions (<c>rpc.system</c>, <c>rpc.service</c>, <c>rpc.method</c>, <c>rpc.grpc.status_code</c>,
/// <c>server.address</c>) plus <c>quotaledger.request_id</c>, <c>quotaledger.reason</c> and <c>quotaledger.outcome</c>.
/// Metrics: <c>quotaledger.client.calls</c>, <c>quotaledger.client.retries</c> and
/// <c>quotaledger.client.call.duration</c> (seconds, all attempts and backoff included).</summary>
public static class QuotaLedgerTelemetry
{
    /// <summary>The name of the client's <see cref="ActivitySource"/> and <see cref="Meter"/>: subscribe to it
    /// (<c>AddSource("QuotaLedger.Client")</c>, <c>AddMeter("QuotaLedger.Client")</c>).</summary>
    public const string Name = "QuotaLedger.Client";

    internal static readonly string Version =
        typeof(QuotaLedgerTelemetry).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    internal static readonly ActivitySource Source = new(Name, Version);

    /// <summary>The meter of clients made without an <see cref="IMeterFactory"/>.</summary>
    internal static readonly Meter SharedMeter = new(Name, Version);
}

/// <summary>How a logical call ended, as the <c>quotaledger.outcome</c> tag says it.</summary>
internal static class Outcomes
{
    public const string Ok = "ok";
    public const string Refused = "refused";
    public const string Unavailable = "unavailable";
    public const string Canceled = "canceled";
}

/// <summary>One RPC of the API: its service and method, checked against the generated descriptor when first used.</summary>
internal sealed record Rpc(string Service, string Method)
{
    public string FullName { get; } = Service + "/" + Method;

    public static Rpc Of(Google.Protobuf.Reflection.ServiceDescriptor service, string method) =>
        service.FindMethodByName(method) is null
            ? throw new InvalidOperationException($"{service.FullName} has no method {method}.")
            : new Rpc(service.FullName, method);
}

/// <summary>A client's instruments, made from its meter.</summary>
internal sealed class ClientMetrics
{
    private readonly Counter<long> _calls;
    private readonly Counter<long> _retries;
    private readonly Histogram<double> _duration;

    public ClientMetrics(Meter meter)
    {
        _calls = meter.CreateCounter<long>("quotaledger.client.calls", "{call}", "Logical calls, by method, outcome, gRPC status and reason.");
        _retries = meter.CreateCounter<long>("quotaledger.client.retries", "{attempt}", "Attempts made again after a retryable failure, by method and status.");
        _duration = meter.CreateHistogram("quotaledger.client.call.duration", "s",
            "How long logical calls took, all attempts and backoff included, by method and outcome.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60] });
    }

    public void Retry(Rpc rpc, StatusCode status) =>
        _retries.Add(1, new("rpc.service", rpc.Service), new("rpc.method", rpc.Method), new("rpc.grpc.status_code", (int)status));

    public void Completed(Rpc rpc, string outcome, StatusCode status, string reason, TimeSpan elapsed)
    {
        var tags = new TagList
        {
            { "rpc.system", "grpc" }, { "rpc.service", rpc.Service }, { "rpc.method", rpc.Method }, { "rpc.grpc.status_code", (int)status },
            { "quotaledger.outcome", outcome },
        };
        if (reason.Length > 0)
        {
            tags.Add("quotaledger.reason", reason);
        }

        _calls.Add(1, tags);
        _duration.Record(elapsed.TotalSeconds, new("rpc.service", rpc.Service), new("rpc.method", rpc.Method), new("quotaledger.outcome", outcome));
    }
}

/// <summary>The client's log messages: retries, backoff and refusals at debug, a call given up at warning.</summary>
internal static partial class ClientLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Debug,
        Message = "{Rpc} attempt {Attempt} answered {Status} {Reason}; retrying in {Delay} with request id {RequestId}")]
    public static partial void Retrying(ILogger logger, string rpc, int attempt, StatusCode status, string reason, TimeSpan delay, string? requestId);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "{Rpc} refused {Reason} ({Status}), request id {RequestId}: {Message}")]
    public static partial void Refused(ILogger logger, string rpc, string reason, StatusCode status, string? requestId, string message);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning,
        Message = "{Rpc} gave no definite answer after {Attempts} attempt(s), last {Status} {Reason}; outcome unknown: {OutcomeUnknown}; retry later with request id {RequestId}")]
    public static partial void GaveUp(ILogger logger, string rpc, int attempts, StatusCode status, string reason, bool outcomeUnknown, string? requestId);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "{Rpc} canceled by the caller after {Attempts} attempt(s), request id {RequestId}")]
    public static partial void Canceled(ILogger logger, string rpc, int attempts, string? requestId);
}
