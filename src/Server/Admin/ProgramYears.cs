using Npgsql;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Server.Admin;

/// <summary>A programme year's figures (funded, pool, granted, deducted, reclaimed, redeemed, disbursed, receivable,
/// clawed back): the one read behind GetProgramYear, FundBudget's answer and the bureau's page.</summary>
internal static class ProgramYears
{
    /// <summary>The year's figures now, or as the ledger stood at <paramref name="asOf"/>; YEAR_NOT_OPEN for a year
    /// without a policy.</summary>
    public static async Task<ProgramYear> ReadAsync(LedgerDb db, int year, DateTimeOffset? asOf, DateTimeOffset now, CancellationToken ct)
    {
        var policy = await Policies.FindAsync(db, year, ct)
            ?? throw new LedgerException(Reason.YearNotOpen, $"There is no policy for {year}, so it has no programme figures; the bureau sets one with SetYearPolicy.");
        return asOf is { } then ? await AsOfAsync(db, year, policy, then, ct) : await LiveAsync(db, year, policy, now, ct);
    }

    /// <summary>The year's figures, each derived from account balances: no city-wide counter is kept per deduction.
    /// Expiry takes effect at expires_at: what open grants past their expiry hold ("lapsed") counts in the pool and as
    /// reclaimed, not as granted, whether or not the expiry pass has moved it yet.</summary>
    public static Task<ProgramYear> LiveAsync(LedgerDb db, int year, VoucherPolicy? policy, DateTimeOffset now, CancellationToken ct) =>
        db.QueryRowAsync(
            $"""
            WITH lapsed AS (SELECT {Pools.LapsedSql("$1", "$2")} AS fen)
            SELECT coalesce(sum(balance_fen) FILTER (WHERE kind = {(short)AccountKind.Funding}), 0)::bigint,
                   {Pools.AvailableSql("$1", "$2")},
                   coalesce(sum(balance_fen) FILTER (WHERE kind = {(short)AccountKind.Grant}), 0)::bigint - (SELECT fen FROM lapsed),
                   coalesce(sum(balance_fen) FILTER (WHERE kind IN ({UnitYears.DeductedKindsSql})), 0)::bigint,
                   (SELECT coalesce(sum(returned_fen), 0)::bigint FROM grants WHERE year = $1) + (SELECT fen FROM lapsed),
                   coalesce(sum(balance_fen) FILTER (WHERE kind IN ({UnitYears.RedeemedKindsSql})), 0)::bigint,
                   coalesce(sum(balance_fen) FILTER (WHERE kind = {(short)AccountKind.Disbursed}), 0)::bigint,
                   coalesce(sum(balance_fen) FILTER (WHERE kind = {(short)AccountKind.Receivable}), 0)::bigint,
                   (SELECT coalesce(sum(p.amount_fen), 0)::bigint FROM journal_entries e JOIN postings p ON p.entry_id = e.id
                    WHERE e.year = $1 AND e.kind = {(short)EntryKind.ClawBack} AND p.amount_fen > 0)
            FROM accounts WHERE year = $1
            """,
            r => ProgramYearOf(r, year, policy?.YearTotal.Value ?? 0),
            ct,
            year, now);

    /// <summary>The figures of a program-year row, in the column order both year queries select them.</summary>
    private static ProgramYear ProgramYearOf(NpgsqlDataReader r, int year, long yearTotalFen) => new()
    {
        Year = year,
        FundedFen = r.GetInt64(0),
        PoolFen = r.GetInt64(1),
        GrantedOpenFen = r.GetInt64(2),
        DeductedFen = r.GetInt64(3),
        ReclaimedFen = r.GetInt64(4),
        RedeemedFen = r.GetInt64(5),
        DisbursedFen = r.GetInt64(6),
        ReceivableFen = r.GetInt64(7),
        ClawedBackFen = r.GetInt64(8),
        YearTotalFen = yearTotalFen,
    };

    /// <summary>The year's figures as the ledger stood at <paramref name="asOf"/>, from the journal alone: each account
    /// kind's postings of entries created at or before then. Expiry is as of then: what grants past their expires_at
    /// still held then ("lapsed") counts in the pool and as reclaimed, not as granted, as though the expiry pass had
    /// posted at expires_at; reclaimed is the expiry and release entries' returns up to then, and clawed back the
    /// claw-back entries' up to then. The same figures as <see cref="LiveAsync"/> would have answered then.</summary>
    public static Task<ProgramYear> AsOfAsync(LedgerDb db, int year, VoucherPolicy policy, DateTimeOffset asOf, CancellationToken ct) =>
        db.QueryRowAsync(
            $"""
            WITH posted AS (
              SELECT a.kind, sum(p.amount_fen) AS fen
              FROM accounts a JOIN postings p ON p.account_id = a.id JOIN journal_entries e ON e.id = p.entry_id
              WHERE a.year = $2 AND e.created_at <= $1
              GROUP BY a.kind),
            grant_postings AS (
              SELECT g.expires_at, e.kind, p.amount_fen
              FROM grants g JOIN postings p ON p.account_id = g.account_id JOIN journal_entries e ON e.id = p.entry_id
              WHERE g.year = $2 AND e.created_at <= $1),
            lapsed AS (SELECT coalesce(sum(g.amount_fen), 0)::bigint AS fen FROM grant_postings g WHERE {Grants.DueSql("g", "$1")}),
            returned AS (
              SELECT coalesce(-sum(amount_fen), 0)::bigint AS fen FROM grant_postings
              WHERE kind IN ({(short)EntryKind.Expiry}, {(short)EntryKind.Release}))
            SELECT coalesce(-sum(fen) FILTER (WHERE kind = {(short)AccountKind.Funding}), 0)::bigint,
                   coalesce(sum(fen) FILTER (WHERE kind = {(short)AccountKind.Pool}), 0)::bigint + (SELECT fen FROM lapsed),
                   coalesce(sum(fen) FILTER (WHERE kind = {(short)AccountKind.Grant}), 0)::bigint - (SELECT fen FROM lapsed),
                   coalesce(sum(fen) FILTER (WHERE kind IN ({UnitYears.DeductedKindsSql})), 0)::bigint,
                   (SELECT fen FROM returned) + (SELECT fen FROM lapsed),
                   coalesce(sum(fen) FILTER (WHERE kind IN ({UnitYears.RedeemedKindsSql})), 0)::bigint,
                   coalesce(sum(fen) FILTER (WHERE kind = {(short)AccountKind.Disbursed}), 0)::bigint,
                   coalesce(sum(fen) FILTER (WHERE kind = {(short)AccountKind.Receivable}), 0)::bigint,
                   (SELECT coalesce(sum(p.amount_fen), 0)::bigint FROM journal_entries e JOIN postings p ON p.entry_id = e.id
                    WHERE e.year = $2 AND e.kind = {(short)EntryKind.ClawBack} AND p.amount_fen > 0 AND e.created_at <= $1)
            FROM posted
            """,
            r => ProgramYearOf(r, year, policy.YearTotal.Value),
            ct,
            asOf, year);
}
