using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

/// <summary>Reads what <see cref="EligibilityRule"/> decides on. The SQL below is the only place that says what "in good
/// standing", "related" and "approved" mean in the database; the grant, gift and deduction paths all read through it.</summary>
internal static class Eligibility
{
    /// <summary>The standing rule (Art 4, 5, 17) as SQL: the party registered in <paramref name="table"/>
    /// (<c>providers</c> or <c>units</c>) under the USCC expression <paramref name="uscc"/> is in good standing; one not
    /// registered is not.</summary>
    public static string InGoodStandingSql(string table, string uscc) =>
        $"coalesce((SELECT s.standing FROM {table} s WHERE s.uscc = {uscc}), 0) = {(short)PartyStanding.Good}";

    /// <summary>The approval rule (Art 7) as SQL: a provider's latest review of a unit is the one that counts. Column
    /// <paramref name="column"/> of the latest <c>unit_reviews</c> row of the unit and provider expressions
    /// <paramref name="unit"/> and <paramref name="provider"/>; null when the provider never reviewed the unit.</summary>
    public static string LatestReviewSql(string column, string unit, string provider) =>
        $"(SELECT v.{column} FROM unit_reviews v WHERE v.unit_uscc = {unit} AND v.provider_uscc = {provider} ORDER BY v.id DESC LIMIT 1)";

    /// <summary>The columns of a <see cref="Dealing"/>, for a row source <c>d</c> with columns <c>provider_uscc</c> and
    /// <c>unit_uscc</c>: the provider's and the unit's standing, whether a declared relation between them is in force
    /// (one USCC on both sides is <see cref="RelatedParties"/>' to see), and whether the provider's latest review
    /// approves the unit.</summary>
    public static readonly string DealingColumns =
        $"""
        {InGoodStandingSql("providers", "d.provider_uscc::bpchar")},
        {InGoodStandingSql("units", "d.unit_uscc::bpchar")},
        coalesce((SELECT r.related FROM related_parties r
                  WHERE r.provider_uscc = d.provider_uscc::bpchar AND r.unit_uscc = d.unit_uscc::bpchar
                  ORDER BY r.id DESC LIMIT 1), false),
        coalesce({LatestReviewSql("approved", "d.unit_uscc::bpchar", "d.provider_uscc::bpchar")}, false)
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

    /// <summary>The standing rule alone, for a unit acting without a provider (redemption).</summary>
    public static async Task EnsureUnitInGoodStandingAsync(LedgerDb db, string unitUscc, CancellationToken ct)
    {
        if (!await db.QueryRowAsync($"SELECT {InGoodStandingSql("units", "$1::bpchar")}", r => r.GetBoolean(0), ct, unitUscc))
        {
            throw EligibilityRule.Suspended("unit", unitUscc);
        }
    }

    /// <summary>Each provider's latest review of the unit (<see cref="LatestReviewSql"/>): the reviews that count.</summary>
    public static Task<List<UnitReviewRow>> LatestReviewsAsync(LedgerDb db, string unitUscc, CancellationToken ct) =>
        db.UnitReviews.FromSqlRaw(LatestReviewsOfUnitSql, unitUscc).AsNoTracking().ToListAsync(ct);

    private static readonly string LatestReviewsOfUnitSql =
        $"SELECT r.* FROM unit_reviews r WHERE r.unit_uscc = {{0}}::bpchar AND r.id = {LatestReviewSql("id", "r.unit_uscc", "r.provider_uscc")}";
}
