using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Authentication.Certificate;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.IdentityModel.Tokens;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Security;

/// <summary>Wires the two ways a caller proves who it is: a client certificate chained to a configured CA (mutual TLS),
/// or a bearer token from a configured issuer. Both end as the same principal: a USCC and roles.</summary>
public static class CallerAuthentication
{
    public const string Scheme = "Caller";

    public static void AddCallerAuthentication(this WebApplicationBuilder builder, AuthOptions options)
    {
        builder.Services.AddSingleton(options);

        // Kestrel asks for a client certificate on TLS endpoints but leaves its validation to the certificate
        // handler, which checks the chain against the configured anchors only (not the machine's store).
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureHttpsDefaults(https =>
        {
            https.ClientCertificateMode = ClientCertificateMode.AllowCertificate;
            https.AllowAnyClientCertificate();
        }));

        var authentication = builder.Services.AddAuthentication(Scheme)
            .AddPolicyScheme(Scheme, "Client certificate or bearer token", policy => policy.ForwardDefaultSelector = context =>
                context.Request.Headers.Authorization.Count > 0
                    ? JwtBearerDefaults.AuthenticationScheme
                    : CertificateAuthenticationDefaults.AuthenticationScheme);

        X509Certificate2Collection authorities;
        RevocationList revocations;
        try
        {
            authorities = [];
            foreach (var file in options.TrustedClientCaFiles)
            {
                authorities.AddRange(LoadPemCertificates(file));
            }

            revocations = new RevocationList(options.RevocationListFiles, authorities);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or InvalidOperationException)
        {
            throw new StartupRefusedException($"The Auth section names client CAs or revocation lists that cannot be used: {e.Message}");
        }

        authentication.AddCertificate(certificate =>
        {
            certificate.AllowedCertificateTypes = CertificateTypes.Chained;
            certificate.ChainTrustValidationMode = X509ChainTrustMode.CustomRootTrust;
            certificate.RevocationMode = X509RevocationMode.NoCheck;
            certificate.ValidateCertificateUse = true;
            certificate.CustomTrustStore.AddRange(authorities);

            certificate.Events = new CertificateAuthenticationEvents
            {
                OnCertificateValidated = context =>
                {
                    if (options.TrustedClientCaFiles.Count == 0)
                    {
                        context.Fail("No client certificate authority is trusted.");
                        return Task.CompletedTask;
                    }

                    if (revocations.IsRevoked(context.ClientCertificate))
                    {
                        context.Fail("The certificate is revoked.");
                        return Task.CompletedTask;
                    }

                    if (ReadSubject(context.ClientCertificate.SubjectName) is not { } subject)
                    {
                        context.Fail("The certificate's subject is not one CN holding a valid USCC with single-valued name parts.");
                        return Task.CompletedTask;
                    }

                    context.Principal = Caller.Principal(subject.Uscc, subject.Roles, context.Scheme.Name);
                    context.Success();
                    return Task.CompletedTask;
                },
            };
        });

        UseServerClockForTokens(builder.Services);
        authentication.AddJwtBearer(jwt =>
        {
            jwt.MapInboundClaims = false;
            if (options.Jwt is not { } issuer)
            {
                // No issuer is trusted: every token fails validation.
                jwt.TokenValidationParameters = new TokenValidationParameters { ValidateIssuer = true, ValidIssuers = [] };
                return;
            }

            var key = LoadPublicKey(issuer.SigningKeyFile);
            jwt.TokenValidationParameters = new TokenValidationParameters
            {
                ValidIssuer = issuer.Issuer,
                ValidAudience = issuer.Audience,
                IssuerSigningKey = key,
                // Pinned to the issuer key's own algorithm: no "none", no HMAC with the public key as secret.
                ValidAlgorithms = key is ECDsaSecurityKey
                    ? [SecurityAlgorithms.EcdsaSha256, SecurityAlgorithms.EcdsaSha384, SecurityAlgorithms.EcdsaSha512]
                    : [SecurityAlgorithms.RsaSha256, SecurityAlgorithms.RsaSha384, SecurityAlgorithms.RsaSha512],
                RequireSignedTokens = true,
                RequireExpirationTime = true,
                ValidateIssuer = true,
                ValidateAudience = true,
                ValidateLifetime = true,
                ValidateIssuerSigningKey = true,
                ClockSkew = TimeSpan.FromMinutes(1),
            };
            jwt.Events = new JwtBearerEvents
            {
                OnTokenValidated = context =>
                {
                    var uscc = context.Principal?.FindFirst("sub")?.Value;
                    if (!Uscc.IsValid(uscc))
                    {
                        context.Fail("The token's sub is not a valid USCC.");
                        return Task.CompletedTask;
                    }

                    var roles = context.Principal!.FindAll("roles")
                        .Select(c => Caller.TryParseRole(c.Value, out var role) ? role : (Role?)null)
                        .OfType<Role>();
                    context.Principal = Caller.Principal(uscc!, roles, context.Scheme.Name);
                    return Task.CompletedTask;
                },
            };
        });
    }

    /// <summary>Token lifetimes are judged by the server's clock (the injected <see cref="TimeProvider"/>), like everything else.</summary>
    private static void UseServerClockForTokens(IServiceCollection services) =>
        services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme).PostConfigure<TimeProvider>((jwt, time) =>
        {
            var skew = jwt.TokenValidationParameters.ClockSkew;
            jwt.TokenValidationParameters.LifetimeValidator = (notBefore, expires, _, _) =>
            {
                var now = time.GetUtcNow().UtcDateTime;
                return (notBefore is null || notBefore.Value <= now + skew) && expires is not null && expires.Value > now - skew;
            };
        });

    /// <summary>The caller a certificate's subject names: exactly one CN, a valid USCC, and its OUs that are role names.
    /// Null for a malformed subject (a multi-valued part, no CN or several), never an exception.</summary>
    internal static (string Uscc, List<Role> Roles)? ReadSubject(X500DistinguishedName subject)
    {
        var names = new List<string>();
        var roles = new List<Role>();
        try
        {
            foreach (var part in subject.EnumerateRelativeDistinguishedNames())
            {
                if (part.HasMultipleElements)
                {
                    return null;
                }

                var value = part.GetSingleElementValue();
                switch (part.GetSingleElementType().Value)
                {
                    case "2.5.4.3":
                        names.Add(value ?? "");
                        break;
                    case "2.5.4.11" when Caller.TryParseRole(value, out var role):
                        roles.Add(role);
                        break;
                }
            }
        }
        catch (CryptographicException)
        {
            return null;
        }

        return names is [var uscc] && Uscc.IsValid(uscc) ? (uscc, roles) : null;
    }

    public static X509Certificate2Collection LoadPemCertificates(string path)
    {
        var collection = new X509Certificate2Collection();
        collection.ImportFromPemFile(path);
        return collection;
    }

    private static SecurityKey LoadPublicKey(string path)
    {
        var pem = File.ReadAllText(path);
        try
        {
            var ec = ECDsa.Create();
            ec.ImportFromPem(pem);
            return new ECDsaSecurityKey(ec);
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            var rsa = RSA.Create();
            rsa.ImportFromPem(pem);
            return new RsaSecurityKey(rsa);
        }
    }
}
