using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

/// <summary>Reads what <see cref="EligibilityRule"/> decides on. The SQL below is the only place that says what "in good
/// standing", "related" and "approved" mean in the database; the grant, gift and deduction paths all read through it.</summary>
internal static class Eligibility
{
    /// <summary>The columns of a <see cref="Dealing"/>, for a row source <c>d</c> with columns <c>provider_uscc</c> and
    /// <c>unit_uscc</c>: the provider's and the unit's standing, whether the pair is related (a USCC registered as both
    /// provider and unit is its own related party), and whether the provider's latest review approves the unit.</summary>
    public static readonly string DealingColumns =
        $"""
        coalesce((SELECT p.standing FROM providers p WHERE p.uscc = d.provider_uscc::bpchar), 0) = {(short)PartyStanding.Good},
        coalesce((SELECT u.standing FROM units u WHERE u.uscc = d.unit_uscc::bpchar), 0) = {(short)PartyStanding.Good},
        d.provider_uscc::bpchar = d.unit_uscc::bpchar
          OR coalesce((SELECT r.related FROM related_parties r
                       WHERE r.provider_uscc = d.provider_uscc::bpchar AND r.unit_uscc = d.unit_uscc::bpchar
                       ORDER BY r.id DESC LIMIT 1), false),
        coalesce((SELECT v.approved FROM unit_reviews v
                  WHERE v.unit_uscc = d.unit_uscc::bpchar AND v.provider_uscc = d.provider_uscc::bpchar
                  ORDER BY v.id DESC LIMIT 1), false)
        """;

    /// <summary>The number of columns <see cref="DealingColumns"/> reads.</summary>
    public const int DealingColumnCount = 4;

    public static Dealing ReadDealing(Npgsql.NpgsqlDataReader reader, int first, string provider, string unit) =>
        new(provider, unit, reader.GetBoolean(first), reader.GetBoolean(first + 1), reader.GetBoolean(first + 2), reader.GetBoolean(first + 3));

    public static Task<Dealing> ReadAsync(LedgerDb db, string provider, string unit, CancellationToken ct) =>
        db.QueryRowAsync(
            $"SELECT {DealingColumns} FROM (SELECT $1::text AS provider_uscc, $2::text AS unit_uscc) d",
            r => ReadDealing(r, 0, provider, unit),
            ct,
            provider, unit);

    /// <summary>Refuses, with the first rule broken, a provider and unit that may not deal with each other.</summary>
    public static async Task EnsureMayDealAsync(LedgerDb db, string provider, string unit, CancellationToken ct)
    {
        if (EligibilityRule.Refusal(await ReadAsync(db, provider, unit, ct)) is { } refusal)
        {
            throw refusal;
        }
    }

    /// <summary>The standing rule alone, for a unit acting without a provider (redemption) or giving quota (gift).</summary>
    public static async Task EnsureUnitInGoodStandingAsync(LedgerDb db, string unitUscc, CancellationToken ct)
    {
        if (await db.Units.Where(u => u.Uscc == unitUscc).Select(u => u.Standing).SingleAsync(ct) != PartyStanding.Good)
        {
            throw EligibilityRule.Suspended("unit", unitUscc);
        }
    }
}
