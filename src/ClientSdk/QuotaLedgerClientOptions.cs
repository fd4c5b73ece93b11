using System.Security.Cryptography.X509Certificates;

namespace QuotaLedger.Client;

/// <summary>How a <see cref="QuotaLedgerClient"/> reaches the ledger and identifies itself.</summary>
public sealed class QuotaLedgerClientOptions
{
    /// <summary>The server's address: <c>https://...</c> in production, <c>http://127.0.0.1:5080</c> for the
    /// no-configuration development server.</summary>
    public Uri Address { get; set; } = new("http://127.0.0.1:5080");

    /// <summary>A client certificate (with its private key) for mutual TLS: the caller's USCC in its CN.</summary>
    public X509Certificate2? ClientCertificate { get; set; }

    /// <summary>Supplies a bearer token for each call, instead of (or besides) a client certificate. Tokens go over TLS
    /// only: with an <c>http://</c> address the client refuses to start unless <see cref="AllowTokensOverPlainHttpOnLoopback"/>
    /// is set and the address is a loopback one.</summary>
    public Func<CancellationToken, ValueTask<string>>? TokenProvider { get; set; }

    /// <summary>Lets bearer tokens go over plain HTTP to a loopback address (a local test server, a sidecar that adds
    /// TLS). Off by default: a token sent in clear text over a network is a token given away.</summary>
    public bool AllowTokensOverPlainHttpOnLoopback { get; set; }

    /// <summary>The CA the server's certificate chains to, when it is a private one (the development PKI, say).
    /// Unset, the machine's trusted roots decide.</summary>
    public X509Certificate2? TrustedServerCa { get; set; }

    /// <summary>How long one logical call may take, all its retries included. Default 30 seconds.</summary>
    public TimeSpan DefaultDeadline { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>When and how calls are retried.</summary>
    public QuotaLedgerRetryOptions Retry { get; set; } = new();

    /// <summary>The clock for deadlines and backoff. Default: the system clock.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Replaces the HTTP handler (for tests and proxies); the certificate options then do not apply.</summary>
    public HttpMessageHandler? HttpHandler { get; set; }
}

/// <summary>Retries: on UNAVAILABLE, on an attempt's deadline passing, and on RESOURCE_EXHAUSTED after the server's hint;
/// never on a business refusal. A mutating call keeps one request id across all its attempts, so a retry after a lost
/// response is applied once.</summary>
public sealed class QuotaLedgerRetryOptions
{
    /// <summary>Attempts per logical call, the first included. Default 5.</summary>
    public int MaxAttempts { get; set; } = 5;

    /// <summary>The first backoff; each next one doubles, up to <see cref="MaxBackoff"/>, with full jitter. Default 100 ms.</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest backoff. Default 5 seconds.</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The deadline of one attempt. Default 10 seconds.</summary>
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);
}
