using System.Net;
using System.Security.Claims;

namespace QuotaLedger.Server.Security;

public enum Role
{
    Bureau,
    Provider,
    Unit,
    Expert,
}

/// <summary>Who makes a call: an authenticated party (its USCC and roles), or, in the no-configuration development mode
/// on loopback only, the development identity, which may act as any party.</summary>
public sealed record Caller(string Uscc, IReadOnlySet<Role> Roles, bool IsDevelopment)
{
    public const string UsccClaim = "quotaledger:uscc";

    public static readonly Caller Development = new("development", new HashSet<Role>(Enum.GetValues<Role>()), IsDevelopment: true);

    public bool Has(Role role) => Roles.Contains(role);

    /// <summary>The name entries and idempotency records carry. Request ids are scoped to it: the development
    /// identity, which stands for every party, scopes them by the party acting in the request.</summary>
    public string ScopeFor(string actingParty) => IsDevelopment ? $"development:{actingParty}" : Uscc;

    public static string RoleName(Role role) => role.ToString().ToLowerInvariant();

    private static readonly Dictionary<string, Role> s_roles = Enum.GetValues<Role>().ToDictionary(RoleName, StringComparer.Ordinal);

    /// <summary>A role by its exact name (bureau, provider, unit, expert): "0", "Provider" or "provider,unit" are not roles.</summary>
    public static bool TryParseRole(string? name, out Role role) => s_roles.TryGetValue(name ?? "", out role);

    /// <summary>The principal the authentication handlers build: one USCC claim and a role claim per role.</summary>
    public static ClaimsPrincipal Principal(string uscc, IEnumerable<Role> roles, string scheme)
    {
        var claims = new List<Claim> { new(UsccClaim, uscc) };
        claims.AddRange(roles.Distinct().Select(r => new Claim(ClaimTypes.Role, RoleName(r))));
        return new ClaimsPrincipal(new ClaimsIdentity(claims, scheme, UsccClaim, ClaimTypes.Role));
    }

    public static Caller? From(ClaimsPrincipal user)
    {
        if (user.Identity?.IsAuthenticated != true || user.FindFirst(UsccClaim)?.Value is not { Length: > 0 } uscc)
        {
            return null;
        }

        var roles = new HashSet<Role>();
        foreach (var claim in user.FindAll(ClaimTypes.Role))
        {
            if (TryParseRole(claim.Value, out var role))
            {
                roles.Add(role);
            }
        }

        return new Caller(uscc, roles, IsDevelopment: false);
    }

    /// <summary>Loopback, or an in-process test host (no remote address).</summary>
    public static bool IsLocal(IPAddress? remote) => remote is null || IPAddress.IsLoopback(remote);
}
