using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

/// <summary>Changing a party's standing (Art 4, 5, 17), with the change and its reason recorded.</summary>
internal static class Standings
{
    public sealed record Change(PartyStanding Previous, IReadOnlyList<string> Parties);

    /// <summary>Sets the standing of the unit and/or provider registered under <paramref name="uscc"/> and records why;
    /// saved with the caller's next SaveChanges.</summary>
    public static async Task<Change> SetAsync(LedgerDb db, string uscc, PartyStanding standing, string reason, DateTimeOffset now,
        string requestId, string by, CancellationToken ct)
    {
        var unit = await db.Units.SingleOrDefaultAsync(u => u.Uscc == uscc, ct);
        var provider = await db.Providers.SingleOrDefaultAsync(p => p.Uscc == uscc, ct);
        if (unit is null && provider is null)
        {
            throw new LedgerException(Reason.UnknownUnit, $"No unit or provider is registered with USCC {uscc}.");
        }

        var parties = new List<string>();
        var previous = standing;
        void Record(string party, PartyStanding from)
        {
            db.StandingChanges.Add(new StandingChangeRow
            {
                Uscc = uscc, Party = party, From = from, To = standing, Reason = reason, ChangedAt = now, RequestId = requestId, Caller = by,
            });
            parties.Add(party);
            previous = from;
        }

        if (unit is not null)
        {
            Record("unit", unit.Standing);
            unit.Standing = standing;
        }

        if (provider is not null)
        {
            Record("provider", provider.Standing);
            provider.Standing = standing;
        }

        return new Change(previous, parties);
    }
}
