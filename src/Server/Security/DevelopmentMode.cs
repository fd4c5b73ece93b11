using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace QuotaLedger.Server.Security;

/// <summary>With no trust anchors or token issuers configured the server accepts unauthenticated callers as the
/// development identity: it says so, and refuses to run on any address but loopback.</summary>
internal static partial class DevelopmentMode
{
    public static void Guard(WebApplication app)
    {
        var auth = app.Services.GetRequiredService<AuthOptions>();
        if (auth.Configured)
        {
            return;
        }

        app.Lifetime.ApplicationStarted.Register(() =>
        {
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            var exposed = addresses.Where(a => !IsLoopback(a)).ToList();
            if (exposed.Count > 0)
            {
                LogRefused(app.Logger, string.Join(", ", exposed));
                app.Lifetime.StopApplication();
                return;
            }

            if (addresses.Count > 0)
            {
                LogDevelopment(app.Logger, string.Join(", ", addresses));
            }
        });
    }

    private static bool IsLoopback(string address)
    {
        var host = new Uri(address.Replace("*", "0.0.0.0", StringComparison.Ordinal).Replace("+", "0.0.0.0", StringComparison.Ordinal)).Host.Trim('[', ']');
        return host == "localhost" || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Development mode on {Addresses}: no client CA or token issuer is configured (Auth section), so unauthenticated loopback callers act as the development identity, which may act for any party")]
    private static partial void LogDevelopment(ILogger logger, string addresses);

    [LoggerMessage(Level = LogLevel.Critical, Message = "Refusing to serve unauthenticated callers on {Addresses}: development mode binds to loopback only. Configure Auth (client CAs or a token issuer) and TLS to listen elsewhere")]
    private static partial void LogRefused(ILogger logger, string addresses);
}
