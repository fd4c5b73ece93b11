using System.Threading.RateLimiting;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace QuotaLedger.Server.Security;

/// <summary>Admits every ledger call through the <see cref="CallerGate"/> (its caller, its rate limit) before it runs.</summary>
internal sealed class CallerInterceptor(CallerGate gate) : Interceptor
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

    private RateLimitLease? Admit(ServerCallContext context) =>
        // Health and reflection are open to anyone who can reach the port.
        context.Method.StartsWith("/grpc.", StringComparison.Ordinal) ? null : gate.Admit(context.GetHttpContext()).Lease;
}
