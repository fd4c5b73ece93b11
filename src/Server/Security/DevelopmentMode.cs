using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace QuotaLedger.Server.Security;

/// <summary>The server refuses to start, before it listens, with a message saying what to configure.</summary>
public sealed class StartupRefusedException(string message) : Exception(message);

/// <summary>Which mode the server runs in, decided before it listens. Secured mode (an <c>Auth</c> section) takes
/// credentials over TLS only. Development mode, in which every caller acts as the development identity, is on only when
/// it is asked for: no <c>Auth</c> section and the host environment <c>Development</c> (the README's <c>dotnet run</c>
/// sets it through <c>Properties/launchSettings.json</c>), on loopback addresses only. Anything else refuses to start.</summary>
internal static partial class DevelopmentMode
{
    /// <summary>True for development mode; throws <see cref="StartupRefusedException"/> when the configuration is neither
    /// a secured one nor an explicit, loopback-only development one.</summary>
    public static bool Decide(IConfiguration configuration, IHostEnvironment environment, AuthOptions auth)
    {
        var addresses = ConfiguredAddresses(configuration);
        if (auth.Configured)
        {
            var plain = addresses.Where(a => !a.StartsWith("https://", StringComparison.OrdinalIgnoreCase)).ToList();
            if (plain.Count > 0)
            {
                throw new StartupRefusedException(
                    $"Secured mode takes credentials over TLS only, but these endpoints are plain HTTP: {string.Join(", ", plain)}. " +
                    "Give every Kestrel endpoint an https:// URL and a certificate (Kestrel:Endpoints:<name>:Certificate).");
            }

            return false;
        }

        if (!environment.IsDevelopment())
        {
            throw new StartupRefusedException(
                $"No Auth section is configured and the environment is '{environment.EnvironmentName}', not Development: refusing to start. " +
                "Configure Auth (Auth:TrustedClientCaFiles and/or Auth:Jwt:Issuer, Audience, SigningKeyFile; " +
                "`dotnet run --project src/Server -- dev-pki DIR` writes a complete example), " +
                "or set ASPNETCORE_ENVIRONMENT=Development to run the unauthenticated development mode on loopback.");
        }

        var exposed = addresses.Where(a => !IsLoopback(a)).ToList();
        if (exposed.Count > 0)
        {
            throw new StartupRefusedException(
                $"Development mode accepts every caller as the development identity and listens on loopback only, but it is asked to listen on " +
                $"{string.Join(", ", exposed)}. Use a loopback address (127.0.0.1, ::1, localhost), or configure Auth and TLS to listen elsewhere.");
        }

        return true;
    }

    /// <summary>Refuses to start when <c>DOTNET_ENVIRONMENT</c> and <c>ASPNETCORE_ENVIRONMENT</c> are both set and name
    /// different environments: which one wins depends on the host's loading order, and the environment decides whether
    /// the server runs unauthenticated development mode, so the operator must say one thing.</summary>
    public static void RequireOneEnvironment(string? dotnetEnvironment, string? aspNetCoreEnvironment)
    {
        if (string.IsNullOrWhiteSpace(dotnetEnvironment) || string.IsNullOrWhiteSpace(aspNetCoreEnvironment)
            || string.Equals(dotnetEnvironment.Trim(), aspNetCoreEnvironment.Trim(), StringComparison.OrdinalIgnoreCase))
        {
            return;
        }

        throw new StartupRefusedException(
            $"DOTNET_ENVIRONMENT is '{dotnetEnvironment}' but ASPNETCORE_ENVIRONMENT is '{aspNetCoreEnvironment}': the two disagree, and the environment " +
            "decides whether the server runs the unauthenticated development mode. Set one of them (or both to the same name) and start again.");
    }

    /// <summary>Logs loudly that development mode is on, and (a second line of defence) stops a development server that
    /// finds itself listening beyond loopback after all, with a non-zero exit code.</summary>
    public static void Announce(WebApplication app)
    {
        LogDevelopment(app.Logger);
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            var exposed = addresses.Where(a => !IsLoopback(a)).ToList();
            if (exposed.Count > 0)
            {
                LogRefused(app.Logger, string.Join(", ", exposed));
                Environment.ExitCode = 2;
                app.Lifetime.StopApplication();
            }
        });
    }

    /// <summary>Every address the configuration asks Kestrel to listen on: its named endpoints, <c>urls</c>
    /// (ASPNETCORE_URLS), and <c>http_ports</c>/<c>https_ports</c> (which bind every interface).</summary>
    private static List<string> ConfiguredAddresses(IConfiguration configuration)
    {
        var addresses = configuration.GetSection("Kestrel:Endpoints").GetChildren()
            .Select(e => e["Url"]).OfType<string>().Where(u => u.Length > 0).ToList();
        addresses.AddRange((configuration["urls"] ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        foreach (var (key, scheme) in new[] { ("http_ports", "http"), ("https_ports", "https") })
        {
            addresses.AddRange((configuration[key] ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(port => $"{scheme}://*:{port}"));
        }

        return addresses;
    }

    private static bool IsLoopback(string address)
    {
        if (!Uri.TryCreate(address.Replace("*", "0.0.0.0", StringComparison.Ordinal).Replace("+", "0.0.0.0", StringComparison.Ordinal), UriKind.Absolute, out var uri))
        {
            return false;
        }

        var host = uri.Host.Trim('[', ']');
        return host == "localhost" || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "DEVELOPMENT MODE: no Auth section is configured and the environment is Development, so every caller on loopback acts as the development identity, which may act for any party. Never run this way where anyone else can reach the port.")]
    private static partial void LogDevelopment(ILogger logger);

    [LoggerMessage(Level = LogLevel.Critical, Message = "Refusing to serve unauthenticated callers on {Addresses}: development mode binds to loopback only. Configure Auth (client CAs or a token issuer) and TLS to listen elsewhere")]
    private static partial void LogRefused(ILogger logger, string addresses);
}
