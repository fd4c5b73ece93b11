using QuotaLedger.V1;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>The suite's database and its main server, whose clock stands still in June 2026 (the seeded policy's
/// year, after the measures took effect on 2026-05-13). Tests that move time, or need a year of their own, start another server on the same database.</summary>
public sealed class LedgerFixture : IAsyncLifetime
{
    public static readonly DateTimeOffset Now = new(2026, 6, 2, 1, 0, 0, TimeSpan.Zero);

    /// <summary>What the fixture funds the 2026 pool with: half the year's total.</summary>
    public const long Funding2026Fen = 5_000_000_000;

    private readonly List<LedgerServer> _servers = [];

    public TestDatabase Database { get; private set; } = null!;

    public LedgerServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Database = await TestDatabase.StartAsync();
        Server = StartServer(Now);
        await Server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = Funding2026Fen });
    }

    /// <summary>Another server instance on the suite's database, with its own clock.</summary>
    public LedgerServer StartServer(DateTimeOffset now, bool backgroundExpiry = false, IDictionary<string, string?>? settings = null)
    {
        var server = LedgerServer.Start(Database, now, backgroundExpiry, settings);
        lock (_servers)
        {
            _servers.Add(server);
        }

        return server;
    }

    /// <summary>Checks the books once more after every test of the suite has run (a failure here fails the run as a
    /// collection cleanup failure), then stops the servers and drops the database.</summary>
    public async Task DisposeAsync()
    {
        try
        {
            var trial = await Server.Admin.TrialBalanceAsync(new TrialBalanceRequest());
            if (!trial.Balanced || !trial.BalancesMatchPostings || trial.UnbalancedEntries != 0)
            {
                throw new InvalidOperationException($"After the suite the books do not balance: {trial}");
            }
        }
        finally
        {
            foreach (var server in _servers)
            {
                await server.DisposeAsync();
            }

            await Database.DisposeAsync();
        }
    }
}

[CollectionDefinition(Name)]
public sealed class LedgerCollection : ICollectionFixture<LedgerFixture>
{
    public const string Name = "ledger";
}
