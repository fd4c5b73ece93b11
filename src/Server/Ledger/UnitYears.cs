using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

/// <summary>What a unit-year has committed, as the cap rule counts it.</summary>
public sealed record UnitYearFigures(string UnitUscc, int Year, Fen Cap, Fen GrantedOpen, Fen Deducted, Fen Redeemed)
{
    public Fen Headroom => UnitYearCap.Headroom(Cap, GrantedOpen, Deducted);

    internal V1.UnitYear ToApi() => new()
    {
        UnitUscc = UnitUscc,
        Year = Year,
        CapFen = Cap.Value,
        GrantedOpenFen = GrantedOpen.Value,
        DeductedFen = Deducted.Value,
        RedeemedFen = Redeemed.Value,
        HeadroomFen = Headroom.Value,
    };
}

internal static class UnitYears
{
    /// <summary>Creates the unit-year (and its deducted account) if it is new, then locks its row (<see cref="LockOrder"/>,
    /// step 3). Every change of a unit-year's quota takes this lock before reading anything it checks.</summary>
    public static async Task<UnitYearRow> LockOrCreateAsync(LedgerDb db, string unitUscc, int year, CancellationToken ct)
    {
        var id = await EnsureAsync(db, unitUscc, year, ct);
        return (await LockAllAsync(db, [id], ct)).Single();
    }

    /// <summary>Locks several unit-years in the one order (<see cref="LockOrder"/>: by id), so two calls locking the same
    /// pair never deadlock, and reads them.</summary>
    public static async Task<List<UnitYearRow>> LockAllAsync(LedgerDb db, long[] ids, CancellationToken ct)
    {
        await LockOrder.TakeAsync(db, new LockSet { UnitYearIds = ids }, ct);
        return await db.UnitYears.AsNoTracking().Where(u => ids.Contains(u.Id)).OrderBy(u => u.Id).ToListAsync(ct);
    }

    /// <summary>Creates the unit-year of unit <c>$1</c> (text) and year <c>$2</c> with its deducted account, unless it
    /// exists. When two first writes race, the loser's account insert waits for the winner and then does nothing; the
    /// unit-year both then lock is the winner's. A statement of its own: the unit-year is read after it.</summary>
    public static readonly string CreateSql =
        $"""
        WITH account AS (
            INSERT INTO accounts (kind, year, unit_uscc, balance_fen) VALUES ({(short)AccountKind.Deducted}, $2, $1, 0)
            ON CONFLICT DO NOTHING RETURNING id)
        INSERT INTO unit_years (unit_uscc, year, deducted_account_id) SELECT $1, $2, id FROM account
        ON CONFLICT DO NOTHING
        """;

    /// <summary>Creates the unit-year and its deducted account if they do not exist yet.</summary>
    public static async Task<long> EnsureAsync(LedgerDb db, string unitUscc, int year, CancellationToken ct)
    {
        await db.QueryListAsync(CreateSql, _ => 0, ct, unitUscc, year);
        return await db.UnitYears.Where(u => u.UnitUscc == unitUscc && u.Year == year).Select(u => u.Id).SingleAsync(ct);
    }

    /// <summary>The unit-year's accounts other than grants (the redemption ones created on first use), by kind.</summary>
    public static async Task<Dictionary<AccountKind, long>> RedemptionAccountsAsync(LedgerDb db, string unitUscc, int year, CancellationToken ct)
    {
        await db.Database.ExecuteSqlAsync(
            $"""
            INSERT INTO accounts (kind, year, unit_uscc, balance_fen)
            VALUES ({(short)AccountKind.Pending}, {year}, {unitUscc}, 0), ({(short)AccountKind.Redeemed}, {year}, {unitUscc}, 0),
                   ({(short)AccountKind.Disbursed}, {year}, {unitUscc}, 0), ({(short)AccountKind.Receivable}, {year}, {unitUscc}, 0)
            ON CONFLICT DO NOTHING
            """, ct);
        return await db.Accounts.AsNoTracking()
            .Where(a => a.UnitUscc == unitUscc && a.Year == year && a.Kind != AccountKind.Grant)
            .ToDictionaryAsync(a => a.Kind, a => a.Id, ct);
    }

    // USCC columns are character(18) where a party is registered and text where it is recorded; comparing a
    // character column with a text value casts the column and loses its index, so text values are cast instead.

    /// <summary>The account kinds that count as deducted in a unit-year's figures: deducted and not applied for, under
    /// review, approved, paid.</summary>
    public static readonly AccountKind[] CountAsDeducted = [AccountKind.Deducted, AccountKind.Pending, AccountKind.Redeemed, AccountKind.Disbursed];

    /// <summary>The account kinds that count as redeemed: approved and paid.</summary>
    public static readonly AccountKind[] CountAsRedeemed = [AccountKind.Redeemed, AccountKind.Disbursed];

    public static readonly string DeductedKindsSql = string.Join(", ", CountAsDeducted.Select(k => (short)k));

    public static readonly string RedeemedKindsSql = string.Join(", ", CountAsRedeemed.Select(k => (short)k));

    /// <summary>The figures' columns (cap, granted open, deducted, redeemed) for a row source <c>uy</c> with columns
    /// <c>id</c>, <c>unit_uscc</c> (character) and <c>year</c>, at the time in parameter <c>$1</c>: grants past their
    /// expiry no longer count as open, whether or not the expiry pass has returned their balance yet; the cap is the
    /// year's policy's (0 without one).</summary>
    public static readonly string FiguresColumns =
        $"""
        coalesce((SELECT p.unit_year_cap_fen FROM year_policies p WHERE p.year = uy.year), 0)::bigint,
        coalesce((SELECT sum(a.balance_fen) FROM grants g JOIN accounts a ON a.id = g.account_id
                  WHERE g.unit_year_id = uy.id AND g.state = {(short)GrantState.Open} AND {Grants.LiveSql("g", "$1")}), 0)::bigint,
        coalesce((SELECT sum(a.balance_fen) FROM accounts a WHERE a.unit_uscc = uy.unit_uscc AND a.year = uy.year
                  AND a.kind IN ({DeductedKindsSql})), 0)::bigint,
        coalesce((SELECT sum(a.balance_fen) FROM accounts a WHERE a.unit_uscc = uy.unit_uscc AND a.year = uy.year
                  AND a.kind IN ({RedeemedKindsSql})), 0)::bigint
        """;

    /// <summary>What account <c>{account}</c> held at the time in parameter <c>$1</c>, from its postings: the sum of the
    /// postings of entries created at or before then (debit-normal, as every account a unit-year counts is). The
    /// as-of reads are built on it, so they never depend on a balance or state kept beside the journal.</summary>
    public static string PostedBalanceSql(string account) =>
        $"""
        (SELECT coalesce(sum(p.amount_fen), 0) FROM postings p JOIN journal_entries e ON e.id = p.entry_id
         WHERE p.account_id = {account} AND e.created_at <= $1)
        """;

    /// <summary>The figures' columns as <see cref="FiguresColumns"/>, but as the ledger stood at the time in parameter
    /// <c>$1</c>, from the journal: a grant counts as open with what its postings left it then, unless it was past its
    /// expiry then (as though the expiry pass had posted at expires_at); deducted and redeemed are the postings to their
    /// accounts up to then. The cap is the policy's (a policy keeps no history).</summary>
    public static readonly string FiguresAsOfColumns =
        $"""
        coalesce((SELECT p.unit_year_cap_fen FROM year_policies p WHERE p.year = uy.year), 0)::bigint,
        coalesce((SELECT sum({PostedBalanceSql("g.account_id")}) FROM grants g WHERE g.unit_year_id = uy.id AND {Grants.LiveSql("g", "$1")}), 0)::bigint,
        coalesce((SELECT sum({PostedBalanceSql("a.id")}) FROM accounts a WHERE a.unit_uscc = uy.unit_uscc AND a.year = uy.year
                  AND a.kind IN ({DeductedKindsSql})), 0)::bigint,
        coalesce((SELECT sum({PostedBalanceSql("a.id")}) FROM accounts a WHERE a.unit_uscc = uy.unit_uscc AND a.year = uy.year
                  AND a.kind IN ({RedeemedKindsSql})), 0)::bigint
        """;

    /// <summary>The unit-year's figures as the ledger stood at <paramref name="asOf"/> (see <see cref="FiguresAsOfColumns"/>).</summary>
    public static Task<UnitYearFigures> FiguresAsOfAsync(LedgerDb db, string unitUscc, int year, DateTimeOffset asOf, CancellationToken ct) =>
        ReadOneAsync(db, FiguresAsOfColumns, unitUscc, year, asOf, ct);

    public static UnitYearFigures ReadFigures(Npgsql.NpgsqlDataReader r, int first, string unitUscc, int year) =>
        new(unitUscc, year, new Fen(r.GetInt64(first)), new Fen(r.GetInt64(first + 1)), new Fen(r.GetInt64(first + 2)), new Fen(r.GetInt64(first + 3)));

    /// <summary>The unit-year's figures at <paramref name="now"/> (see <see cref="FiguresColumns"/>).</summary>
    public static Task<UnitYearFigures> FiguresAsync(LedgerDb db, string unitUscc, int year, DateTimeOffset now, CancellationToken ct) =>
        ReadOneAsync(db, FiguresColumns, unitUscc, year, now, ct);

    /// <summary>One unit-year's figures by <paramref name="columns"/> (which read the time as <c>$1</c>); a unit-year not
    /// yet created reads as one with nothing in it.</summary>
    private static Task<UnitYearFigures> ReadOneAsync(LedgerDb db, string columns, string unitUscc, int year, DateTimeOffset at, CancellationToken ct) =>
        db.QueryRowAsync(
            $"""
            SELECT {columns}
            FROM (SELECT (SELECT k.id FROM unit_years k WHERE k.unit_uscc = $2::bpchar AND k.year = $3) AS id, $2::bpchar AS unit_uscc, $3 AS year) uy
            """,
            r => ReadFigures(r, 0, unitUscc, year),
            ct,
            at, unitUscc, year);

    /// <summary>The year's unit-years with the least headroom under their cap at <paramref name="now"/> (the most granted
    /// open and deducted, the cap being the year's for all), at most <paramref name="limit"/>; figures as
    /// <see cref="FiguresAsync"/> reads them.</summary>
    public static Task<List<UnitYearFigures>> ClosestToCapAsync(LedgerDb db, int year, DateTimeOffset now, int limit, CancellationToken ct) =>
        db.QueryListAsync(
            $"""
            SELECT f.* FROM (SELECT uy.unit_uscc, {FiguresColumns} FROM unit_years uy WHERE uy.year = $2)
              AS f(unit_uscc, cap_fen, granted_open_fen, deducted_fen, redeemed_fen)
            WHERE f.granted_open_fen + f.deducted_fen > 0
            ORDER BY f.granted_open_fen + f.deducted_fen DESC, f.unit_uscc
            LIMIT $3
            """,
            r => ReadFigures(r, 1, r.GetString(0), year),
            ct,
            now, year, limit);
}
