
namespace QuotaLedger.Server.Storage;

/// <summary>The one order in which a write locks the rows it changes, so no two writes ever wait on each other in a
/// cycle:
/// <list type="number">
/// <item>the year's pool account (grants draw from it, releases and expiry return to it);</item>
/// <item>contracts, by id (a grant commits quota on one, a deduction invoices against one);</item>
/// <item>unit-years, by id (every change of a unit's quota in a year, and its hash chain);</item>
/// <item>grants, by id (the grant row itself, when its state changes).</item>
/// </list>
/// Within a step rows are locked in id order, each FOR NO KEY UPDATE: it excludes every other writer of the row as
/// FOR UPDATE would, but not the FOR KEY SHARE a foreign key's check takes (a gift inserting a grant of a contract, an
/// entry naming a grant), so a write that references a row another holds never waits for it, and no cycle can close
/// through a reference. The write engine locks without waiting (SKIP LOCKED) and leaves the writes
/// whose rows another session holds for a transaction that waits, in this same order; every other path waits, in this
/// same order (<see cref="TakeAsync"/>). Each statement below is the only text that locks its table on the write path.
/// The bureau's year-level writes come before step 1: SetYearPolicy and FundBudget lock the year's policy row, then
/// its funding account (<c>Ledger.Policies.LockAsync</c>, <c>Admin.AdminGrpcService</c>), then post to the pool; no
/// other write locks those two rows, so that prefix cannot close a cycle.</summary>
internal static class LockOrder
{
    /// <summary>Step 1, the pools of the years in <c>$1</c>: id, year, balance.</summary>
    public static string Pools(RowLock mode) =>
        $"SELECT a.id, a.year, a.balance_fen FROM accounts a WHERE a.kind = {(short)AccountKind.Pool} AND a.year = ANY($1) ORDER BY a.id{Clause(mode)}";

    /// <summary>Step 2, the contracts with the ids in <paramref name="ids"/> (an array expression, <c>$1</c> by default):
    /// every column a grant or a deduction reads of one.</summary>
    public static string Contracts(RowLock mode, string ids = "$1") =>
        $"""
        SELECT c.id, c.provider_uscc, c.contract_no, c.unit_uscc, c.amount_fen, c.granted_fen, c.invoiced_fen, c.self_controllable,
               c.uses_innovation_voucher
        FROM contracts c WHERE c.id = ANY({ids}) ORDER BY c.id{Clause(mode)}
        """;

    /// <summary>Step 3, the unit-years with the ids in <c>$1</c>.</summary>
    public static string UnitYears(RowLock mode) =>
        $"SELECT uy.id, uy.unit_uscc, uy.year, uy.deducted_account_id FROM unit_years uy WHERE uy.id = ANY($1) ORDER BY uy.id{Clause(mode)}";

    /// <summary>Step 4, the grants with the ids in <c>$1</c>.</summary>
    public const string Grants = "SELECT g.id FROM grants g WHERE g.id = ANY($1) ORDER BY g.id FOR NO KEY UPDATE";

    /// <summary>Takes the locks of a write that waits for them, step by step in the one order, on <paramref name="db"/>'s
    /// open transaction. Empty steps are skipped.</summary>
    public static async Task TakeAsync(LedgerDb db, LockSet set, CancellationToken ct)
    {
        var steps = new (string Sql, object Ids)[]
        {
            (Pools(RowLock.Wait), set.PoolYears.Distinct().ToArray()),
            (Contracts(RowLock.Wait), set.ContractIds.Distinct().ToArray()),
            (UnitYears(RowLock.Wait), set.UnitYearIds.Distinct().ToArray()),
            (Grants, set.GrantIds.Distinct().ToArray()),
        };
        foreach (var (sql, ids) in steps)
        {
            if (((Array)ids).Length > 0)
            {
                await db.QueryRowAsync($"SELECT count(*) FROM ({sql}) locked", r => r.GetInt64(0), ct, ids);
            }
        }
    }

    private static string Clause(RowLock mode) => mode switch
    {
        RowLock.Wait => " FOR NO KEY UPDATE",
        RowLock.Skip => " FOR NO KEY UPDATE SKIP LOCKED",
        _ => "",
    };
}

/// <summary>How a step of <see cref="LockOrder"/> reads its rows: locking them and waiting for them, locking those no
/// other session holds and skipping the rest, or (a dry run's snapshot) not locking at all.</summary>
internal enum RowLock
{
    Wait,
    Skip,
    None,
}

/// <summary>The rows a write locks, by kind; <see cref="LockOrder.TakeAsync"/> locks them in the one order.</summary>
internal sealed record LockSet
{
    public IReadOnlyList<int> PoolYears { get; init; } = [];
    public IReadOnlyList<long> ContractIds { get; init; } = [];
    public IReadOnlyList<long> UnitYearIds { get; init; } = [];
    public IReadOnlyList<long> GrantIds { get; init; } = [];
}
