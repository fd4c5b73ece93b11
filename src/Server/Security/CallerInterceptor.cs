using System.Threading.RateLimiting;
using Grpc.Core;
using Grpc.Core.Interceptors;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Security;

/// <summary>Establishes the caller of every ledger call: an authenticated identity, or the development identity when
/// nothing is configured and the call comes over loopback; anyone else is UNAUTHENTICATED. Then applies the caller's
/// rate limit, refusing with RESOURCE_EXHAUSTED and a retry hint rather than queueing without bound.</summary>
internal sealed class CallerInterceptor(SecurityMode mode, PartitionedRateLimiter<string> limiter, FailedAuthentication failures) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        using var lease = Admit(context);
        return await continuation(request, context);
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        using var lease = Admit(context);
        await continuation(request, responseStream, context);
    }

    private RateLimitLease? Admit(ServerCallContext context)
    {
        // Health and reflection are open to anyone who can reach the port.
        if (context.Method.StartsWith("/grpc.", StringComparison.Ordinal))
        {
            return null;
        }

        var http = context.GetHttpContext();
        if (!mode.Development && !http.Request.IsHttps)
        {
            throw new LedgerException(Reason.Unauthenticated, "Credentials are accepted over TLS only: call the server's https:// address.");
        }

        var caller = Caller.From(http.User);
        if (caller is null && mode.Development && Caller.IsLocal(http.Connection.RemoteIpAddress))
        {
            caller = Caller.Development;
        }

        if (caller is null)
        {
            failures.RecordFailure(http);
            throw new LedgerException(Reason.Unauthenticated,
                "The call carries no valid credentials: present a client certificate from a trusted CA or a bearer token from a trusted issuer.");
        }

        var lease = limiter.AttemptAcquire(caller.Uscc);
        if (!lease.IsAcquired)
        {
            var retryAfter = lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromSeconds(1);
            lease.Dispose();
            throw new LedgerException(Reason.RateLimited,
                $"The caller {caller.Uscc} is over its rate limit; retry after {retryAfter.TotalMilliseconds:0} ms.")
            {
                RetryAfter = retryAfter,
            };
        }

        http.Items[typeof(Caller)] = caller;
        return lease;
    }
}
