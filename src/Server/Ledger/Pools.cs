using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

/// <summary>The pool rule (POLICY.md, Expire): what a year's pool has available is its balance plus what the year's open
/// grants past their expiry still hold, reclaimed at expires_at whether or not the expiry pass has moved it yet. Every
/// figure of the pool reads it here: the programme year, the pool-low alert and the grant path.</summary>
internal static class Pools
{
    /// <summary>What the open grants of year <paramref name="year"/> that are past their expiry at <paramref name="now"/>
    /// still hold (SQL, bigint): quota already reclaimed for the pool and not granted any more. Both arguments are
    /// parameters such as <c>$1</c>, never pasted values.</summary>
    public static string LapsedSql(string year, string now) =>
        $"""
        coalesce((SELECT sum(a.balance_fen) FROM grants g JOIN accounts a ON a.id = g.account_id
                  WHERE g.year = {year} AND g.state = {(short)GrantState.Open} AND {Grants.DueSql("g", now)}), 0)::bigint
        """;

    /// <summary>What the pool of year <paramref name="year"/> has available at <paramref name="now"/> (SQL, bigint): its
    /// balance (0 when the year was never funded) and <see cref="LapsedSql"/>.</summary>
    public static string AvailableSql(string year, string now) =>
        $"""
        coalesce((SELECT p.balance_fen FROM accounts p WHERE p.kind = {(short)AccountKind.Pool} AND p.year = {year}), 0)::bigint
        + {LapsedSql(year, now)}
        """;

    /// <summary>The year's settled account (what its pool held when the year closed, and what came back after), created
    /// on first use: where a closed year's quota goes instead of its pool.</summary>
    public static async Task<long> SettledAccountAsync(LedgerDb db, int year, CancellationToken ct)
    {
        await db.Database.ExecuteSqlAsync(
            $"INSERT INTO accounts (kind, year, balance_fen) VALUES ({(short)AccountKind.Settled}, {year}, 0) ON CONFLICT DO NOTHING", ct);
        return await db.Accounts.Where(a => a.Kind == AccountKind.Settled && a.Year == year && a.UnitUscc == null).Select(a => a.Id).SingleAsync(ct);
    }
}
