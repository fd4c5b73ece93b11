using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Whatever the class has done so far, the books balance. <see cref="LedgerFixture.DisposeAsync"/> checks the
/// same once more after each class's last test.</summary>
public sealed class BooksTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task After_grants_and_deductions_the_trial_balance_balances_and_balances_equal_postings()
    {
        // The class's database is its own: what it holds is what this class did.
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 50_000);
        await fixture.Server.DeductAsync(deal, grant.GrantId, 10_000);

        var trial = await Books.AssertBalancedAsync(fixture.Server);
        Assert.True(trial.TotalDebitFen > 0);

        // The 2026 budget: everything funded is in the pool, held by grants, or deducted.
        var year = await fixture.Server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 });
        Assert.Equal(year.FundedFen, year.PoolFen + year.GrantedOpenFen + year.DeductedFen + year.ReceivableFen);
        Assert.True(year.DeductedFen > 0);
        var byKind = (await Books.AssertBalancedAsync(fixture.Server, 2026)).Kinds.ToDictionary(k => k.Kind);
        Assert.Equal(year.FundedFen, byKind[AccountKind.Funding].BalanceFen);
    }

    [Fact]
    public async Task The_trial_balance_reads_one_snapshot_while_deductions_commit()
    {
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 50_000_000);
        using var stop = new CancellationTokenSource();
        var deducting = Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await fixture.Server.DeductAsync(deal, grant.GrantId, 1_000);
            }
        })));

        // Each trial balance reads every account kind and then the entries; a deduction committing between two of
        // those reads would show debits and credits apart if they were not one snapshot.
        for (var i = 0; i < 40; i++)
        {
            await Books.AssertBalancedAsync(fixture.Server, 2026);
        }

        await stop.CancelAsync();
        await deducting;
    }
}
