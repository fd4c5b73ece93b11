using System.Formats.Asn1;
using System.Numerics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Grpc.Core;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using QuotaLedger.Server.Security;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Strict identities and authorization before existence, over the real TLS port.</summary>
public sealed class IdentityTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly DateTimeOffset s_now = new(2026, 6, 3, 2, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task A_caller_learns_nothing_of_what_is_not_its_own_and_a_read_needs_a_role()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now);
        var (bureau, provider, grant, contractNo, unit) = await GrantedAsync(server);
        var stranger = TestUscc.New();
        var otherProvider = server.As(server.Certificate(stranger, Role.Provider));
        var otherUnit = server.WithToken(server.Token(TestUscc.New(), Role.Unit));

        // Someone else's, and nobody's, answer alike.
        foreach (var caller in new[] { otherProvider, otherUnit })
        {
            var mine = await ErrorOf(() => caller.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant }).ResponseAsync);
            var none = await ErrorOf(() => caller.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = 999_999_999 }).ResponseAsync);
            Assert.Equal((StatusCode.NotFound, "UNKNOWN_GRANT"), mine);
            Assert.Equal(mine, none);
            Assert.Equal(await ErrorOf(() => caller.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = provider, ContractNo = "NO-SUCH" }).ResponseAsync),
                await ErrorOf(() => caller.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = provider, ContractNo = contractNo }).ResponseAsync));
            Assert.Equal(await ErrorOf(() => caller.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = TestUscc.New(), Year = 2026 }).ResponseAsync),
                await ErrorOf(() => caller.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = unit, Year = 2026 }).ResponseAsync));
        }

        // A valid certificate with no role reads nothing.
        var roleless = server.As(server.Certificate(TestUscc.New()));
        Assert.Equal((StatusCode.PermissionDenied, "ROLE_REQUIRED"), await ErrorOf(() => roleless.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant }).ResponseAsync));
        Assert.Equal((StatusCode.PermissionDenied, "ROLE_REQUIRED"), await ErrorOf(() => roleless.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 }).ResponseAsync));
        Assert.Equal((StatusCode.PermissionDenied, "ROLE_REQUIRED"), await ErrorOf(() => roleless.Registry.GetProviderAsync(new GetProviderRequest { ProviderUscc = provider }).ResponseAsync));

        // A provider reads a unit's identity and its own review of it, not the materials or another provider's reasons.
        var reviewer = TestUscc.New();
        var reviewerClients = server.As(server.Certificate(reviewer, Role.Provider));
        await bureau.Registry.RegisterProviderAsync(new RegisterProviderRequest { RequestId = Ids.New(), ProviderUscc = reviewer, Name = "R", Licences = { "ISP-R-1" } });
        await reviewerClients.Registry.ReviewUnitAsync(new ReviewUnitRequest { RequestId = Ids.New(), ProviderUscc = reviewer, UnitUscc = unit, Approve = false, Reason = "credit report is stale" });
        var seenByOther = await otherProvider.Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = unit });
        Assert.Empty(seenByOther.Materials);
        Assert.Empty(seenByOther.Reviews);
        Assert.False(seenByOther.Approved);
        var seenByProvider = await server.As(server.Certificate(provider, Role.Provider)).Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = unit });
        Assert.Equal([provider], seenByProvider.Reviews.Select(r => r.ProviderUscc));
        Assert.True(seenByProvider.Approved);
        var seenByBureau = await bureau.Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = unit });
        Assert.Equal(2, seenByBureau.Reviews.Count);
        Assert.Equal(4, seenByBureau.Materials.Count);
    }

    [Fact]
    public async Task Roles_are_parsed_strictly_and_malformed_identities_are_refused_not_thrown()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now);
        var uscc = TestUscc.New();
        GetYearPolicyRequest Read() => new() { Year = 2026 };

        foreach (var role in new[] { "0", "1", "Provider", "provider,unit", " provider", "providers" })
        {
            var certificate = Issue(server.Ca, Subject(("2.5.4.11", role), ("2.5.4.3", uscc)));
            Assert.Equal((StatusCode.PermissionDenied, "ROLE_REQUIRED"), await ErrorOf(() => server.As(certificate).Admin.GetYearPolicyAsync(Read()).ResponseAsync));
        }

        var twoNames = Issue(server.Ca, Subject(("2.5.4.11", "provider"), ("2.5.4.3", uscc), ("2.5.4.3", TestUscc.New())));
        var multiValued = Issue(server.Ca, MultiValuedSubject(uscc));
        var notAUscc = Issue(server.Ca, Subject(("2.5.4.11", "provider"), ("2.5.4.3", "bureau")));
        foreach (var certificate in new[] { twoNames, multiValued, notAUscc })
        {
            Assert.Equal((StatusCode.Unauthenticated, "UNAUTHENTICATED"), await ErrorOf(() => server.As(certificate).Admin.GetYearPolicyAsync(Read()).ResponseAsync));
        }

        // Tokens: roles by exact name, an expiry required, the issuer key's algorithm only.
        var handler = new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false };
        string Token(Dictionary<string, object> claims, SigningCredentials credentials, DateTime? expires) => handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = DevelopmentPki.Issuer, Audience = DevelopmentPki.Audience, Claims = claims, SigningCredentials = credentials,
            IssuedAt = s_now.UtcDateTime, NotBefore = s_now.UtcDateTime, Expires = expires,
        });
        var signing = new SigningCredentials(new ECDsaSecurityKey(server.TokenKey), SecurityAlgorithms.EcdsaSha256);
        var hour = s_now.UtcDateTime.AddHours(1);
        var joinedRoles = Token(new() { ["sub"] = uscc, ["roles"] = "bureau,expert" }, signing, hour);
        Assert.Equal((StatusCode.PermissionDenied, "ROLE_REQUIRED"), await ErrorOf(() => server.WithToken(joinedRoles).Admin.GetYearPolicyAsync(Read()).ResponseAsync));
        var noExpiry = Token(new() { ["sub"] = uscc, ["roles"] = new[] { "bureau" } }, signing, null);
        var symmetric = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(server.TokenKey.ExportSubjectPublicKeyInfoPem())), SecurityAlgorithms.HmacSha256);
        var confused = Token(new() { ["sub"] = uscc, ["roles"] = new[] { "bureau" } }, symmetric, hour);
        var noSubject = Token(new() { ["roles"] = new[] { "bureau" } }, signing, hour);
        foreach (var token in new[] { noExpiry, confused, noSubject, "not.a.token", "" + "." + "." })
        {
            Assert.Equal((StatusCode.Unauthenticated, "UNAUTHENTICATED"), await ErrorOf(() => server.WithToken(token).Admin.GetYearPolicyAsync(Read()).ResponseAsync));
        }

        var good = Token(new() { ["sub"] = uscc, ["roles"] = new[] { "bureau" } }, signing, hour);
        Assert.Equal(2026, (await server.WithToken(good).Admin.GetYearPolicyAsync(Read())).Year);
    }

    [Fact]
    public async Task A_revoked_client_certificate_is_refused_and_a_new_revocation_list_takes_effect_without_a_restart()
    {
        var directory = Directory.CreateTempSubdirectory("quotaledger-crl-").FullName;
        var crlFile = Path.Combine(directory, "ca.crl");
        try
        {
            var ca = DevelopmentPki.CreateCa();
            var (revoked, later) = (DevelopmentPki.CreateCaller(ca, TestUscc.New(), Role.Expert), DevelopmentPki.CreateCaller(ca, TestUscc.New(), Role.Expert));
            await File.WriteAllBytesAsync(crlFile, RevocationList(ca, 1, revoked));
            await using var server = await SecureServer.StartAsync(fixture.Database, s_now, new Dictionary<string, string?>
            {
                ["Auth:RevocationListFiles:0"] = crlFile,
            }, ca);

            Assert.Equal((StatusCode.Unauthenticated, "UNAUTHENTICATED"), await ErrorOf(() => server.As(revoked).Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 }).ResponseAsync));
            Assert.Equal(2026, (await server.As(later).Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 })).Year);

            await File.WriteAllTextAsync(crlFile, PemEncoding.WriteString("X509 CRL", RevocationList(ca, 2, revoked, later)));
            File.SetLastWriteTimeUtc(crlFile, DateTime.UtcNow.AddSeconds(5));
            Assert.Equal((StatusCode.Unauthenticated, "UNAUTHENTICATED"), await ErrorOf(() => server.As(later).Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 }).ResponseAsync));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task An_address_that_keeps_failing_authentication_is_turned_away_for_a_moment()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now, new Dictionary<string, string?>
        {
            ["RateLimits:FailedAuthenticationBurst"] = "3",
            // One a second, and the first three failures at once: the limit must be reached before the bucket refills,
            // also on a machine where a handshake takes a good part of a second.
            ["RateLimits:FailedAuthenticationsPerSecond"] = "1",
        });
        var foreign = server.As(DevelopmentPki.CreateCaller(DevelopmentPki.CreateCa("Not trusted"), TestUscc.New(), Role.Bureau));
        var good = server.As(server.Certificate(TestUscc.New(), Role.Expert));
        var read = new GetYearPolicyRequest { Year = 2026 };

        var failures = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => ErrorOf(() => foreign.Admin.GetYearPolicyAsync(read).ResponseAsync)));
        Assert.All(failures, failure => Assert.Equal((StatusCode.Unauthenticated, "UNAUTHENTICATED"), failure));

        var limited = await Refusal.AssertAsync(() => foreign.Admin.GetYearPolicyAsync(read).ResponseAsync, StatusCode.ResourceExhausted, "RATE_LIMITED");
        Assert.NotNull(limited.GetRpcStatus()!.GetDetail<Google.Rpc.RetryInfo>());
        Assert.Equal((StatusCode.ResourceExhausted, "RATE_LIMITED"), await ErrorOf(() => good.Admin.GetYearPolicyAsync(read).ResponseAsync));

        // Health stays open, and the address is let in again once its bucket refills.
        var health = new Grpc.Health.V1.Health.HealthClient(server.Channel());
        await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        Assert.Equal(2026, (await good.Admin.GetYearPolicyAsync(read)).Year);
    }

    [Fact]
    public async Task Behind_a_trusted_proxy_each_forwarded_client_has_its_own_failed_authentication_limit_and_nobody_else_is_believed()
    {
        var limits = new Dictionary<string, string?>
        {
            ["RateLimits:FailedAuthenticationBurst"] = "3",
            ["RateLimits:FailedAuthenticationsPerSecond"] = "1",
        };
        var read = new GetYearPolicyRequest { Year = 2026 };
        static Metadata From(string client) => new() { { "x-forwarded-for", client } };

        // The test's connections come from 127.0.0.1: here the trusted proxy.
        await using (var proxied = await SecureServer.StartAsync(fixture.Database, s_now, new Dictionary<string, string?>(limits) { ["ForwardedHeaders:TrustedProxies:0"] = "127.0.0.1" }))
        {
            var foreign = proxied.As(DevelopmentPki.CreateCaller(DevelopmentPki.CreateCa("Not trusted"), TestUscc.New(), Role.Bureau));
            var good = proxied.As(proxied.Certificate(TestUscc.New(), Role.Expert));
            await FailUntilTurnedAwayAsync(() => foreign.Admin.GetYearPolicyAsync(read, From("203.0.113.1")).ResponseAsync);

            // Another client behind the same proxy is still heard: its failures are its own, and a good caller gets in.
            for (var i = 0; i < 2; i++)
            {
                Assert.Equal((StatusCode.Unauthenticated, "UNAUTHENTICATED"), await ErrorOf(() => foreign.Admin.GetYearPolicyAsync(read, From("203.0.113.2")).ResponseAsync));
            }

            Assert.Equal(2026, (await good.Admin.GetYearPolicyAsync(read, From("203.0.113.3"))).Year);
        }

        // A server that trusts another proxy believes no header from 127.0.0.1: every call counts against that address.
        await using var direct = await SecureServer.StartAsync(fixture.Database, s_now, new Dictionary<string, string?>(limits) { ["ForwardedHeaders:TrustedProxies:0"] = "192.0.2.10" });
        var stranger = direct.As(DevelopmentPki.CreateCaller(DevelopmentPki.CreateCa("Not trusted"), TestUscc.New(), Role.Bureau));
        await FailUntilTurnedAwayAsync(() => stranger.Admin.GetYearPolicyAsync(read, From("203.0.113.1")).ResponseAsync);
        var answers = new List<(StatusCode, string)>();
        for (var i = 0; i < 2; i++)
        {
            answers.Add(await ErrorOf(() => stranger.Admin.GetYearPolicyAsync(read, From("203.0.113.2")).ResponseAsync));
        }

        // The bucket refills one a second, so of two calls at least one finds it empty.
        Assert.Contains((StatusCode.ResourceExhausted, "RATE_LIMITED"), answers);
    }

    /// <summary>Fails authentication until the address is turned away (its burst spent).</summary>
    private static async Task FailUntilTurnedAwayAsync(Func<Task> call)
    {
        for (var i = 0; i < 20; i++)
        {
            if (await ErrorOf(call) == (StatusCode.ResourceExhausted, "RATE_LIMITED"))
            {
                return;
            }
        }

        Assert.Fail("20 failed authentications in a row were never turned away.");
    }

    private static async Task<(Clients Bureau, string Provider, long Grant, string ContractNo, string Unit)> GrantedAsync(SecureServer server)
    {
        string provider = TestUscc.New(), unit = TestUscc.New();
        var bureau = server.As(server.Certificate(TestUscc.New(), Role.Bureau));
        var providerClients = server.As(server.Certificate(provider, Role.Provider));
        await bureau.Registry.RegisterProviderAsync(new RegisterProviderRequest { RequestId = Ids.New(), ProviderUscc = provider, Name = "P", Licences = { "IDC-P-1" } });
        await bureau.Registry.RegisterUnitAsync(new RegisterUnitRequest { RequestId = Ids.New(), UnitUscc = unit, Name = "U", Kind = UnitKind.Enterprise, Materials = { Scenario.Materials() } });
        await providerClients.Registry.ReviewUnitAsync(new ReviewUnitRequest { RequestId = Ids.New(), ProviderUscc = provider, UnitUscc = unit, Approve = true });
        var contractNo = "ID-" + Ids.New()[..8];
        await providerClients.Registry.RegisterContractAsync(new RegisterContractRequest
        {
            RequestId = Ids.New(), ContractNo = contractNo, ProviderUscc = provider, UnitUscc = unit, Accelerator = "Ascend 910B", SelfControllable = true,
            ServiceMode = ServiceMode.CloudInstance, UnitPriceFen = 2_000, AmountFen = 1_000_000, Purpose = "training", SignedOn = "2026-05-20",
        });
        var grant = await providerClients.Ledger.GrantAsync(new GrantRequest { RequestId = Ids.New(), ProviderUscc = provider, ContractNo = contractNo, AmountFen = 1_000 });
        return (bureau, provider, grant.GrantId, contractNo, unit);
    }

    private static async Task<(StatusCode, string)> ErrorOf(Func<Task> call)
    {
        var error = await Assert.ThrowsAsync<RpcException>(call);
        return (error.StatusCode, Refusal.ReasonOf(error));
    }

    private static X500DistinguishedName Subject(params (string Oid, string Value)[] parts)
    {
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            foreach (var (oid, value) in parts)
            {
                using (writer.PushSetOf())
                using (writer.PushSequence())
                {
                    writer.WriteObjectIdentifier(oid);
                    writer.WriteCharacterString(UniversalTagNumber.UTF8String, value);
                }
            }
        }

        return new X500DistinguishedName(writer.Encode());
    }

    /// <summary>One name part holding both the CN and an OU: a multi-valued relative distinguished name.</summary>
    private static X500DistinguishedName MultiValuedSubject(string uscc)
    {
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        using (writer.PushSetOf())
        {
            foreach (var (oid, value) in new[] { ("2.5.4.3", uscc), ("2.5.4.11", "provider") })
            {
                using (writer.PushSequence())
                {
                    writer.WriteObjectIdentifier(oid);
                    writer.WriteCharacterString(UniversalTagNumber.UTF8String, value);
                }
            }
        }

        return new X500DistinguishedName(writer.Encode());
    }

    private static X509Certificate2 Issue(X509Certificate2 ca, X500DistinguishedName subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        using var issued = request.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30), serial);
        return issued.CopyWithPrivateKey(key);
    }

    private static byte[] RevocationList(X509Certificate2 ca, int number, params X509Certificate2[] revoked)
    {
        var builder = new CertificateRevocationListBuilder();
        foreach (var certificate in revoked)
        {
            builder.AddEntry(certificate, DateTimeOffset.UtcNow.AddMinutes(-1));
        }

        return builder.Build(ca, new BigInteger(number), DateTimeOffset.UtcNow.AddDays(7), HashAlgorithmName.SHA256);
    }
}
