using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Grpc.Core.Interceptors;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Grpc;

/// <summary>Turns a <see cref="LedgerException"/> into the gRPC status of its reason, carrying a google.rpc.ErrorInfo
/// with the reason word; a transient failure of the database becomes UNAVAILABLE (<see cref="Storage.StoreFailures"/>);
/// anything unexpected becomes INTERNAL without leaking details.</summary>
internal sealed partial class ErrorInterceptor(ILogger<ErrorInterceptor> logger, Storage.LedgerDatabase database) : Interceptor
{
    public const string Domain = "quotaledger.v1";

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context);
        }
        catch (Exception e) when (Translate(e, context) is { } rpc)
        {
            throw rpc;
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(request, responseStream, context);
        }
        catch (Exception e) when (Translate(e, context) is { } rpc)
        {
            throw rpc;
        }
    }

    private RpcException? Translate(Exception exception, ServerCallContext context)
    {
        switch (exception)
        {
            case RpcException:
                return null;
            case LedgerException refusal:
                return ToRpcException(refusal.Reason, refusal.Message, refusal.RetryAfter, refusal.Metadata);
            case OperationCanceledException when context.CancellationToken.IsCancellationRequested:
                return context.Deadline <= DateTime.UtcNow
                    ? new RpcException(new global::Grpc.Core.Status(StatusCode.DeadlineExceeded, "The call's deadline passed before it was answered."))
                    : new RpcException(new global::Grpc.Core.Status(StatusCode.Cancelled, "The call was cancelled."));
            case var _ when Storage.StoreFailures.Translate(exception) is { } unavailable:
                if (unavailable.Reason == Reason.InvalidArgument)
                {
                    // A value the database could not hold: the request checks should have caught it, or the server built it.
                    LogDataException(logger, exception, context.Method);
                }
                else
                {
                    LogStoreFailure(logger, context.Method, unavailable.Reason.Word(), exception.Message);
                    if (Storage.StoreFailures.HostFailed(exception))
                    {
                        // A failover, as likely as not: the next call should look for the new primary at once.
                        database.ForgetHosts();
                    }
                }

                return ToRpcException(unavailable.Reason, unavailable.Message);
            default:
                LogUnexpected(logger, exception, context.Method);
                return new RpcException(new global::Grpc.Core.Status(StatusCode.Internal, "The ledger failed to complete the call, and the failure is logged. Its outcome is not known: retry with the same request_id, which replays the call if it was applied and applies it once if not."));
        }
    }

    public static RpcException ToRpcException(Reason reason, string message, TimeSpan? retryAfter = null, IReadOnlyDictionary<string, string>? metadata = null) =>
        ToStatus(reason, message, retryAfter, metadata).ToRpcException();

    /// <summary>The google.rpc.Status of a refusal: its code, message, ErrorInfo (with what the refusal names in its
    /// metadata) and, for a refusal that passes, RetryInfo.</summary>
    public static Google.Rpc.Status ToStatus(Reason reason, string message, TimeSpan? retryAfter = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var info = new ErrorInfo { Reason = reason.Word(), Domain = Domain };
        foreach (var (key, value) in metadata ?? new Dictionary<string, string>())
        {
            info.Metadata.Add(key, value);
        }

        var status = new Google.Rpc.Status
        {
            Code = (int)reason.Status(),
            Message = message,
            Details = { Any.Pack(info) },
        };
        if (retryAfter is { } delay)
        {
            status.Details.Add(Any.Pack(new RetryInfo { RetryDelay = Duration.FromTimeSpan(delay) }));
        }

        return status;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Method} answered {Reason}: {Error}")]
    private static partial void LogStoreFailure(ILogger logger, string method, string reason, string error);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Method} answered INVALID_ARGUMENT for a value the database could not hold; a request check is missing or the server built the value")]
    private static partial void LogDataException(ILogger logger, Exception exception, string method);

    [LoggerMessage(Level = LogLevel.Error, Message = "Unexpected failure in {Method}")]
    private static partial void LogUnexpected(ILogger logger, Exception exception, string method);
}
