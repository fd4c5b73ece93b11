using System.Threading.RateLimiting;
using Google.Protobuf;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Security;

/// <summary>Callers that fail authentication are limited per remote address: each failure spends a token of the
/// address's bucket (<c>RateLimits:FailedAuthenticationsPerSecond</c>, <c>RateLimits:FailedAuthenticationBurst</c>), and
/// while the bucket is empty every request from the address is answered RESOURCE_EXHAUSTED before any certificate or
/// token is checked, so a flood of bad credentials costs the server next to nothing. Like fail2ban, it also holds back a
/// good caller behind the same address until the bucket refills.</summary>
internal sealed class FailedAuthentication(RateLimitOptions options) : IDisposable
{
    private readonly PartitionedRateLimiter<string> _failures = PartitionedRateLimiter.Create<string, string>(address =>
        RateLimitPartition.GetTokenBucketLimiter(address, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = options.FailedAuthenticationBurst,
            TokensPerPeriod = options.FailedAuthenticationsPerSecond,
            ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            QueueLimit = 0,
            AutoReplenishment = true,
        }));

    public void RecordFailure(HttpContext context)
    {
        using var lease = _failures.AttemptAcquire(AddressOf(context));
    }

    /// <summary>Middleware, before authentication: turns an address that has spent its failures away at once.</summary>
    public async Task GateAsync(HttpContext context, RequestDelegate next)
    {
        if (context.Request.Path.StartsWithSegments("/grpc.health.v1.Health")
            || _failures.GetStatistics(AddressOf(context))?.CurrentAvailablePermits > 0)
        {
            await next(context);
            return;
        }

        var status = ErrorInterceptor.ToStatus(Reason.RateLimited,
            "Too many calls from this address failed to authenticate; it is refused for a moment. Fix the credentials and retry later.",
            TimeSpan.FromSeconds(1));
        if (!JsonApi.IsGrpc(context.Request))
        {
            // A JSON call is answered as transcoding answers RESOURCE_EXHAUSTED.
            context.Response.Headers.RetryAfter = "1";
            await JsonApi.WriteStatusAsync(context.Response, status);
            return;
        }

        // A trailers-only gRPC answer: the status in the headers, no message.
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/grpc";
        context.Response.Headers["grpc-status"] = status.Code.ToString(System.Globalization.CultureInfo.InvariantCulture);
        context.Response.Headers["grpc-message"] = Uri.EscapeDataString(status.Message);
        context.Response.Headers["grpc-status-details-bin"] = Convert.ToBase64String(status.ToByteArray());
        await context.Response.CompleteAsync();
    }

    public void Dispose() => _failures.Dispose();

    private static string AddressOf(HttpContext context) => context.Connection.RemoteIpAddress?.ToString() ?? "in-process";
}
