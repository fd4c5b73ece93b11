using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;

namespace QuotaLedger.Client;

/// <summary>The transport a client's options ask for: the HTTP handler with its TLS settings, and the call credentials.
/// Used by a client that makes its own channel and by the gRPC client factory's registration alike.</summary>
internal static class ChannelSetup
{
    public static HttpMessageHandler CreateHandler(QuotaLedgerClientOptions options)
    {
        // Keep-alive pings find a connection that died without a word (a NAT or firewall that dropped it) instead of
        // leaving a call or a stream on it waiting forever.
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            KeepAlivePingDelay = TimeSpan.FromSeconds(30),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
        };
        var certificate = options.ClientCertificate
            ?? (options.ClientCertificateFile is { } file ? X509Certificate2.CreateFromPemFile(file, options.ClientCertificateKeyFile) : null);
        var ca = options.TrustedServerCa ?? (options.TrustedServerCaFile is { } caFile ? LoadCertificate(caFile) : null);
        if (certificate is not null || ca is not null)
        {
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificates = certificate is null ? null : new X509CertificateCollection { certificate },
                RemoteCertificateValidationCallback = ca is null ? null : (_, presented, sent, errors) => presented is not null && ChainsTo(ca, presented, sent, errors),
            };
        }

        return handler;
    }

    /// <summary>A certificate file, PEM or DER (.NET 8 has no X509CertificateLoader; its constructor reads both).</summary>
    private static X509Certificate2 LoadCertificate(string file) =>
#if NET9_0_OR_GREATER
        X509CertificateLoader.LoadCertificateFromFile(file);
#else
        new(file);
#endif

    /// <summary>The channel's reconnect backoff: gRPC's own (1 s growing to 120 s) fails every call at once while it
    /// waits, for up to two minutes after a long outage, however soon the ledger is back.</summary>
    public static void ApplyReconnect(GrpcChannelOptions channel, QuotaLedgerClientOptions options)
    {
        channel.InitialReconnectBackoff = options.Reconnect.InitialBackoff;
        channel.MaxReconnectBackoff = options.Reconnect.MaxBackoff;
    }

    /// <summary>Bearer tokens from <see cref="QuotaLedgerClientOptions.TokenProvider"/> on every call (over TLS, or plain
    /// HTTP to loopback when the options allow it; <see cref="QuotaLedgerClientOptions.Problems"/> checks which).</summary>
    public static void ApplyCredentials(GrpcChannelOptions channel, QuotaLedgerClientOptions options, Uri? address)
    {
        if (options.TokenProvider is not { } tokens)
        {
            return;
        }

        var callCredentials = CallCredentials.FromInterceptor(async (context, metadata) =>
            metadata.Add("authorization", "Bearer " + await tokens(context.CancellationToken)));
        var secure = address?.Scheme == Uri.UriSchemeHttps;
        channel.Credentials = secure
            ? ChannelCredentials.Create(new SslCredentials(), callCredentials)
            : ChannelCredentials.Create(ChannelCredentials.Insecure, callCredentials);
        channel.UnsafeUseInsecureChannelCallCredentials = !secure;
    }

    /// <summary>Whether the server's certificate chains to the private CA, through the intermediates the server sent.</summary>
    private static bool ChainsTo(X509Certificate2 ca, X509Certificate certificate, X509Chain? sent, SslPolicyErrors errors)
    {
        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        if (sent is not null)
        {
            foreach (var element in sent.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }

        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var server = new X509Certificate2(certificate);
        return chain.Build(server);
    }
}
