using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using QuotaLedger.Server;
using QuotaLedger.Server.Security;
using QuotaLedger.V1;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>The server in its secured configuration on a real TLS port: a development PKI written to disk, Kestrel
/// with the server certificate, client CAs and a token issuer trusted. Callers connect with real certificates or tokens.</summary>
public sealed class SecureServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly string _directory;
    private readonly List<GrpcChannel> _channels = [];
    private readonly List<HttpClient> _httpClients = [];

    private SecureServer(WebApplication app, string directory, X509Certificate2 ca, ECDsa tokenKey, FakeTimeProvider clock, int port)
    {
        _app = app;
        _directory = directory;
        Ca = ca;
        TokenKey = tokenKey;
        Clock = clock;
        Address = $"https://127.0.0.1:{port}";
    }

    public X509Certificate2 Ca { get; }

    public ECDsa TokenKey { get; }

    public FakeTimeProvider Clock { get; }

    public string Address { get; }

    public static async Task<SecureServer> StartAsync(TestDatabase database, DateTimeOffset now, IDictionary<string, string?>? settings = null,
        X509Certificate2? clientCa = null)
    {
        var directory = Directory.CreateTempSubdirectory("quotaledger-pki-").FullName;
        var ca = clientCa ?? DevelopmentPki.CreateCa();
        var server = DevelopmentPki.CreateServer(ca);
        await File.WriteAllTextAsync(Path.Combine(directory, "ca.pem"), ca.ExportCertificatePem());
        await File.WriteAllTextAsync(Path.Combine(directory, "server.pem"), server.ExportCertificatePem());
        await File.WriteAllTextAsync(Path.Combine(directory, "server.key"), server.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        var tokenKey = DevelopmentPki.CreateTokenKey();
        await File.WriteAllTextAsync(Path.Combine(directory, "token.pub.pem"), tokenKey.ExportSubjectPublicKeyInfoPem());

        var port = TestPorts.Free();
        var clock = new FakeTimeProvider(now.ToUniversalTime());
        var config = new Dictionary<string, string?>(database.ServerSettings)
        {
            ["Expiry:Enabled"] = "false",
            ["Alerts:Enabled"] = "false",
            ["Kestrel:Endpoints:Grpc:Url"] = $"https://127.0.0.1:{port}",
            ["Kestrel:Endpoints:Grpc:Protocols"] = "Http2",
            ["Kestrel:Endpoints:Grpc:Certificate:Path"] = Path.Combine(directory, "server.pem"),
            ["Kestrel:Endpoints:Grpc:Certificate:KeyPath"] = Path.Combine(directory, "server.key"),
            ["Auth:TrustedClientCaFiles:0"] = Path.Combine(directory, "ca.pem"),
            ["Auth:Jwt:Issuer"] = DevelopmentPki.Issuer,
            ["Auth:Jwt:Audience"] = DevelopmentPki.Audience,
            ["Auth:Jwt:SigningKeyFile"] = Path.Combine(directory, "token.pub.pem"),
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            config[key] = value;
        }

        var app = QuotaLedgerHost.Build([], builder =>
        {
            builder.Configuration.AddInMemoryCollection(config);
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.Services.RemoveAll<TimeProvider>();
            builder.Services.AddSingleton<TimeProvider>(clock);
        });
        await app.StartAsync();
        return new SecureServer(app, directory, ca, tokenKey, clock, port);
    }

    /// <summary>A channel presenting a client certificate (or none), trusting only the development CA.</summary>
    public GrpcChannel Channel(X509Certificate2? clientCertificate = null, string? bearerToken = null)
    {
        var options = new GrpcChannelOptions { HttpHandler = Handler(clientCertificate), DisposeHttpClient = true };
        if (bearerToken is not null)
        {
            options.Credentials = ChannelCredentials.Create(ChannelCredentials.SecureSsl, CallCredentials.FromInterceptor((_, metadata) =>
            {
                metadata.Add("authorization", $"Bearer {bearerToken}");
                return Task.CompletedTask;
            }));
        }

        var channel = GrpcChannel.ForAddress(Address, options);
        _channels.Add(channel);
        return channel;
    }

    /// <summary>A plain HTTP/1.1 client (as a browser or a JSON caller talks), for the JSON API and the bureau's page, presenting a client certificate or a bearer token (or neither),
    /// trusting only the development CA.</summary>
    public HttpClient Http(X509Certificate2? clientCertificate = null, string? bearerToken = null)
    {
        var client = new HttpClient(Handler(clientCertificate)) { BaseAddress = new Uri(Address) };
        if (bearerToken is not null)
        {
            client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", bearerToken);
        }

        _httpClients.Add(client);
        return client;
    }

    internal Clients As(X509Certificate2? certificate) => new(Channel(certificate));

    internal Clients WithToken(string token) => new(Channel(bearerToken: token));

    public string Token(string uscc, params Role[] roles) =>
        DevelopmentPki.CreateToken(TokenKey, uscc, roles, Clock.GetUtcNow(), TimeSpan.FromHours(1));

    public X509Certificate2 Certificate(string uscc, params Role[] roles) => DevelopmentPki.CreateCaller(Ca, uscc, roles);

    public async ValueTask DisposeAsync()
    {
        foreach (var channel in _channels)
        {
            channel.Dispose();
        }

        foreach (var client in _httpClients)
        {
            client.Dispose();
        }

        await _app.StopAsync();
        await _app.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private SocketsHttpHandler Handler(X509Certificate2? clientCertificate) => new()
    {
        SslOptions = new SslClientAuthenticationOptions
        {
            ClientCertificates = clientCertificate is null ? null : new X509CertificateCollection { clientCertificate },
            RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null && ChainsToCa(new X509Certificate2(certificate)),
        },
    };

    private bool ChainsToCa(X509Certificate2 certificate)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(Ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }

}

internal sealed class Clients(GrpcChannel channel)
{
    public AdminService.AdminServiceClient Admin { get; } = new(channel);
    public RegistryService.RegistryServiceClient Registry { get; } = new(channel);
    public LedgerService.LedgerServiceClient Ledger { get; } = new(channel);
    public RedemptionService.RedemptionServiceClient Redemption { get; } = new(channel);
}
