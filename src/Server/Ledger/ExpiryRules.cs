using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

/// <summary>The expiry rule (Art 10, 11: a grant is valid for its validity period, and what it still holds then is
/// reclaimed for reuse): one pure function, as the grant, deduction and release rules are.</summary>
public static class ExpiryRules
{
    /// <summary>A grant still open and past its expiry at <paramref name="now"/> expires, returning all it holds (zero
    /// included: it closes all the same); any other (missing, released, expired already, or not yet due) is left as it
    /// is (null).</summary>
    public static Fen? Decide(GrantFacts? grant, DateTimeOffset now) =>
        grant is { State: GrantState.Open } && Grants.IsDue(grant.ExpiresAt, now) ? new Fen(grant.BalanceFen) : null;
}
