using System.Security.Cryptography.X509Certificates;

namespace QuotaLedger.Client;

/// <summary>How a <see cref="QuotaLedgerClient"/> reaches the ledger and identifies itself.</summary>
public sealed class QuotaLedgerClientOptions
{
    /// <summary>The server's address (required unless <see cref="Addresses"/> names the servers; no default):
    /// <c>https://...</c> in production; a plain <c>http://</c> address only to a loopback server (the no-configuration
    /// development server is <c>http://127.0.0.1:5080</c>), or where <see cref="AllowPlaintext"/> says a sidecar or mesh
    /// adds the TLS.</summary>
    public Uri? Address { get; set; }

    /// <summary>Several servers on one database, to spread the load over (with or instead of <see cref="Address"/>,
    /// which is then one of them; each address under the same rules). Writes are routed by affinity, so that the writes
    /// that lock the same rows go to the same server, which coalesces them, instead of servers taking turns at the rows'
    /// locks: grants by the year (they all take the year's pool), deductions, releases and gifts by the grant's unit-year
    /// (learnt from the ledger's answers about the grant; until then by the grant). Reads go round-robin. Every client
    /// given the same servers, in any order and in any process, routes a key to the same one (a stable hash, not the
    /// process's). A server that cannot be connected to is passed over for a few seconds and its keys go to the next
    /// server in their order, with the call's retries. Routing never decides correctness, only contention: the ledger
    /// holds its invariants with PostgreSQL's row locks whichever server a call reaches.</summary>
    public IList<Uri> Addresses { get; set; } = [];

    /// <summary>Lets an <c>http://</c> address name a host other than loopback (a service mesh or sidecar that encrypts
    /// the hop), bearer tokens included. Off by default: calls to the ledger carry money and identities.</summary>
    public bool AllowPlaintext { get; set; }

    /// <summary>A PEM file with the client certificate, for configuration files (instead of <see cref="ClientCertificate"/>).</summary>
    public string? ClientCertificateFile { get; set; }

    /// <summary>The PEM file of the client certificate's private key (with <see cref="ClientCertificateFile"/>).</summary>
    public string? ClientCertificateKeyFile { get; set; }

    /// <summary>A PEM file with the CA the server's certificate chains to (instead of <see cref="TrustedServerCa"/>).</summary>
    public string? TrustedServerCaFile { get; set; }

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

    /// <summary>How long one logical call may take, all its retries included. Default 30 seconds. For one call that
    /// needs another deadline, use <see cref="IQuotaLedgerClient.WithDeadline"/>.</summary>
    public TimeSpan DefaultDeadline { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>When and how calls are retried.</summary>
    public QuotaLedgerRetryOptions Retry { get; set; } = new();

    /// <summary>How many items <c>DeductManyAsync</c> and <c>GrantManyAsync</c> send in one call (default 1,000; at most
    /// the server's <c>Deductions:MaxBulkItems</c>, 10,000 by default, and a call's message at most its 1 MiB limit).</summary>
    public int BulkItemsPerCall { get; set; } = 1_000;

    /// <summary>How the client connects again after the ledger could not be reached (a restart, a failover), and how
    /// long a call waits for it.</summary>
    public QuotaLedgerReconnectOptions Reconnect { get; set; } = new();

    /// <summary>How long <see cref="ILedgerClient.WatchAsync"/> keeps reconnecting, apart from unary calls.</summary>
    public QuotaLedgerWatchOptions Watch { get; set; } = new();

    /// <summary>The clock for deadlines and backoff. Default: the system clock.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Replaces the HTTP handler (for tests and proxies); the certificate options then do not apply. The client
    /// that uses it disposes it: give each client its own.</summary>
    public HttpMessageHandler? HttpHandler { get; set; }

    /// <summary>What is wrong with these options, one line each; empty when they are usable.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (Address is null && Addresses.Count == 0)
        {
            problems.Add("Address is required: the ledger's https:// address (http://127.0.0.1:5080 for the local development server).");
        }

        foreach (var address in (Address is null ? [] : new[] { Address }).Concat(Addresses))
        {
            if (AddressProblem(address) is { } problem)
            {
                problems.Add(problem);
            }
        }

        if (HttpHandler is not null && Addresses.Count > 0 && Servers().Count > 1)
        {
            problems.Add("Addresses: HttpHandler serves one server, and with several the client makes a handler for each: set HttpHandler with one Address only.");
        }

        if (DefaultDeadline <= TimeSpan.Zero || DefaultDeadline > MaxDeadline)
        {
            problems.Add($"DefaultDeadline must be positive and at most {MaxDeadline} (it is {DefaultDeadline}).");
        }

        if (ClientCertificateFile is not null != ClientCertificateKeyFile is not null)
        {
            problems.Add("ClientCertificateFile and ClientCertificateKeyFile go together.");
        }

        foreach (var (name, file) in new[] { ("ClientCertificateFile", ClientCertificateFile), ("ClientCertificateKeyFile", ClientCertificateKeyFile), ("TrustedServerCaFile", TrustedServerCaFile) })
        {
            if (file is not null && !File.Exists(file))
            {
                problems.Add($"{name} '{file}' does not exist.");
            }
        }

        if (BulkItemsPerCall is < 1 or > 10_000)
        {
            problems.Add($"BulkItemsPerCall must be 1 to 10000 (it is {BulkItemsPerCall}).");
        }

        problems.AddRange(Retry.Problems());
        problems.AddRange(Reconnect.Problems());
        problems.AddRange(Watch.Problems());
        return problems;
    }

    /// <summary>What is wrong with one server's address, if anything.</summary>
    private string? AddressProblem(Uri? address)
    {
        if (address is null || !address.IsAbsoluteUri || (address.Scheme != Uri.UriSchemeHttps && address.Scheme != Uri.UriSchemeHttp))
        {
            return $"Address '{address}' must be an absolute http:// or https:// address.";
        }

        if (address.Scheme == Uri.UriSchemeHttp && !address.IsLoopback && !AllowPlaintext)
        {
            return $"Address '{address}' is plain HTTP to a host that is not loopback: use https://, or set AllowPlaintext when a sidecar or mesh encrypts the hop.";
        }

        if (TokenProvider is not null && address.Scheme != Uri.UriSchemeHttps && !AllowPlaintext && !(AllowTokensOverPlainHttpOnLoopback && address.IsLoopback))
        {
            return $"A bearer token would go in clear text to {address}: use an https:// address, or for a loopback test server set AllowTokensOverPlainHttpOnLoopback.";
        }

        return null;
    }

    /// <summary>The servers: <see cref="Address"/> and <see cref="Addresses"/>, each once.</summary>
    internal IReadOnlyList<Uri> Servers() =>
        [.. (Address is null ? [] : new[] { Address }).Concat(Addresses).Where(a => a is not null && a.IsAbsoluteUri).DistinctBy(a => a.AbsoluteUri)];

    /// <summary>The longest deadline a call may be given: a day.</summary>
    public static readonly TimeSpan MaxDeadline = TimeSpan.FromDays(1);

    internal QuotaLedgerClientOptions With(TimeSpan deadline)
    {
        // A longer deadline than an attempt's timeout is a call that may take long: its attempts may take as long.
        var copy = (QuotaLedgerClientOptions)MemberwiseClone();
        copy.DefaultDeadline = deadline;
        copy.Retry = new QuotaLedgerRetryOptions
        {
            MaxAttempts = Retry.MaxAttempts, InitialBackoff = Retry.InitialBackoff, MaxBackoff = Retry.MaxBackoff,
            AttemptTimeout = deadline > Retry.AttemptTimeout ? deadline : Retry.AttemptTimeout,
        };
        return copy;
    }
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

    internal IEnumerable<string> Problems()
    {
        if (MaxAttempts < 1)
        {
            yield return $"Retry:MaxAttempts must be at least 1 (it is {MaxAttempts}).";
        }

        if (InitialBackoff <= TimeSpan.Zero || MaxBackoff < InitialBackoff)
        {
            yield return $"Retry:InitialBackoff must be positive and at most Retry:MaxBackoff (they are {InitialBackoff} and {MaxBackoff}).";
        }

        if (AttemptTimeout <= TimeSpan.Zero || AttemptTimeout > QuotaLedgerClientOptions.MaxDeadline || MaxBackoff > QuotaLedgerClientOptions.MaxDeadline)
        {
            yield return $"Retry:AttemptTimeout must be positive, and it and Retry:MaxBackoff at most a day (they are {AttemptTimeout} and {MaxBackoff}).";
        }
    }
}

/// <summary>Connecting again after the ledger could not be reached. An attempt that could not connect (connection
/// refused, the channel still waiting to reconnect) applied nothing, so it is safe to make again at once, with the same
/// request id; such attempts are retried for up to <see cref="WaitForConnection"/> without counting against
/// <see cref="QuotaLedgerRetryOptions.MaxAttempts"/>.</summary>
public sealed class QuotaLedgerReconnectOptions
{
    /// <summary>The channel's first wait before it connects again after a failed connection; each next wait grows 1.6
    /// times (with 20% jitter) up to <see cref="MaxBackoff"/>. Default 0.2 s (gRPC's own default is 1 s).</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>The channel's longest wait between connection attempts: after an outage of any length, the client
    /// connects again at most this long (plus 20% jitter) after the ledger is back. Default 1 s (gRPC's own default is
    /// 120 s, which left calls failing for up to a quarter of a minute after a restart). Applies to the channel the
    /// client makes itself or through <c>AddQuotaLedgerClient</c>; a channel of your own keeps its settings.</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How long a call keeps trying while no connection to the ledger can be made, within its deadline, trying
    /// again every <see cref="InitialBackoff"/>. Longer than <see cref="MaxBackoff"/>, so that a call made once the
    /// ledger is back succeeds; a call made while it stays down fails after this long with
    /// <see cref="QuotaLedgerUnavailableException.OutcomeUnknown"/> false. Zero: attempts that could not connect count
    /// against <see cref="QuotaLedgerRetryOptions.MaxAttempts"/> like any other. Default 5 s.</summary>
    public TimeSpan WaitForConnection { get; set; } = TimeSpan.FromSeconds(5);

    internal IEnumerable<string> Problems()
    {
        if (InitialBackoff <= TimeSpan.Zero || MaxBackoff < InitialBackoff || MaxBackoff > TimeSpan.FromMinutes(5))
        {
            yield return $"Reconnect:InitialBackoff must be positive and at most Reconnect:MaxBackoff, and that at most 5 minutes (they are {InitialBackoff} and {MaxBackoff}).";
        }

        if (WaitForConnection < TimeSpan.Zero || WaitForConnection > QuotaLedgerClientOptions.MaxDeadline)
        {
            yield return $"Reconnect:WaitForConnection must be zero or more and at most a day (it is {WaitForConnection}).";
        }
    }
}

/// <summary>How long a watch keeps following the ledger through failures. Its allowance is its own: a watch is meant to
/// outlive a restart or a failover of the ledger (tens of seconds), which a unary call's retries are not.</summary>
public sealed class QuotaLedgerWatchOptions
{
    /// <summary>How long a watch keeps reconnecting, with backoff, while its stream fails with no event between the
    /// failures; an event starts the allowance again. After it, the watch throws
    /// <see cref="QuotaLedgerUnavailableException"/>. Default 5 minutes.</summary>
    public TimeSpan ReconnectFor { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>The first wait before a broken watch reconnects; each next one doubles, with full jitter, up to
    /// <see cref="MaxBackoff"/>. Default 0.1 s.</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest wait between a watch's reconnection attempts. Default 2 s.</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(2);

    internal IEnumerable<string> Problems()
    {
        if (ReconnectFor < TimeSpan.Zero || ReconnectFor > QuotaLedgerClientOptions.MaxDeadline)
        {
            yield return $"Watch:ReconnectFor must be zero or more and at most a day (it is {ReconnectFor}).";
        }

        if (InitialBackoff <= TimeSpan.Zero || MaxBackoff < InitialBackoff || MaxBackoff > TimeSpan.FromMinutes(5))
        {
            yield return $"Watch:InitialBackoff must be positive and at most Watch:MaxBackoff, and that at most 5 minutes (they are {InitialBackoff} and {MaxBackoff}).";
        }
    }
}
