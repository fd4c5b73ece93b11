using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Redemption;

/// <summary>A year's applications for redemption in one state: how many, and their amounts, as ListRedemptions shows
/// them one by one.</summary>
internal sealed record RedemptionStateFigures(
    RedemptionState State, int Count, long RequestedFen, long ApprovedFen, long OutstandingFen, long DisbursedFen, long ClawedBackFen);

internal static class RedemptionStates
{
    /// <summary>The year's applications by state, every state listed (with zeros where there are none), in the order an
    /// application moves through them.</summary>
    public static async Task<List<RedemptionStateFigures>> ByStateAsync(LedgerDb db, int year, CancellationToken ct)
    {
        var found = await db.Redemptions.AsNoTracking()
            .Where(r => r.Year == year)
            .GroupBy(r => r.State)
            .Select(g => new RedemptionStateFigures(
                g.Key, g.Count(), g.Sum(r => r.RequestedFen), g.Sum(r => r.ApprovedFen ?? 0), g.Sum(r => r.OutstandingFen),
                g.Sum(r => r.DisbursedFen), g.Sum(r => r.ClawedBackFen)))
            .ToDictionaryAsync(f => f.State, ct);
        return [.. Enum.GetValues<RedemptionState>().Select(state => found.GetValueOrDefault(state) ?? new RedemptionStateFigures(state, 0, 0, 0, 0, 0, 0))];
    }
}
