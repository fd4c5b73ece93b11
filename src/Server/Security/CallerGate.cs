using System.Threading.RateLimiting;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Security;

/// <summary>Establishes the caller of a request, gRPC or HTTP alike: an authenticated identity, or the development
/// identity when nothing is configured and the request comes over loopback; anyone else is UNAUTHENTICATED. Then applies
/// the caller's rate limit, refusing with RATE_LIMITED and a retry hint rather than queueing without bound.</summary>
internal sealed class CallerGate(SecurityMode mode, PartitionedRateLimiter<string> limiter, FailedAuthentication failures)
{
    /// <summary>The caller, with the rate limiter's lease to hold for the request; throws a <see cref="LedgerException"/>
    /// (UNAUTHENTICATED, RATE_LIMITED) for a request that may not go on.</summary>
    public (Caller Caller, RateLimitLease Lease) Admit(HttpContext http)
    {
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
                "The request carries no valid credentials: present a client certificate from a trusted CA or a bearer token from a trusted issuer.");
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
        return (caller, lease);
    }
}
