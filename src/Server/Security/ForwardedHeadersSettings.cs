using System.Net;
using Microsoft.AspNetCore.HttpOverrides;

namespace QuotaLedger.Server.Security;

/// <summary>The <c>ForwardedHeaders</c> section: the reverse proxies whose <c>X-Forwarded-For</c> the server believes.
/// Behind a proxy every call comes from the proxy's address, so the per-address limit on failed authentications
/// (<see cref="FailedAuthentication"/>) would make one client's bad credentials turn every client away. With proxies
/// configured, a call from one of them is counted against the client address the proxy appended; a call from any other
/// address is counted against its own, whatever headers it sends. Nothing is trusted by default.</summary>
public sealed class ForwardedHeadersSettings : ICheckedSettings
{
    /// <summary>IP addresses of trusted proxies (e.g. "10.0.0.5", "::1").</summary>
    public List<string> TrustedProxies { get; set; } = [];

    /// <summary>Networks of trusted proxies in CIDR notation (e.g. "10.0.0.0/24").</summary>
    public List<string> TrustedNetworks { get; set; } = [];

    public bool Configured => TrustedProxies.Count > 0 || TrustedNetworks.Count > 0;

    public IEnumerable<string> Problems() =>
        TrustedProxies.Where(p => !IPAddress.TryParse(p, out _))
            .Select(p => $"{nameof(TrustedProxies)} must list IP addresses; '{p}' is not one.")
            .Concat(TrustedNetworks.Where(n => !System.Net.IPNetwork.TryParse(n, out _))
                .Select(n => $"{nameof(TrustedNetworks)} must list networks in CIDR notation (10.0.0.0/24); '{n}' is not one."));

    /// <summary>The middleware's options: X-Forwarded-For only, from the configured proxies only (ASP.NET Core's own
    /// defaults, which trust loopback, are cleared), through as many trusted proxies as the header names in turn.</summary>
    public ForwardedHeadersOptions ToOptions()
    {
        var options = new ForwardedHeadersOptions { ForwardedHeaders = ForwardedHeaders.XForwardedFor, ForwardLimit = null };
        options.KnownProxies.Clear();
        options.KnownIPNetworks.Clear();
        foreach (var proxy in TrustedProxies)
        {
            options.KnownProxies.Add(IPAddress.Parse(proxy));
        }

        foreach (var network in TrustedNetworks)
        {
            options.KnownIPNetworks.Add(System.Net.IPNetwork.Parse(network));
        }

        return options;
    }
}
