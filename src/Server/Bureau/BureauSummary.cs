using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Admin;
using QuotaLedger.Server.Alerts;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Redemption;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Bureau;

/// <summary>What the bureau's page shows of a programme year, as JSON: each part read by the code that answers the
/// matching RPC (GetProgramYear, GetUnitYear, GetGrant, ListRedemptions, VerifyJournal), so the page and the API never
/// disagree. Money is in fen.</summary>
internal sealed record BureauSummary(
    int Year,
    DateTimeOffset At,
    ProgramYearFigures ProgramYear,
    List<UnitYearLine> ClosestToCap,
    ExpiringGrants ExpiringGrants,
    List<RedemptionStateLine> Redemptions,
    JournalStatus Journal,
    List<DeductionDayLine> DeductionsPerDay,
    List<ClosingLine> Closings)
{
    /// <summary>How many unit-years and expiring grants the page lists.</summary>
    public const int Listed = 10;

    public static async Task<BureauSummary> ReadAsync(LedgerDb db, LedgerDatabase database, Security.CheckpointSigner signer, int year, DateTimeOffset now, CancellationToken ct)
    {
        var programYear = await ProgramYears.ReadAsync(db, year, asOf: null, now, ct);
        var unitYears = await UnitYears.ClosestToCapAsync(db, year, now, Listed, ct);
        // "Soon" is the year's grant-expiry alert window, or the default one when the bureau turned that alert off.
        var rules = await AlertRules.ForYearAsync(db, year, ct);
        var window = rules.GrantExpiryDays > 0 ? rules.GrantExpiryDays : AlertRules.Defaults(year).GrantExpiryDays;
        var grants = await Grants.ExpiringAsync(db, year, now, TimeSpan.FromDays(window), Listed, ct);
        var redemptions = await RedemptionStates.ByStateAsync(db, year, ct);
        var journal = await JournalVerification.VerifyAsync(database, signer, checkpointId: 0, ct);
        var perDay = await DeductionReads.PerDayAsync(db, year, ct);
        var closings = await ClosingLinesAsync(db, year, ct);
        var shown = unitYears.Select(u => u.UnitUscc).Concat(grants.Select(g => g.UnitUscc)).Distinct().ToList();
        var names = await db.Units.Where(u => shown.Contains(u.Uscc)).ToDictionaryAsync(u => u.Uscc, u => u.Name, ct);

        return new BureauSummary(
            year,
            now,
            new ProgramYearFigures(programYear.YearTotalFen, programYear.FundedFen, programYear.PoolFen, programYear.GrantedOpenFen, programYear.DeductedFen,
                programYear.RedeemedFen, programYear.DisbursedFen, programYear.ReclaimedFen, programYear.ClawedBackFen, programYear.ReceivableFen),
            [.. unitYears.Select(u => new UnitYearLine(u.UnitUscc, names.GetValueOrDefault(u.UnitUscc, ""), u.Cap.Value, u.GrantedOpen.Value, u.Deducted.Value, u.Redeemed.Value, u.Headroom.Value))],
            new ExpiringGrants(window, [.. grants.Select(g => new ExpiringGrant(
                g.GrantId, g.ProviderUscc, g.UnitUscc, names.GetValueOrDefault(g.UnitUscc, ""), g.ContractNo, g.AmountFen, g.RemainingFen, g.ExpiresAt.ToDateTimeOffset()))]),
            [.. redemptions.Select(r => new RedemptionStateLine(
                r.State.ToString().ToLowerInvariant(), r.Count, r.RequestedFen, r.ApprovedFen, r.OutstandingFen, r.DisbursedFen, r.ClawedBackFen))],
            new JournalStatus(journal.Ok, journal.EntriesChecked, journal.Chains, journal.AccountsChecked, journal.CheckpointsVerified, journal.CheckpointId,
                journal.FirstBadEntryId, journal.FirstBadAccountId, journal.Problem),
            [.. perDay.Select(d => new DeductionDayLine(d.Day, d.Count, d.Applied.Value))],
            closings);
    }

    /// <summary>A line per month of the year and one for the year: closed or open, and for a closing the year's figures at
    /// its end as GetClosing records them, with what was corrected after it.</summary>
    private static async Task<List<ClosingLine>> ClosingLinesAsync(LedgerDb db, int year, CancellationToken ct)
    {
        var closed = await db.PeriodClosings.AsNoTracking().Where(c => c.Year == year).Select(c => c.Month).ToListAsync(ct);
        var closedThrough = await db.PeriodClosings.Where(c => c.Month > 0).MaxAsync(c => (DateTimeOffset?)c.EndsAt, ct);
        var lines = new List<ClosingLine>();
        foreach (var month in Enumerable.Range(1, 12).Append(0))
        {
            var period = new Rules.Period(year, month);
            if (!closed.Contains((short)month))
            {
                // A month before the first closing had nothing to close: the books are closed through it all the same.
                var state = month > 0 && period.EndsAt <= closedThrough ? "before the first closing" : "open";
                lines.Add(new ClosingLine(period.ToString(), month, false, state, null, "", 0, 0, null, 0, 0));
                continue;
            }

            var closing = await Admin.Closings.ReadAsync(db, period, ct);
            var figures = closing.Decoded.ProgramYears.SingleOrDefault(p => p.Year == year);
            lines.Add(new ClosingLine(period.ToString(), month, true, "closed", closing.ClosedAt.ToDateTimeOffset(), closing.ClosedBy, closing.CheckpointId,
                closing.Decoded.Entries,
                figures is null ? null : new ClosingFigureLine(figures.FundedFen, figures.PoolFen, figures.GrantedOpenFen, figures.DeductedFen, figures.DisbursedFen),
                closing.Corrections.Count, closing.Corrections.Sum(c => c.AmountFen)));
        }

        return lines;
    }
}

/// <summary>A month (1-12) or the year (0): whether it is closed, and what its closing recorded.</summary>
internal sealed record ClosingLine(
    string Period, int Month, bool Closed, string State, DateTimeOffset? ClosedAt, string ClosedBy, long CheckpointId, long Entries, ClosingFigureLine? Figures,
    int Corrections, long CorrectedFen);

internal sealed record ClosingFigureLine(long FundedFen, long PoolFen, long GrantedOpenFen, long DeductedFen, long DisbursedFen);

internal sealed record ProgramYearFigures(
    long YearTotalFen, long FundedFen, long PoolFen, long GrantedOpenFen, long DeductedFen, long RedeemedFen, long DisbursedFen,
    long ReclaimedFen, long ClawedBackFen, long ReceivableFen);

internal sealed record UnitYearLine(string UnitUscc, string UnitName, long CapFen, long GrantedOpenFen, long DeductedFen, long RedeemedFen, long HeadroomFen);

internal sealed record ExpiringGrants(int WithinDays, List<ExpiringGrant> Grants);

internal sealed record ExpiringGrant(long GrantId, string ProviderUscc, string UnitUscc, string UnitName, string ContractNo, long AmountFen, long RemainingFen, DateTimeOffset ExpiresAt);

internal sealed record RedemptionStateLine(string State, int Count, long RequestedFen, long ApprovedFen, long OutstandingFen, long DisbursedFen, long ClawedBackFen);

internal sealed record JournalStatus(
    bool Ok, long EntriesChecked, long Chains, long AccountsChecked, long CheckpointsVerified, long CheckpointId, long FirstBadEntryId, long FirstBadAccountId,
    string Problem);

internal sealed record DeductionDayLine(DateOnly Day, int Count, long AppliedFen);
