using System.Collections.Concurrent;
using QuotaLedger.Client;

namespace QuotaLedger.LoadTest;

/// <summary>The books after the run: what the responses applied is what the ledger shows deducted, per unit-year
/// and per grant; what the acknowledged grants granted is what the unit-year shows granted; no grant is overdrawn;
/// the trial balance balances.</summary>
internal static class Books
{
    public static async Task<List<string>> CheckAsync(QuotaLedgerClient client, int year, List<Target> targets, ConcurrentDictionary<int, long> applied,
        ConcurrentDictionary<int, long> granted)
    {
        var failures = new List<string>();
        foreach (var target in targets)
        {
            var unitYear = await client.GetUnitYearAsync(target.Unit, year);
            var expected = target.DeductedBefore.Value + applied.GetValueOrDefault(target.Index);
            if (unitYear.Deducted.Value != expected)
            {
                failures.Add($"unit-year {target.Unit}/{year}: ledger shows {unitYear.Deducted.Value} fen deducted, responses applied {expected}");
            }

            // Everything granted to the unit-year is still open or deducted (nothing expires or is released in a run).
            var grantedBefore = target.GrantedOpenBefore.Value + target.DeductedBefore.Value;
            var grantedAfter = unitYear.GrantedOpen.Value + unitYear.Deducted.Value;
            if (grantedAfter - grantedBefore != granted.GetValueOrDefault(target.Index))
            {
                failures.Add($"unit-year {target.Unit}/{year}: ledger shows {grantedAfter - grantedBefore} fen granted during the run, acknowledged grants granted {granted.GetValueOrDefault(target.Index)}");
            }

            var grant = await client.GetGrantAsync(target.GrantId);
            if (grant.Deducted.Value != applied.GetValueOrDefault(target.Index))
            {
                failures.Add($"grant {grant.GrantId}: ledger shows {grant.Deducted.Value} fen deducted, responses applied {applied.GetValueOrDefault(target.Index)}");
            }

            if (grant.Remaining.Value < 0 || grant.Deducted + grant.Remaining + grant.Returned != grant.Amount)
            {
                failures.Add($"grant {grant.GrantId}: amount {grant.Amount.Value}, deducted {grant.Deducted.Value}, remaining {grant.Remaining.Value}, returned {grant.Returned.Value}");
            }
        }

        var trial = await client.TrialBalanceAsync(year);
        if (!trial.Balanced || !trial.BalancesMatchPostings)
        {
            failures.Add($"trial balance {year}: debits {trial.TotalDebit.Value}, credits {trial.TotalCredit.Value}, balances match postings: {trial.BalancesMatchPostings}");
        }

        return failures;
    }
}
