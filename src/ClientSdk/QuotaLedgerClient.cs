using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace QuotaLedger.Client;

/// <summary>The QuotaLedger client: every call of the ledger's API as an async method taking and returning .NET types.
/// Thread-safe; create one per process (or register it with <c>AddQuotaLedgerClient</c>) and reuse it.
/// Refusals throw <see cref="QuotaLedgerException"/>; no definite answer throws <see cref="QuotaLedgerUnavailableException"/>
/// (with the request id to retry with); the caller's cancellation throws <see cref="OperationCanceledException"/>.</summary>
public sealed partial class QuotaLedgerClient : IQuotaLedgerClient, IDisposable
{
    private readonly QuotaLedgerClientOptions _options;
    private readonly GrpcChannel[] _ownedChannels;
    private readonly ILogger _logger;
    private readonly ClientMetrics _metrics;
    private readonly string _serverAddress;
    private readonly int _serverPort;
    private readonly V1.AdminService.AdminServiceClient _admin;
    private readonly V1.RegistryService.RegistryServiceClient _registry;
    private readonly V1.LedgerService.LedgerServiceClient _ledger;
    private readonly V1.RedemptionService.RedemptionServiceClient _redemption;
    private readonly V1.AlertService.AlertServiceClient _alerts;

    /// <summary>Creates a client and its own channel.</summary>
    /// <param name="options">Address, credentials, deadline and retries; checked here (see <see cref="QuotaLedgerClientOptions.Problems"/>).</param>
    public QuotaLedgerClient(QuotaLedgerClientOptions options)
        : this(options, loggerFactory: null, meterFactory: null)
    {
    }

    /// <summary>Creates a client and its own channel, logging and measuring through the given factories.</summary>
    /// <param name="options">Address, credentials, deadline and retries; checked here.</param>
    /// <param name="loggerFactory">Where the client logs (retries, refusals); none when null.</param>
    /// <param name="meterFactory">Makes the client's meter; a shared one when null.</param>
    public QuotaLedgerClient(QuotaLedgerClientOptions options, ILoggerFactory? loggerFactory, IMeterFactory? meterFactory)
        : this(Connect(options, loggerFactory), options, loggerFactory, meterFactory)
    {
    }

    /// <summary>Creates a client over a call invoker made elsewhere (a channel of your own, the gRPC client factory, an
    /// interceptor chain). The client does not own it: disposing the client leaves it alone.</summary>
    /// <param name="callInvoker">Carries the calls.</param>
    /// <param name="options">Deadline and retries (the address and credentials are the invoker's).</param>
    /// <param name="loggerFactory">Where the client logs; none when null.</param>
    /// <param name="meterFactory">Makes the client's meter; a shared one when null.</param>
    public QuotaLedgerClient(CallInvoker callInvoker, QuotaLedgerClientOptions options, ILoggerFactory? loggerFactory = null, IMeterFactory? meterFactory = null)
        : this(callInvoker, owned: [], options, loggerFactory, meterFactory)
    {
    }

    private QuotaLedgerClient((CallInvoker Invoker, GrpcChannel[] Channels) connection, QuotaLedgerClientOptions options, ILoggerFactory? loggerFactory,
        IMeterFactory? meterFactory)
        : this(connection.Invoker, connection.Channels, options, loggerFactory, meterFactory)
    {
    }

    private QuotaLedgerClient(CallInvoker invoker, GrpcChannel[] owned, QuotaLedgerClientOptions options, ILoggerFactory? loggerFactory, IMeterFactory? meterFactory)
    {
        ThrowIfUnusable(options, needsAddress: owned.Length > 0);
        _options = options;
        _ownedChannels = owned;
        _logger = (ILogger?)loggerFactory?.CreateLogger<QuotaLedgerClient>() ?? NullLogger.Instance;
        _metrics = new ClientMetrics(meterFactory?.Create(QuotaLedgerTelemetry.Name, QuotaLedgerTelemetry.Version) ?? QuotaLedgerTelemetry.SharedMeter);
        _serverAddress = options.Servers().FirstOrDefault()?.Host ?? "";
        _serverPort = options.Servers().FirstOrDefault()?.Port ?? 0;
        _admin = new V1.AdminService.AdminServiceClient(invoker);
        _registry = new V1.RegistryService.RegistryServiceClient(invoker);
        _ledger = new V1.LedgerService.LedgerServiceClient(invoker);
        _redemption = new V1.RedemptionService.RedemptionServiceClient(invoker);
        _alerts = new V1.AlertService.AlertServiceClient(invoker);
    }

    /// <summary>A view of this client whose calls take another deadline; it shares the channel (dispose only the original).</summary>
    private QuotaLedgerClient(QuotaLedgerClient original, QuotaLedgerClientOptions options)
    {
        _options = options;
        _ownedChannels = [];
        _logger = original._logger;
        _metrics = original._metrics;
        _serverAddress = original._serverAddress;
        _serverPort = original._serverPort;
        _admin = original._admin;
        _registry = original._registry;
        _ledger = original._ledger;
        _redemption = original._redemption;
        _alerts = original._alerts;
    }

    /// <summary>A fresh request id, as the client makes one for each logical call that is not given one.</summary>
    public static string NewRequestId() => Guid.NewGuid().ToString("N");

    /// <inheritdoc />
    public IQuotaLedgerClient WithDeadline(TimeSpan deadline) =>
        deadline > TimeSpan.Zero && deadline <= QuotaLedgerClientOptions.MaxDeadline
            ? new QuotaLedgerClient(this, _options.With(deadline))
            : throw new ArgumentOutOfRangeException(nameof(deadline), deadline, "A call's deadline must be positive, and at most a day.");

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var channel in _ownedChannels)
        {
            channel.Dispose();
        }
    }

    private static void ThrowIfUnusable(QuotaLedgerClientOptions options, bool needsAddress)
    {
        var problems = options.Problems().Where(p => needsAddress || !p.StartsWith("Address", StringComparison.Ordinal)).ToList();
        if (problems.Count > 0)
        {
            throw new InvalidOperationException("The QuotaLedger client's options are not usable: " + string.Join(" ", problems));
        }
    }

    /// <summary>A channel to each server of the options; with several, the invoker that routes the calls among them.</summary>
    private static (CallInvoker Invoker, GrpcChannel[] Channels) Connect(QuotaLedgerClientOptions options, ILoggerFactory? loggerFactory)
    {
        ThrowIfUnusable(options, needsAddress: true);
        var servers = options.Servers();
        GrpcChannel[] channels = [.. servers.Select(address => CreateChannel(address, options, loggerFactory))];
        if (channels.Length == 1)
        {
            return (channels[0].CreateCallInvoker(), channels);
        }

        var routes = servers.Zip(channels, (address, channel) => (address, channel.CreateCallInvoker())).ToList();
        return (new RoutingCallInvoker(routes, options.TimeProvider, new GrantPlaces(RoutingCallInvoker.GrantsRemembered)), channels);
    }

    private static GrpcChannel CreateChannel(Uri address, QuotaLedgerClientOptions options, ILoggerFactory? loggerFactory)
    {
        var channelOptions = new GrpcChannelOptions { HttpHandler = options.HttpHandler ?? ChannelSetup.CreateHandler(options), DisposeHttpClient = true, LoggerFactory = loggerFactory };
        ChannelSetup.ApplyCredentials(channelOptions, options, address);
        ChannelSetup.ApplyReconnect(channelOptions, options);
        return GrpcChannel.ForAddress(address, channelOptions);
    }

    /// <summary>Runs one logical unary call: each attempt gets its own deadline within the call's; UNAVAILABLE, an
    /// attempt's deadline and RESOURCE_EXHAUSTED are retried with backoff (the request, request id included, is the
    /// same on every attempt). A refusal throws <see cref="QuotaLedgerException"/>, no definite answer
    /// <see cref="QuotaLedgerUnavailableException"/>, the caller's cancellation <see cref="OperationCanceledException"/>.</summary>
    private async Task<TResponse> CallAsync<TResponse>(Rpc rpc, string? requestId, Func<CallOptions, AsyncUnaryCall<TResponse>> call, CancellationToken cancellationToken)
    {
        // The budget is measured on the options' clock; the deadline handed to gRPC is on the system clock, which is
        // the one gRPC checks it against.
        var time = _options.TimeProvider;
        var started = time.GetTimestamp();
        TimeSpan Remaining() => _options.DefaultDeadline - time.GetElapsedTime(started);
        using var span = StartSpan(rpc, ActivityKind.Internal, requestId);
        var mayHaveApplied = false;
        // The attempts Retry:MaxAttempts counts (all but those that could not connect while the client waits for a
        // connection), and since when no connection could be made.
        var counted = 0;
        long? unreachableSince = null;
        for (var attempt = 1; ; attempt++)
        {
            var attemptDeadline = DateTime.UtcNow + Min(Remaining(), _options.Retry.AttemptTimeout);
            RpcException failure;
            using (var attemptSpan = StartSpan(rpc, ActivityKind.Client, requestId, attempt))
            {
                try
                {
                    var response = await call(new CallOptions(deadline: attemptDeadline, cancellationToken: cancellationToken));
                    End(attemptSpan, StatusCode.OK, "");
                    Finish(span, rpc, Outcomes.Ok, StatusCode.OK, "", attempt, time.GetElapsedTime(started));
                    return response;
                }
                catch (Exception error) when (cancellationToken.IsCancellationRequested && error is RpcException or OperationCanceledException)
                {
                    End(attemptSpan, StatusCode.Cancelled, "");
                    throw Canceled(span, rpc, requestId, attempt, time.GetElapsedTime(started), error, cancellationToken);
                }
                catch (RpcException error)
                {
                    failure = error;
                    End(attemptSpan, error.StatusCode, Word(error));
                }
            }

            if (IsRefusal(failure.StatusCode) && !(mayHaveApplied && AnsweredBeforeTheRequestId(failure.StatusCode)))
            {
                ClientLog.Refused(_logger, rpc.FullName, Word(failure), failure.StatusCode, requestId, failure.Status.Detail);
                Finish(span, rpc, Outcomes.Refused, failure.StatusCode, Word(failure), attempt, time.GetElapsedTime(started));
                throw new QuotaLedgerException(failure, requestId);
            }

            mayHaveApplied |= requestId is not null && MayHaveApplied(failure);
            TimeSpan? delay = null;
            if (NeverConnected(failure))
            {
                // Nothing was sent: wait for the channel to connect again, without spending the attempts of calls that
                // reached the ledger.
                unreachableSince ??= time.GetTimestamp();
                if (time.GetElapsedTime(unreachableSince.Value) < _options.Reconnect.WaitForConnection)
                {
                    delay = Fits(ConnectionPause(), Remaining());
                }
            }

            if (delay is null && !IsRefusal(failure.StatusCode) && ++counted < _options.Retry.MaxAttempts)
            {
                delay = RetryDelay(failure, counted, Remaining());
            }

            if (delay is { } wait)
            {
                ClientLog.Retrying(_logger, rpc.FullName, attempt, failure.StatusCode, Word(failure), wait, requestId);
                _metrics.Retry(rpc, failure.StatusCode);
                try
                {
                    await Task.Delay(wait, time, cancellationToken);
                }
                catch (OperationCanceledException canceled)
                {
                    throw Canceled(span, rpc, requestId, attempt, time.GetElapsedTime(started), canceled, cancellationToken);
                }

                continue;
            }

            ClientLog.GaveUp(_logger, rpc.FullName, attempt, failure.StatusCode, Word(failure), mayHaveApplied, requestId);
            Finish(span, rpc, Outcomes.Unavailable, failure.StatusCode, Word(failure), attempt, time.GetElapsedTime(started));
            throw Unavailable(failure, requestId, mayHaveApplied, attempt);
        }
    }

    /// <summary>Refusals the server gives before it looks the request id up (the caller's credentials and role, the
    /// request's shape): after an earlier attempt that may have been applied, such a refusal says nothing about that
    /// attempt, so the call's outcome stays unknown. The others (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION) come
    /// after the request id is claimed, so they are the recorded outcome of the first attempt that reached the ledger.</summary>
    private static bool AnsweredBeforeTheRequestId(StatusCode status) => status is StatusCode.Unauthenticated or StatusCode.PermissionDenied
        or StatusCode.InvalidArgument or StatusCode.OutOfRange or StatusCode.Unimplemented;

    /// <summary>A definite refusal: the server judged the request (or the caller) and said no.</summary>
    private static bool IsRefusal(StatusCode status) => status is StatusCode.InvalidArgument or StatusCode.NotFound or StatusCode.AlreadyExists
        or StatusCode.PermissionDenied or StatusCode.Unauthenticated or StatusCode.FailedPrecondition or StatusCode.OutOfRange or StatusCode.Unimplemented;

    /// <summary>Whether an attempt that failed so may have been applied: everything but an admission refusal (OVERLOADED,
    /// RATE_LIMITED) and a connection that was never made.</summary>
    private static bool MayHaveApplied(RpcException error) => error.StatusCode switch
    {
        StatusCode.ResourceExhausted => false,
        StatusCode.Unavailable when LedgerReasons.Parse(Word(error)) == LedgerReason.Overloaded => false,
        _ => !NeverConnected(error),
    };

    /// <summary>Whether the attempt failed before any connection to the ledger carried it, so nothing was sent. Two ways
    /// Grpc.Net.Client says so: its load balancer (used over a <see cref="SocketsHttpHandler"/>) fails the pick while it
    /// cannot connect, "Error connecting to subchannel." with the socket's error (connection refused, host unreachable),
    /// at once for every call while it waits to connect again; and a handler without the balancer fails to open a
    /// connection with <see cref="HttpRequestError.ConnectionError"/>. A failure on a connection already made (reset, the
    /// server killed mid-call) is an <see cref="IOException"/> or an HTTP/2 error instead: that attempt may have been
    /// applied.</summary>
    internal static bool NeverConnected(RpcException error) => error.StatusCode == StatusCode.Unavailable
        && error.Status.DebugException is System.Net.Sockets.SocketException or HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError };

    /// <summary>The wait before trying again to connect: about <see cref="QuotaLedgerReconnectOptions.InitialBackoff"/>,
    /// jittered so that many clients do not try in step.</summary>
    private TimeSpan ConnectionPause() =>
        TimeSpan.FromMilliseconds(_options.Reconnect.InitialBackoff.TotalMilliseconds * RandomNumberGenerator.GetInt32(5_000, 10_001) / 10_000d);

    /// <summary>The wait, when the call's deadline leaves the attempt after it at least <see cref="s_leastAttempt"/>.</summary>
    private static TimeSpan? Fits(TimeSpan wait, TimeSpan remaining) => wait + s_leastAttempt < remaining ? wait : null;

    private static QuotaLedgerUnavailableException Unavailable(RpcException error, string? requestId, bool mayHaveApplied, int attempts)
    {
        var reason = LedgerReasons.Parse(Word(error));
        var said = error.Status.Detail.Length > 0 ? error.Status.Detail : error.StatusCode.ToString();
        var message = requestId is null
            ? $"The ledger gave no answer after {attempts} attempt(s): {said}"
            : mayHaveApplied
                ? $"The outcome is not known after {attempts} attempt(s) ({said}); retry later with request id {requestId}: it is applied at most once."
                : $"Nothing was applied after {attempts} attempt(s) ({said}); retry later, with request id {requestId} or a new one.";
        return new QuotaLedgerUnavailableException(message, requestId, mayHaveApplied, attempts, error.StatusCode, reason, error);
    }

    private OperationCanceledException Canceled(Activity? span, Rpc rpc, string? requestId, int attempts, TimeSpan elapsed, Exception error, CancellationToken token)
    {
        ClientLog.Canceled(_logger, rpc.FullName, attempts, requestId);
        Finish(span, rpc, Outcomes.Canceled, StatusCode.Cancelled, "", attempts, elapsed);
        var canceled = new OperationCanceledException(
            requestId is null ? $"{rpc.FullName} was canceled." : $"{rpc.FullName} was canceled; it may or may not have been applied: retry with request id {requestId} to know.",
            error, token);
        canceled.Data["QuotaLedger.RequestId"] = requestId;
        return canceled;
    }

    private static string Word(RpcException error) => error.GetRpcStatus()?.GetDetail<ErrorInfo>()?.Reason ?? "";

    private Activity? StartSpan(Rpc rpc, ActivityKind kind, string? requestId, int attempt = 0, Activity? parent = null)
    {
        // A stream's spans name their parent: between the items of an async stream, Activity.Current is the reader's.
        var span = parent is null
            ? QuotaLedgerTelemetry.Source.StartActivity(rpc.FullName, kind)
            : QuotaLedgerTelemetry.Source.StartActivity(rpc.FullName, kind, parent.Context);
        if (span is null)
        {
            return null;
        }

        span.SetTag("rpc.system", "grpc");
        span.SetTag("rpc.service", rpc.Service);
        span.SetTag("rpc.method", rpc.Method);
        span.SetTag("quotaledger.request_id", requestId);
        if (kind == ActivityKind.Client)
        {
            span.SetTag("server.address", _serverAddress);
            span.SetTag("server.port", _serverPort);
            span.SetTag("quotaledger.attempt", attempt);
        }

        return span;
    }

    private static void End(Activity? span, StatusCode status, string reason)
    {
        if (span is null)
        {
            return;
        }

        span.SetTag("rpc.grpc.status_code", (int)status);
        if (reason.Length > 0)
        {
            span.SetTag("quotaledger.reason", reason);
        }

        if (status != StatusCode.OK)
        {
            span.SetTag("error.type", status.ToString());
            span.SetStatus(ActivityStatusCode.Error, status.ToString());
        }
    }

    private void Finish(Activity? span, Rpc rpc, string outcome, StatusCode status, string reason, int attempts, TimeSpan elapsed)
    {
        _metrics.Completed(rpc, outcome, status, reason, elapsed);
        End(span, status, reason);
        span?.SetTag("quotaledger.outcome", outcome);
        span?.SetTag("quotaledger.attempts", attempts);
    }

    /// <summary>The wait before the next attempt, or null when the error is not retried or the call's deadline would
    /// leave the next attempt less than <see cref="s_leastAttempt"/>.</summary>
    private TimeSpan? RetryDelay(RpcException error, int attempt, TimeSpan remaining)
    {
        TimeSpan? delay = error.StatusCode switch
        {
            StatusCode.Unavailable => Backoff(attempt),
            StatusCode.DeadlineExceeded => Backoff(attempt),
            StatusCode.ResourceExhausted when error.GetRpcStatus()?.GetDetail<RetryInfo>()?.RetryDelay is { } hint =>
                hint.ToTimeSpan() + (Backoff(1) / 2),
            _ => null,
        };
        return delay is { } wait ? Fits(wait, remaining) : null;
    }

    /// <summary>Exponential backoff with full jitter.</summary>
    private TimeSpan Backoff(int attempt)
    {
        var ceiling = Math.Min(_options.Retry.MaxBackoff.TotalMilliseconds, _options.Retry.InitialBackoff.TotalMilliseconds * Math.Pow(2, attempt - 1));
        return TimeSpan.FromMilliseconds(ceiling * RandomNumberGenerator.GetInt32(1_000, 10_001) / 10_000d);
    }

    private static readonly TimeSpan s_leastAttempt = TimeSpan.FromMilliseconds(100);

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a <= b ? a : b;

    /// <inheritdoc />
    public async IAsyncEnumerable<JournalEntryInfo> ListEntriesAsync(EntryFilter? filter = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var entry in StreamEntriesAsync(Map.ToRequest(filter ?? new EntryFilter()), cancellationToken))
        {
            yield return Map.From(entry);
        }
    }

    /// <summary>Streams the entries a request asks for, resuming after the last one received (and for what is left of
    /// its page size) when the stream breaks off with UNAVAILABLE.</summary>
    private async IAsyncEnumerable<V1.JournalEntry> StreamEntriesAsync(V1.ListEntriesRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var limited = request.PageSize > 0;
        var time = _options.TimeProvider;
        var started = time.GetTimestamp();
        // One span for the listing, a client span for each stream it opens (as for a unary call and its attempts).
        using var span = StartSpan(s_listEntries, ActivityKind.Internal, requestId: null);
        for (var attempt = 1; ; attempt++)
        {
            var wait = TimeSpan.Zero;
            using (var streamSpan = StartSpan(s_listEntries, ActivityKind.Client, requestId: null, attempt, span))
            {
                using var call = _ledger.ListEntries(request, cancellationToken: cancellationToken);
                while (true)
                {
                    // A page's last entry ends the listing without reading on (the server may not end the stream first).
                    V1.JournalEntry? current = null;
                    try
                    {
                        if (!(limited && request.PageSize == 0) && await call.ResponseStream.MoveNext(cancellationToken))
                        {
                            current = call.ResponseStream.Current;
                        }
                    }
                    catch (RpcException error) when (!cancellationToken.IsCancellationRequested && error.StatusCode == StatusCode.Unavailable
                        && attempt < _options.Retry.MaxAttempts)
                    {
                        End(streamSpan, error.StatusCode, Word(error));
                        wait = Backoff(attempt);
                        ClientLog.Retrying(_logger, s_listEntries.FullName, attempt, error.StatusCode, Word(error), wait, null);
                        _metrics.Retry(s_listEntries, error.StatusCode);
                        break;
                    }
                    catch (RpcException error)
                    {
                        var failure = StreamFailure(s_listEntries, error, attempt, cancellationToken);
                        var outcome = failure switch { OperationCanceledException => Outcomes.Canceled, QuotaLedgerException => Outcomes.Refused, _ => Outcomes.Unavailable };
                        End(streamSpan, error.StatusCode, Word(error));
                        Finish(span, s_listEntries, outcome, error.StatusCode, Word(error), attempt, time.GetElapsedTime(started));
                        throw failure;
                    }

                    if (current is null)
                    {
                        End(streamSpan, StatusCode.OK, "");
                        Finish(span, s_listEntries, Outcomes.Ok, StatusCode.OK, "", attempt, time.GetElapsedTime(started));
                        yield break;
                    }

                    // In commit order, by cursor (which never skips); in entry-id order, by id.
                    if (current.Cursor.Length > 0)
                    {
                        request.AfterCursor = current.Cursor;
                    }
                    else
                    {
                        request.AfterEntryId = current.EntryId;
                    }

                    if (limited)
                    {
                        request.PageSize--;
                    }

                    yield return current;
                }
            }

            await Task.Delay(wait, time, cancellationToken);
        }
    }

    /// <summary>What a broken stream throws: the caller's cancellation, a refusal, or no definite answer.</summary>
    private Exception StreamFailure(Rpc rpc, RpcException error, int attempts, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return new OperationCanceledException($"{rpc.FullName} was canceled.", error, cancellationToken);
        }

        if (IsRefusal(error.StatusCode))
        {
            ClientLog.Refused(_logger, rpc.FullName, Word(error), error.StatusCode, null, error.Status.Detail);
            return new QuotaLedgerException(error, requestId: null);
        }

        ClientLog.GaveUp(_logger, rpc.FullName, attempts, error.StatusCode, Word(error), false, null);
        return Unavailable(error, requestId: null, mayHaveApplied: false, attempts);
    }

    internal static Timestamp Stamp(DateTimeOffset value) => Timestamp.FromDateTimeOffset(value);
}
