namespace QuotaLedger.Server.Security;

/// <summary>The <c>Auth</c> configuration section. Nothing is trusted by default: with neither client-certificate
/// anchors nor a token issuer configured, the server runs in development mode, on loopback only.</summary>
public sealed class AuthOptions : ICheckedSettings
{
    /// <summary>PEM files of the CAs whose client certificates are accepted. A caller certificate names its USCC in the
    /// subject's CN and its roles (bureau, provider, unit, expert) in OU attributes.</summary>
    public List<string> TrustedClientCaFiles { get; set; } = [];

    /// <summary>CRL files (PEM or DER) of those CAs: a client certificate they list is refused.</summary>
    public List<string> RevocationListFiles { get; set; } = [];

    public JwtIssuerOptions? Jwt { get; set; }

    public bool Configured => TrustedClientCaFiles.Count > 0 || Jwt is not null;

    public IEnumerable<string> Problems()
    {
        if (Jwt is { } jwt && (string.IsNullOrWhiteSpace(jwt.Issuer) || string.IsNullOrWhiteSpace(jwt.Audience) || string.IsNullOrWhiteSpace(jwt.SigningKeyFile)))
        {
            yield return "Jwt needs Issuer, Audience and SigningKeyFile.";
        }

        if (RevocationListFiles.Count > 0 && TrustedClientCaFiles.Count == 0)
        {
            yield return "RevocationListFiles is set without TrustedClientCaFiles.";
        }
    }
}

/// <summary>A trusted token issuer: tokens carry the caller's USCC in <c>sub</c> and its roles in <c>roles</c>.</summary>
public sealed class JwtIssuerOptions
{
    public string Issuer { get; set; } = "";
    public string Audience { get; set; } = "quotaledger";

    /// <summary>PEM file of the issuer's public key (EC or RSA).</summary>
    public string SigningKeyFile { get; set; } = "";
}

/// <summary>The mode <see cref="DevelopmentMode.Decide"/> chose before the server listens.</summary>
/// <param name="Development">Every caller on loopback acts as the development identity.</param>
public sealed record SecurityMode(bool Development);

/// <summary>The <c>RateLimits</c> section: a token bucket per caller.</summary>
public sealed class RateLimitOptions : ICheckedSettings
{
    public int PermitsPerSecond { get; set; } = 2_000;
    public int Burst { get; set; } = 4_000;

    /// <summary>Failed authentications an address may make a second, and at once, before it is turned away.</summary>
    public int FailedAuthenticationsPerSecond { get; set; } = 5;
    public int FailedAuthenticationBurst { get; set; } = 20;

    public IEnumerable<string> Problems() =>
        Settings.Range(nameof(PermitsPerSecond), PermitsPerSecond, 1, 1_000_000)
            .Concat(Settings.Range(nameof(Burst), Burst, 1, 1_000_000))
            .Concat(Settings.Range(nameof(FailedAuthenticationsPerSecond), FailedAuthenticationsPerSecond, 1, 1_000_000))
            .Concat(Settings.Range(nameof(FailedAuthenticationBurst), FailedAuthenticationBurst, 1, 1_000_000));
}
