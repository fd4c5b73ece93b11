using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

public static class Policies
{
    public static async Task<VoucherPolicy?> FindAsync(LedgerDb db, int year, CancellationToken ct)
    {
        var row = await db.YearPolicies.AsNoTracking().SingleOrDefaultAsync(p => p.Year == year, ct);
        return row is null ? null : ToPolicy(row);
    }

    /// <summary>Reads the year's policy with its row locked until the transaction ends: shared against a concurrent
    /// SetYearPolicy (FundBudget), or exclusive (SetYearPolicy itself).</summary>
    public static async Task<VoucherPolicy?> LockAsync(LedgerDb db, int year, CancellationToken ct, bool forUpdate = false)
    {
        var rows = forUpdate
            ? db.YearPolicies.FromSql($"SELECT * FROM year_policies WHERE year = {year} FOR UPDATE")
            : db.YearPolicies.FromSql($"SELECT * FROM year_policies WHERE year = {year} FOR SHARE");
        var row = await rows.AsNoTracking().SingleOrDefaultAsync(ct);
        return row is null ? null : ToPolicy(row);
    }

    public static VoucherPolicy ToPolicy(YearPolicyRow row) => new(
        row.Year,
        new BasisPoints(row.SelfControllableRatioBp),
        new BasisPoints(row.OtherRatioBp),
        new BasisPoints(row.SmeBonusBp),
        new Fen(row.UnitYearCapFen),
        new Fen(row.UnitYearFloorFen),
        new Fen(row.YearTotalFen),
        row.ValidityMonths,
        row.EffectiveFrom);
}
