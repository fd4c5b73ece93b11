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
        Directory.CreateDirectory(directory);
        var ca = CreateCa();
        WritePem(directory, "ca", ca);
        WritePem(directory, "server", CreateServer(ca));

        using var tokenKey = CreateTokenKey();
        File.WriteAllText(Path.Combine(directory, "token-signing.pub.pem"), tokenKey.ExportSubjectPublicKeyInfoPem());
        File.WriteAllText(Path.Combine(directory, "token-signing.key"), tokenKey.ExportPkcs8PrivateKeyPem());

        (string Name, Role Role)[] callers = [("bureau", Role.Bureau), ("provider", Role.Provider), ("unit", Role.Unit), ("expert", Role.Expert)];
        foreach (var (name, role) in callers)
        {
            var uscc = RandomUscc();
            WritePem(directory, name, CreateCaller(ca, uscc, role));
            File.WriteAllText(Path.Combine(directory, $"{name}.jwt"),
                CreateToken(tokenKey, uscc, [role], DateTimeOffset.UtcNow, TimeSpan.FromDays(30)));
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
                },
            },
            Auth = new
            {
                TrustedClientCaFiles = new[] { Path.Combine(directory, "ca.pem") },
                Jwt = new { Issuer, Audience, SigningKeyFile = Path.Combine(directory, "token-signing.pub.pem") },
            },
        };
        var configFile = Path.Combine(directory, "quotaledger.secure.json");
        File.WriteAllText(configFile, JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"""

            Development PKI in {directory}. Run the server in secured mode:
              dotnet run --project src/Server -- --config-file {configFile}
            and call https://127.0.0.1:5443 trusting {Path.Combine(directory, "ca.pem")}, with a caller certificate
            (e.g. provider.pem + provider.key) or a bearer token (e.g. "authorization: Bearer $(cat {Path.Combine(directory, "provider.jwt")})").
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
        File.WriteAllText(Path.Combine(directory, $"{name}.pem"), certificate.ExportCertificatePem());
        var keyFile = Path.Combine(directory, $"{name}.key");
        File.WriteAllText(keyFile, certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    private static string RandomUscc()
    {
        const string alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";
        var body = "91510100" + new string(Enumerable.Range(0, 9).Select(_ => alphabet[RandomNumberGenerator.GetInt32(alphabet.Length)]).ToArray());
        return body + Uscc.CheckCharacter(body);
    }
}
