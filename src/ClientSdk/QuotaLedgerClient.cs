using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Grpc.Net.Client;

namespace QuotaLedger.Client;

/// <summary>The QuotaLedger client: every call of the ledger's API as an async method taking and returning .NET types.
/// Thread-safe; create one per process (or register it with <c>AddQuotaLedgerClient</c>) and reuse it.
/// Refusals throw <see cref="QuotaLedgerException"/> with a typed <see cref="LedgerReason"/>.</summary>
public sealed partial class QuotaLedgerClient : IDisposable
{
    private readonly QuotaLedgerClientOptions _options;
    private readonly GrpcChannel _channel;
    private readonly V1.AdminService.AdminServiceClient _admin;
    private readonly V1.RegistryService.RegistryServiceClient _registry;
    private readonly V1.LedgerService.LedgerServiceClient _ledger;
    private readonly V1.RedemptionService.RedemptionServiceClient _redemption;

    /// <summary>Creates a client and its channel.</summary>
    /// <param name="options">Address, credentials, deadline and retries.</param>
    public QuotaLedgerClient(QuotaLedgerClientOptions options)
    {
        _options = options;
        var channelOptions = new GrpcChannelOptions { HttpHandler = options.HttpHandler ?? CreateHandler(options), DisposeHttpClient = true };
        if (options.TokenProvider is { } tokens)
        {
            if (options.Address.Scheme != Uri.UriSchemeHttps && !(options.AllowTokensOverPlainHttpOnLoopback && options.Address.IsLoopback))
            {
                throw new InvalidOperationException(
                    $"A bearer token would go in clear text to {options.Address}: use an https:// address, or for a loopback test server set " +
                    $"{nameof(QuotaLedgerClientOptions.AllowTokensOverPlainHttpOnLoopback)}.");
            }

            var callCredentials = CallCredentials.FromInterceptor(async (context, metadata) =>
                metadata.Add("authorization", "Bearer " + await tokens(context.CancellationToken)));
            channelOptions.Credentials = options.Address.Scheme == Uri.UriSchemeHttps
                ? ChannelCredentials.Create(new SslCredentials(), callCredentials)
                : ChannelCredentials.Create(ChannelCredentials.Insecure, callCredentials);
            channelOptions.UnsafeUseInsecureChannelCallCredentials = options.Address.Scheme != Uri.UriSchemeHttps;
        }

        _channel = GrpcChannel.ForAddress(options.Address, channelOptions);
        _admin = new V1.AdminService.AdminServiceClient(_channel);
        _registry = new V1.RegistryService.RegistryServiceClient(_channel);
        _ledger = new V1.LedgerService.LedgerServiceClient(_channel);
        _redemption = new V1.RedemptionService.RedemptionServiceClient(_channel);
    }

    /// <summary>A fresh request id, as the client makes one for each logical call that is not given one.</summary>
    public static string NewRequestId() => Guid.NewGuid().ToString("N");

    /// <inheritdoc />
    public void Dispose() => _channel.Dispose();

    /// <summary>Runs one logical unary call: each attempt gets its own deadline within the call's; UNAVAILABLE, an
    /// attempt's deadline and RESOURCE_EXHAUSTED are retried with backoff (the request, request id included, is the
    /// same on every attempt); anything else surfaces as a <see cref="QuotaLedgerException"/>.</summary>
    private async Task<TResponse> CallAsync<TResponse>(Func<CallOptions, AsyncUnaryCall<TResponse>> call, CancellationToken cancellationToken)
    {
        var time = _options.TimeProvider;
        var deadline = time.GetUtcNow() + _options.DefaultDeadline;
        for (var attempt = 1; ; attempt++)
        {
            var now = time.GetUtcNow();
            var attemptDeadline = Min(deadline, now + _options.Retry.AttemptTimeout);
            try
            {
                return await call(new CallOptions(deadline: attemptDeadline.UtcDateTime, cancellationToken: cancellationToken));
            }
            catch (RpcException error) when (!cancellationToken.IsCancellationRequested
                && attempt < _options.Retry.MaxAttempts
                && RetryDelay(error, attempt, deadline) is { } delay)
            {
                await Task.Delay(delay, time, cancellationToken);
            }
            catch (RpcException error)
            {
                throw new QuotaLedgerException(error);
            }
        }
    }

    private TimeSpan? RetryDelay(RpcException error, int attempt, DateTimeOffset deadline)
    {
        var remaining = deadline - _options.TimeProvider.GetUtcNow();
        TimeSpan? delay = error.StatusCode switch
        {
            StatusCode.Unavailable => Backoff(attempt),
            StatusCode.DeadlineExceeded => Backoff(attempt),
            StatusCode.ResourceExhausted when error.GetRpcStatus()?.GetDetail<RetryInfo>()?.RetryDelay is { } hint =>
                hint.ToTimeSpan() + (Backoff(1) / 2),
            _ => null,
        };
        return delay is { } wait && wait < remaining ? wait : null;
    }

    /// <summary>Exponential backoff with full jitter.</summary>
    private TimeSpan Backoff(int attempt)
    {
        var ceiling = Math.Min(_options.Retry.MaxBackoff.TotalMilliseconds, _options.Retry.InitialBackoff.TotalMilliseconds * Math.Pow(2, attempt - 1));
        return TimeSpan.FromMilliseconds(ceiling * RandomNumberGenerator.GetInt32(1_000, 10_001) / 10_000d);
    }

    private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a <= b ? a : b;

    private static HttpMessageHandler CreateHandler(QuotaLedgerClientOptions options)
    {
        var handler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true };
        if (options.ClientCertificate is not null || options.TrustedServerCa is not null)
        {
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificates = options.ClientCertificate is null ? null : new X509CertificateCollection { options.ClientCertificate },
                RemoteCertificateValidationCallback = options.TrustedServerCa is null
                    ? null
                    : (_, certificate, _, errors) => certificate is not null && ChainsTo(options.TrustedServerCa, certificate, errors),
            };
        }

        return handler;
    }

    private static bool ChainsTo(X509Certificate2 ca, X509Certificate certificate, SslPolicyErrors errors)
    {
        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var server = new X509Certificate2(certificate);
        return chain.Build(server);
    }

    /// <summary>Streams journal entries, resuming after the last one received if the stream breaks off.</summary>
    /// <param name="filter">Which entries.</param>
    /// <param name="cancellationToken">Stops the stream.</param>
    public async IAsyncEnumerable<JournalEntryInfo> ListEntriesAsync(EntryFilter? filter = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var request = Map.ToRequest(filter ?? new EntryFilter());
        for (var attempt = 1; ; attempt++)
        {
            using var call = _ledger.ListEntries(request, cancellationToken: cancellationToken);
            var stream = call.ResponseStream;
            while (true)
            {
                V1.JournalEntry current;
                try
                {
                    if (!await stream.MoveNext(cancellationToken))
                    {
                        yield break;
                    }

                    current = stream.Current;
                }
                catch (RpcException error) when (error.StatusCode == StatusCode.Unavailable && attempt < _options.Retry.MaxAttempts)
                {
                    break;
                }
                catch (RpcException error)
                {
                    throw new QuotaLedgerException(error);
                }

                request.AfterEntryId = current.EntryId;
                yield return Map.From(current);
            }

            await Task.Delay(Backoff(attempt), _options.TimeProvider, cancellationToken);
        }
    }

    internal static Timestamp Stamp(DateTimeOffset value) => Timestamp.FromDateTimeOffset(value);
}
