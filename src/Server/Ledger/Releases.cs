using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Ledger;

/// <summary>A validated release: the provider, its grant and the joint statement that settles it.</summary>
internal sealed record ReleaseCall(string Provider, long GrantId, string StatementRef, string RequestId, string By);

/// <summary>What the release rules decided: the refusal, or what the grant holds and returns to the pool.</summary>
internal readonly record struct ReleaseDecision(LedgerException? Refusal, Fen Returned);

/// <summary>The release rules (Art 11: what a grant holds returns to the pool for reuse): one pure function, a fixed
/// order of early returns, as the deduction and grant rules are.</summary>
internal static class Releases
{
    public static ReleaseDecision Decide(ReleaseCall call, GrantFacts? grant, DateTimeOffset now)
    {
        // Another provider's grant is refused exactly as a missing one.
        if (grant is null || grant.Provider != call.Provider)
        {
            return new ReleaseDecision(Grants.Unknown(call.GrantId), Fen.Zero);
        }

        if (Grants.ClosedRefusal(grant.Id, grant.State, grant.ExpiresAt, now, "release") is { } closed)
        {
            return new ReleaseDecision(closed, Fen.Zero);
        }

        return new ReleaseDecision(null, new Fen(grant.BalanceFen));
    }
}
