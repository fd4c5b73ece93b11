using QuotaLedger.V1;

namespace QuotaLedger.Tests.Infrastructure;

internal static class Books
{
    /// <summary>The double-entry invariants over the whole database: debits equal credits, every entry balances,
    /// every account's stored balance equals the sum of its postings.</summary>
    public static async Task<TrialBalanceResponse> AssertBalancedAsync(LedgerServer server, int year = 0)
    {
        var trial = await server.Admin.TrialBalanceAsync(new TrialBalanceRequest { Year = year });
        Assert.True(trial.Balanced, $"debits {trial.TotalDebitFen} != credits {trial.TotalCreditFen}");
        Assert.Equal(0, trial.UnbalancedEntries);
        Assert.True(trial.BalancesMatchPostings);
        Assert.All(trial.Kinds, k => Assert.Equal(k.PostingsBalanceFen, k.BalanceFen));
        return trial;
    }

    /// <summary>The books balance and every journal chain verifies.</summary>
    public static async Task AssertHoldAsync(LedgerServer server)
    {
        await AssertBalancedAsync(server);
        var verdict = await server.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.True(verdict.Ok, verdict.Problem);
    }
}

internal static class Statement
{
    public static async Task<List<JournalEntry>> ReadAsync(LedgerServer server, ListEntriesRequest request)
    {
        using var call = server.Ledger.ListEntries(request);
        var entries = new List<JournalEntry>();
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            entries.Add(call.ResponseStream.Current);
        }

        return entries;
    }
}
