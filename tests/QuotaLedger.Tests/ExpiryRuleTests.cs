using Grpc.Core;
using Npgsql;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Rules;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;
using GrantState = QuotaLedger.Server.Storage.GrantState;
using StorageEntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Tests;

/// <summary>The expiry rule: one pure function (<see cref="ExpiryRules.Decide"/>), checked on its own with no database, and
/// through the write engine that calls it for the expiry pass, coalesced and one transaction per grant, which must
/// answer alike; and two passes on two servers at once, beside deductions of the same unit-years, expire each grant once.</summary>
public sealed class ExpiryRuleTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly DateTimeOffset s_expiresAt = new(2026, 7, 5, 16, 0, 0, TimeSpan.Zero);

    [Fact]
    public void The_rule_function_expires_an_open_grant_past_its_expiry_and_leaves_every_other_alone()
    {
        var cases = new (string Case, GrantFacts? Grant, DateTimeOffset Now, string Expected)[]
        {
            ("open, at its expiry", Grant(GrantState.Open, 3_000), s_expiresAt, "expires, returning 3000"),
            ("open, after its expiry", Grant(GrantState.Open, 3_000), s_expiresAt.AddDays(40), "expires, returning 3000"),
            ("open and empty, past its expiry", Grant(GrantState.Open, 0), s_expiresAt, "expires, returning 0"),
            ("open, a microsecond before its expiry", Grant(GrantState.Open, 3_000), s_expiresAt.AddTicks(-10), "left alone"),
            ("released", Grant(GrantState.Released, 0), s_expiresAt, "left alone"),
            ("expired already", Grant(GrantState.Expired, 0), s_expiresAt, "left alone"),
            ("no such grant", null, s_expiresAt, "left alone"),
        };

        foreach (var (name, grant, now, expected) in cases)
        {
            var answer = ExpiryRules.Decide(grant, now) is { } returned ? $"expires, returning {returned.Value}" : "left alone";
            Assert.True(expected == answer, $"{name}: expected {expected}, got {answer}");
        }
    }

    [Fact]
    public async Task Both_engine_paths_expire_the_table_of_grants_alike()
    {
        var start = new DateTimeOffset(2026, 6, 5, 2, 0, 0, TimeSpan.Zero);
        await using var coalesced = fixture.StartServer(start);
        var expected = new List<(string, string)>
        {
            ("open, part deducted", "expired, 7000 back to the pool"),
            ("open, all deducted", "expired, nothing to return"),
            ("open, untouched", "expired, 20000 back to the pool"),
            ("another provider's", "expired, 4000 back to the pool"),
            ("released before its expiry", "released"),
            ("granted later, not yet due", "open"),
        };
        Assert.Equal(expected, await RunTableAsync(coalesced));
        await using var oneByOne = fixture.StartServer(coalesced.Clock.GetUtcNow(), settings: new Dictionary<string, string?> { ["Deductions:Coalesce"] = "false" });
        Assert.Equal(expected, await RunTableAsync(oneByOne));
        await Books.AssertHoldAsync(oneByOne);
    }

    /// <summary>Grants in each state the rule tells apart, one pass a month and two days later (4 grants expired, 31,000
    /// fen returned: the empty grant closes with no entry), then a second pass that finds nothing to do. The grant left
    /// open is released at the end, so that a later pass on the class's database finds only its own test's grants.</summary>
    private static async Task<List<(string, string)>> RunTableAsync(LedgerServer server)
    {
        var deal = await server.NewDealAsync(contractAmountFen: 200_000);
        var partDeducted = await server.GrantAsync(deal, 10_000);
        await server.DeductAsync(deal, partDeducted.GrantId, 6_000);
        var allDeducted = await server.GrantAsync(deal, 2_000);
        await server.DeductAsync(deal, allDeducted.GrantId, 4_000);
        var untouched = await server.GrantAsync(deal, 20_000);
        var other = await server.NewDealAsync(contractAmountFen: 200_000);
        var others = await server.GrantAsync(other, 4_000);
        var released = await server.GrantAsync(deal, 5_000);
        await server.Ledger.ReleaseAsync(new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = deal.Provider, GrantId = released.GrantId, StatementRef = "JS-1" });
        server.Clock.Advance(TimeSpan.FromDays(20));
        var later = await server.GrantAsync(deal, 1_000);
        server.Clock.Advance(TimeSpan.FromDays(12));

        var pass = await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        Assert.Equal((3 + 1, 7_000 + 0 + 20_000 + 4_000L, 0), (pass.ExpiredGrants, pass.ReturnedFen, pass.FailedGrants));
        var again = await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        Assert.Equal((0, 0L, 0), (again.ExpiredGrants, again.ReturnedFen, again.FailedGrants));

        var answers = new List<(string, string)>();
        foreach (var (name, grant) in new[]
        {
            ("open, part deducted", partDeducted), ("open, all deducted", allDeducted), ("open, untouched", untouched),
            ("another provider's", others), ("released before its expiry", released), ("granted later, not yet due", later),
        })
        {
            var info = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
            var entries = await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = grant.GrantId });
            var expiries = entries.Where(e => e.Kind == V1.EntryKind.Expiry).ToList();
            answers.Add((name, info.Status switch
            {
                GrantStatus.Expired when expiries.Count == 0 && info.ReturnedFen == 0 => "expired, nothing to return",
                GrantStatus.Expired when expiries.Count == 1 && expiries[0].Postings.Single(p => p.AccountKind == V1.AccountKind.Pool).DebitFen == info.ReturnedFen
                    => $"expired, {info.ReturnedFen} back to the pool",
                GrantStatus.Expired => $"expired with {expiries.Count} expiry entries, returned {info.ReturnedFen}",
                GrantStatus.Released => "released",
                GrantStatus.Open => "open",
                var status => status.ToString(),
            }));
        }

        await server.Ledger.ReleaseAsync(new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = deal.Provider, GrantId = later.GrantId, StatementRef = "JS-2" });
        return answers;
    }

    [Fact]
    public async Task Two_passes_on_two_servers_beside_deductions_expire_each_grant_once()
    {
        var start = new DateTimeOffset(2026, 6, 8, 2, 0, 0, TimeSpan.Zero);
        await using var first = fixture.StartServer(start);
        await using var second = fixture.StartServer(start);

        // 12 unit-years, each with 20 grants that fall due and one that stays open and takes deductions meanwhile.
        var deals = new List<Deal>();
        var due = new List<long>();
        for (var i = 0; i < 12; i++)
        {
            var deal = await first.NewDealAsync(contractAmountFen: 1_000_000);
            deals.Add(deal);
            var grants = await first.Ledger.GrantManyAsync(new GrantManyRequest { Items = { Enumerable.Range(0, 20).Select(_ => deal.GrantRequest(100 + i)) } });
            Assert.Equal(20, grants.Applied);
            due.AddRange(grants.Outcomes.Select(o => o.Applied.GrantId));
        }

        foreach (var server in new[] { first, second })
        {
            server.Clock.Advance(TimeSpan.FromDays(20));
        }

        var live = new List<long>();
        foreach (var deal in deals)
        {
            live.Add((await first.GrantAsync(deal, 50_000)).GrantId);
        }

        foreach (var server in new[] { first, second })
        {
            server.Clock.Advance(TimeSpan.FromDays(12));
        }

        var deductions = deals.Select((deal, i) => Task.Run(async () =>
        {
            for (var n = 0; n < 10; n++)
            {
                await (n % 2 == 0 ? first : second).DeductAsync(deal, live[i], 2_000);
            }
        }));
        var passes = new[] { first, second }.Select(server => server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() }).ResponseAsync).ToList();
        await Task.WhenAll(deductions);
        var outcomes = await Task.WhenAll(passes);

        var heldByDue = Enumerable.Range(0, 12).Sum(i => 20L * (100 + i));
        Assert.Equal(0, outcomes.Sum(o => o.FailedGrants));
        Assert.Equal(due.Count, outcomes.Sum(o => o.ExpiredGrants));
        Assert.Equal(heldByDue, outcomes.Sum(o => o.ReturnedFen));
        foreach (var grant in due)
        {
            var info = await first.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant });
            Assert.Equal(GrantStatus.Expired, info.Status);
            var entries = await Statement.ReadAsync(first, new ListEntriesRequest { GrantId = grant });
            Assert.Single(entries, e => e.Kind == V1.EntryKind.Expiry);
        }

        foreach (var grant in live)
        {
            var info = await second.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant });
            Assert.Equal((GrantStatus.Open, 50_000L - 10 * 1_000), (info.Status, info.RemainingFen));
        }

        await Books.AssertHoldAsync(first);
        foreach (var (deal, grant) in deals.Zip(live))
        {
            await first.Ledger.ReleaseAsync(new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = deal.Provider, GrantId = grant, StatementRef = "JS-3" });
        }
    }

    [Fact]
    public async Task A_pass_that_outlasts_the_idle_in_transaction_limit_answers_what_it_did_and_replays_it()
    {
        var start = new DateTimeOffset(2026, 6, 12, 2, 0, 0, TimeSpan.Zero);
        await using var server = fixture.StartServer(start, settings: new Dictionary<string, string?>
        {
            ["Database:IdleInTransactionTimeout"] = "00:00:01",
            ["Database:LockTimeout"] = "00:00:30",
        });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 3_000);
        server.Clock.Advance(TimeSpan.FromDays(32));

        // A second session holds the grant's unit-year for three times PostgreSQL's idle limit: the pass waits for it.
        await using var holder = await RowHolder.UnitYearOfAsync(fixture.Database, grant.GrantId);

        var request = new ExpireDueGrantsRequest { RequestId = Ids.New() };
        var pass = server.Admin.ExpireDueGrantsAsync(request).ResponseAsync;
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.False(pass.IsCompleted);
        await holder.ReleaseAsync();

        var outcome = await pass;
        Assert.Equal((1, 3_000L, 0), (outcome.ExpiredGrants, outcome.ReturnedFen, outcome.FailedGrants));
        Assert.Equal(outcome, await server.Admin.ExpireDueGrantsAsync(request));
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task An_expiry_coalesced_with_grants_of_its_unit_year_keeps_the_cap_where_expiry_put_it()
    {
        const int year = 2051;
        await using var server = fixture.StartServer(new DateTimeOffset(year, 3, 2, 2, 0, 0, TimeSpan.Zero),
            settings: new Dictionary<string, string?> { ["Database:LockTimeout"] = "00:00:30" });
        await server.SetSmallYearAsync(year, capFen: 10_000, totalFen: 1_000_000, fundFen: 500_000);
        var deal = await server.NewDealAsync(contractAmountFen: 1_000_000);
        var due = await server.GrantAsync(deal, 6_000);
        server.Clock.Advance(TimeSpan.FromDays(20));
        var live = await server.GrantAsync(deal, 1_000);
        server.Clock.Advance(TimeSpan.FromDays(12));
        // Grants on a contract of the unit's with nothing due, so the sweep before each finds nothing to expire, and the
        // pool holds enough: the due grant is left to the pass.
        var other = deal with { ContractNo = await server.NewContractAsync(deal.Provider, deal.Unit, amountFen: 1_000_000) };

        // A second session holds the unit-year; a deduction of it goes to a lock waiter, which keeps the unit-year's lane
        // while the pass's expiry and two grants of the unit-year queue behind it. When the row is let go, one
        // transaction takes the three of them.
        await using var holder = await RowHolder.UnitYearOfAsync(fixture.Database, live.GrantId);

        var deduction = server.DeductAsync(deal, live.GrantId, 200);
        await Task.Delay(TimeSpan.FromSeconds(1));
        var pass = server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() }).ResponseAsync;
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        // 1,000 live and 9,000 more is the cap; 1 more is past it, whichever of the two is decided second.
        var grants = new[] { Answer(server.GrantAsync(other, 9_000)), Answer(server.GrantAsync(other, 1)) };
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        await holder.ReleaseAsync();

        await deduction;
        Assert.Equal((1, 6_000L), ((await pass).ExpiredGrants, (await pass).ReturnedFen));
        var answers = await Task.WhenAll(grants);
        Assert.Single(answers, a => a.Refusal == "UNIT_YEAR_CAP_EXCEEDED");
        var figures = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = year });
        Assert.True(figures.GrantedOpenFen + figures.DeductedFen <= 10_000, $"{figures.GrantedOpenFen} open and {figures.DeductedFen} deducted, past a cap of 10,000");

        // The expiry and the grant that applied were written by one transaction.
        var applied = answers.Single(a => a.Refusal is null).GrantId;
        Assert.Equal(await WriterOfAsync(due.GrantId, StorageEntryKind.Expiry), await WriterOfAsync(applied, StorageEntryKind.Grant));
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task A_duplicate_sent_during_a_pass_gets_the_first_pass_s_answer()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2026, 6, 15, 2, 0, 0, TimeSpan.Zero),
            settings: new Dictionary<string, string?> { ["Database:LockTimeout"] = "00:00:30" });
        var deal = await server.NewDealAsync();
        var grants = new List<GrantResponse>();
        for (var i = 0; i < 5; i++)
        {
            grants.Add(await server.GrantAsync(deal, 1_000));
        }

        server.Clock.Advance(TimeSpan.FromDays(32));
        await using var holder = await RowHolder.UnitYearOfAsync(fixture.Database, grants[0].GrantId);

        var request = new ExpireDueGrantsRequest { RequestId = Ids.New() };
        var first = server.Admin.ExpireDueGrantsAsync(request).ResponseAsync;
        await Task.Delay(TimeSpan.FromSeconds(1));
        var duplicate = server.Admin.ExpireDueGrantsAsync(request).ResponseAsync;
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(first.IsCompleted || duplicate.IsCompleted);
        await holder.ReleaseAsync();

        Assert.Equal((5, 5_000L, 0), ((await first).ExpiredGrants, (await first).ReturnedFen, (await first).FailedGrants));
        Assert.Equal(await first, await duplicate);
    }

    private static async Task<(long GrantId, string? Refusal)> Answer(Task<GrantResponse> grant)
    {
        try
        {
            return ((await grant).GrantId, null);
        }
        catch (RpcException e)
        {
            return (0, Refusal.ReasonOf(e));
        }
    }

    /// <summary>The transaction that wrote the grant's entry of <paramref name="kind"/> (its xmin).</summary>
    private async Task<string> WriterOfAsync(long grantId, StorageEntryKind kind)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT xmin::text FROM journal_entries WHERE grant_id = $1 AND kind = $2", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = grantId });
        command.Parameters.Add(new NpgsqlParameter { Value = (short)kind });
        return (string)(await command.ExecuteScalarAsync())!;
    }

    private static GrantFacts Grant(GrantState state, long balanceFen) => new()
    {
        Id = 1,
        ContractId = 1,
        Provider = "PROVIDER",
        Unit = "UNIT",
        Year = 2026,
        UnitYearId = 1,
        AccountId = 1,
        RatioBp = 5_000,
        State = state,
        ExpiresAt = s_expiresAt,
        BalanceFen = balanceFen,
        EffectiveFrom = new DateOnly(2026, 1, 1),
        Dealing = new Dealing("PROVIDER", "UNIT", ProviderGood: true, UnitGood: true, Related: false, Approved: true),
    };
}
