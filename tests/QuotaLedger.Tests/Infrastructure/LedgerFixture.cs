using QuotaLedger.V1;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>A test class's own database and main server, whose clock stands still in June 2026 (the seeded policy's
/// year, after the measures took effect on 2026-05-13); tests that move time start another server on the same database.
/// Test classes run side by side, each on its own database, so a class never sees another's data: programme-year figures
/// are the class's own, and no year needs to be kept apart from other classes'.
/// <para>A new test class takes it as a class fixture, and that is all it needs:</para>
/// <code>
/// public sealed class GrantTests(LedgerFixture fixture) : IClassFixture&lt;LedgerFixture&gt;
/// </code>
/// <para>A class whose tests start processes (the server's, dotnet's, a browser's) or PostgreSQL clusters, or that kill
/// PostgreSQL, is slow: it joins the <see cref="SlowTests"/> collection, so that slow classes run one at a time (two
/// builds or server starts at once on two cores miss their timeouts), and says so with a trait, so that the fast set
/// runs without it (<c>dotnet test --filter "Category!=Slow"</c>):</para>
/// <code>
/// [Collection(SlowTests.Collection), Trait("Category", "Slow")]
/// public sealed class PackageTests(LedgerFixture fixture) : IClassFixture&lt;LedgerFixture&gt;
/// </code>
/// <para>Every other class is a collection of its own (xunit's default); collections run side by side (xunit.runner.json),
/// the slow one started first (<see cref="LedgerTestFramework"/>).
/// A class that reads something of the whole process (an <c>ActivityListener</c>, a meter listener by name, a
/// folder, an environment variable) filters what it reads to its own or keeps its own copy; ports come from
/// <see cref="TestPorts.Free"/>.</para>
/// </summary>
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

    /// <summary>Another server instance on the class's database, with its own clock.</summary>
    public LedgerServer StartServer(DateTimeOffset now, bool backgroundExpiry = false, IDictionary<string, string?>? settings = null)
    {
        var server = LedgerServer.Start(Database, now, backgroundExpiry, settings);
        lock (_servers)
        {
            _servers.Add(server);
        }

        return server;
    }

    /// <summary>Checks the books once more after every test of the class has run (a failure here fails the class as a
    /// fixture cleanup failure), then stops the servers and drops the database.</summary>
    public async Task DisposeAsync()
    {
        try
        {
            var trial = await Server.Admin.TrialBalanceAsync(new TrialBalanceRequest());
            if (!trial.Balanced || !trial.BalancesMatchPostings || trial.UnbalancedEntries != 0)
            {
                throw new InvalidOperationException($"After the class's tests the books do not balance: {trial}");
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

/// <summary>The slow, process-level classes, one at a time beside the fast ones (see <see cref="LedgerFixture"/>).</summary>
[CollectionDefinition(Collection)]
public sealed class SlowTests
{
    public const string Collection = "slow";
}

/// <summary>The classes that read the change feed (watches, entries in commit order), run alone after the classes that run
/// side by side. The feed shows a row once every older transaction of the whole PostgreSQL server has ended (below the
/// snapshot's xmin, which counts every database's transactions), so another class's transaction held open on purpose
/// (a row lock a test holds while calls queue) holds back the feed of this class's database: a watch "from now" then
/// starts before an entry committed just earlier, or waits past its patience.</summary>
[CollectionDefinition(Collection, DisableParallelization = true)]
public sealed class FeedTests
{
    public const string Collection = "feed";
}
