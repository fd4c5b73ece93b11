using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

/// <summary>Who may deal with whom (Art 4, 5, 17): parties in good standing, never related parties.</summary>
internal static class Eligibility
{
    /// <summary>The standing rule: a suspended or blacklisted unit or provider can neither grant, be granted, deduct nor gift.</summary>
    public static async Task EnsureGoodStandingAsync(LedgerDb db, string providerUscc, string unitUscc, CancellationToken ct)
    {
        var provider = await db.Providers.Where(p => p.Uscc == providerUscc).Select(p => p.Standing).SingleAsync(ct);
        if (provider != PartyStanding.Good)
        {
            throw Suspended("provider", providerUscc, provider);
        }

        await EnsureUnitInGoodStandingAsync(db, unitUscc, ct);
    }

    public static async Task EnsureUnitInGoodStandingAsync(LedgerDb db, string unitUscc, CancellationToken ct)
    {
        var unit = await db.Units.Where(u => u.Uscc == unitUscc).Select(u => u.Standing).SingleAsync(ct);
        if (unit != PartyStanding.Good)
        {
            throw Suspended("unit", unitUscc, unit);
        }
    }

    /// <summary>The related-party rule (Art 5.6), whenever the contract was registered.</summary>
    public static async Task EnsureNotRelatedAsync(LedgerDb db, string providerUscc, string unitUscc, CancellationToken ct)
    {
        if (await db.RelatedParties.AnyAsync(r => r.ProviderUscc == providerUscc && r.UnitUscc == unitUscc, ct))
        {
            throw new LedgerException(Reason.RelatedParties,
                $"Provider {providerUscc} and unit {unitUscc} are declared related parties and may not deal with each other (Art 5.6).");
        }
    }

    public static LedgerException Suspended(string party, string uscc, PartyStanding standing) =>
        new(Reason.PartySuspended, $"The {party} {uscc} is {standing.ToString().ToUpperInvariant()} and can neither grant, receive nor deduct quota (Art 4, 5, 17).");
}
