using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Security;

/// <summary>A development CA, a server certificate, caller certificates and bearer tokens, so the secured mode can be
/// tried in minutes: <c>dotnet run --project src/Server -- dev-pki [directory]</c>. Never for production.</summary>
public static class DevelopmentPki
{
    public const string Issuer = "quotaledger-dev";
    public const string Audience = "quotaledger";

    private static readonly Oid s_clientAuth = new("1.3.6.1.5.5.7.3.2");
    private static readonly Oid s_serverAuth = new("1.3.6.1.5.5.7.3.1");

    public static X509Certificate2 CreateCa(string name = "QuotaLedger Development CA")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        return request.CreateSelfSigned(now.AddDays(-1), now.AddYears(5));
    }

    public static X509Certificate2 CreateServer(X509Certificate2 ca, params string[] hosts)
    {
        var names = new SubjectAlternativeNameBuilder();
        foreach (var host in hosts.Length > 0 ? hosts : ["localhost", "127.0.0.1", "::1"])
        {
            if (System.Net.IPAddress.TryParse(host, out var ip))
            {
                names.AddIpAddress(ip);
            }
            else
            {
                names.AddDnsName(host);
            }
        }

        return Issue(ca, new X500DistinguishedName("CN=QuotaLedger development server"), s_serverAuth, names.Build());
    }

    /// <summary>A caller certificate: the USCC in the CN, one OU per role.</summary>
    public static X509Certificate2 CreateCaller(X509Certificate2 ca, string uscc, params Role[] roles)
    {
        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName("QuotaLedger development");
        foreach (var role in roles)
        {
            subject.AddOrganizationalUnitName(Caller.RoleName(role));
        }

        subject.AddCommonName(uscc);
        return Issue(ca, subject.Build(), s_clientAuth, extension: null);
    }

    public static ECDsa CreateTokenKey() => ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public static string CreateToken(ECDsa key, string uscc, IEnumerable<Role> roles, DateTimeOffset now, TimeSpan lifetime,
        string issuer = Issuer, string audience = Audience) =>
        new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = (now + lifetime).UtcDateTime,
            Claims = new Dictionary<string, object>
            {
                ["sub"] = uscc,
                ["roles"] = roles.Select(Caller.RoleName).ToArray(),
            },
            SigningCredentials = new SigningCredentials(new ECDsaSecurityKey(key), SecurityAlgorithms.EcdsaSha256),
        });

    /// <summary>Writes a whole development PKI and a configuration that runs the server in secured mode with it.</summary>
    public static int Run(string[] args)
    {
        var directory = Path.GetFullPath(args.FirstOrDefault() ?? ".dev-pki");
        CreatePrivateDirectory(directory);
        var ca = CreateCa();
        WritePem(directory, "ca", ca);
        WritePem(directory, "server", CreateServer(ca));

        using var tokenKey = CreateTokenKey();
        Write(directory, "token-signing.pub.pem", tokenKey.ExportSubjectPublicKeyInfoPem(), secret: false);
        Write(directory, "token-signing.key", tokenKey.ExportPkcs8PrivateKeyPem(), secret: true);

        // The checkpoint key signs the journal's checkpoints; keep it where the database cannot reach it.
        using var checkpointKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Write(directory, "checkpoint-signing.pub.pem", checkpointKey.ExportSubjectPublicKeyInfoPem(), secret: false);
        Write(directory, "checkpoint-signing.key", checkpointKey.ExportPkcs8PrivateKeyPem(), secret: true);

        (string Name, Role Role)[] callers = [("bureau", Role.Bureau), ("provider", Role.Provider), ("unit", Role.Unit), ("expert", Role.Expert)];
        foreach (var (name, role) in callers)
        {
            var uscc = RandomUscc();
            WritePem(directory, name, CreateCaller(ca, uscc, role));
            Write(directory, $"{name}.jwt", CreateToken(tokenKey, uscc, [role], DateTimeOffset.UtcNow, TimeSpan.FromDays(30)), secret: true);
            Console.WriteLine($"{name,-9} {uscc}  {name}.pem/{name}.key  {name}.jwt");
        }

        var config = new
        {
            Kestrel = new
            {
                Endpoints = new
                {
                    Grpc = new
                    {
                        Url = "https://127.0.0.1:5443",
                        Protocols = "Http2",
                        Certificate = new { Path = Path.Combine(directory, "server.pem"), KeyPath = Path.Combine(directory, "server.key") },
                    },
                    // The JSON API and the bureau's page over TLS (the plain development endpoint of
                    // appsettings.Development.json would be refused in secured mode): https://127.0.0.1:5444.
                    Web = new
                    {
                        Url = "https://127.0.0.1:5444",
                        Protocols = "Http1AndHttp2",
                        Certificate = new { Path = Path.Combine(directory, "server.pem"), KeyPath = Path.Combine(directory, "server.key") },
                    },
                },
            },
            Auth = new
            {
                TrustedClientCaFiles = new[] { Path.Combine(directory, "ca.pem") },
                Jwt = new { Issuer, Audience, SigningKeyFile = Path.Combine(directory, "token-signing.pub.pem") },
            },
            Checkpoints = new { SigningKeyFile = Path.Combine(directory, "checkpoint-signing.key") },
        };
        var configFile = Path.Combine(directory, "quotaledger.secure.json");
        Write(directory, Path.GetFileName(configFile), JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }), secret: false);
        Console.WriteLine($"""

            Development PKI in {directory}. Run the server in secured mode:
              dotnet run --project src/Server -- --config-file {configFile}
            and call https://127.0.0.1:5443 (gRPC) or https://127.0.0.1:5444 (JSON, and the bureau's page at /bureau/) trusting {Path.Combine(directory, "ca.pem")},
            with a caller certificate (e.g. provider.pem + provider.key) or a bearer token
            (e.g. "authorization: Bearer $(cat {Path.Combine(directory, "provider.jwt")})").
            """);
        return 0;
    }

    private static X509Certificate2 Issue(X509Certificate2 ca, X500DistinguishedName subject, Oid usage, X509Extension? extension)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([usage], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        if (extension is not null)
        {
            request.CertificateExtensions.Add(extension);
        }

        var now = DateTimeOffset.UtcNow;
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        using var issued = request.Create(ca, now.AddDays(-1), now.AddYears(2), serial);
        return issued.CopyWithPrivateKey(key);
    }

    private static void WritePem(string directory, string name, X509Certificate2 certificate)
    {
        Write(directory, $"{name}.pem", certificate.ExportCertificatePem(), secret: false);
        Write(directory, $"{name}.key", certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem(), secret: true);
    }

    /// <summary>The folder, readable by its owner only (0700), whether it is new or not.</summary>
    internal static void CreatePrivateDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(directory);
            return;
        }

        Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    /// <summary>Writes a file anew. A secret (a key, a token) is created 0600 before any of its content is written, so
    /// no other user can open it even for a moment; an old file of the name is removed first, whatever its mode was.</summary>
    internal static void Write(string directory, string name, string content, bool secret)
    {
        var path = Path.Combine(directory, name);
        File.Delete(path);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = secret
                ? UnixFileMode.UserRead | UnixFileMode.UserWrite
                : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        }

        using var stream = new FileStream(path, options);
        using var writer = new StreamWriter(stream);
        writer.Write(content);
    }

    private static string RandomUscc()
    {
        const string alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";
        var body = "91510100" + new string(Enumerable.Range(0, 9).Select(_ => alphabet[RandomNumberGenerator.GetInt32(alphabet.Length)]).ToArray());
        return body + Uscc.CheckCharacter(body);
    }
}
