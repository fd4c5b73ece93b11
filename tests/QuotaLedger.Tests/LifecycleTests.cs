using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Expiry (Art 10, 11) and release (Art 11).</summary>
public sealed class LifecycleTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task ExpireDueGrants_returns_what_due_grants_hold_to_the_pool_once_and_changes_no_figure()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2026, 6, 1, 2, 0, 0, TimeSpan.Zero));
        var deal = await server.NewDealAsync(contractAmountFen: 100_000);
        var spent = await server.GrantAsync(deal, 10_000);
        await server.DeductAsync(deal, spent.GrantId, 6_000);
        var untouched = await server.GrantAsync(deal, 20_000);

        server.Clock.Advance(TimeSpan.FromDays(31));
        var before = await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 });
        var pass = await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        Assert.True(pass.ExpiredGrants >= 2);
        Assert.True(pass.ReturnedFen >= 7_000 + 20_000);

        // Expiry took effect at expires_at: the pass moves the money, and no figure changes because of it.
        var after = await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 });
        Assert.Equal(before, after);

        foreach (var (grant, returned) in new[] { (spent, 7_000L), (untouched, 20_000L) })
        {
            var info = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
            Assert.Equal(GrantStatus.Expired, info.Status);
            Assert.Equal(returned, info.ReturnedFen);
            Assert.Equal(0, info.RemainingFen);
            var entries = await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = grant.GrantId });
            var expiry = Assert.Single(entries, e => e.Kind == EntryKind.Expiry);
            Assert.Equal([(AccountKind.Pool, returned, 0L), (AccountKind.Grant, 0L, returned)], expiry.Postings.Select(p => (p.AccountKind, p.DebitFen, p.CreditFen)));
        }

        var again = await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        Assert.Equal(0, again.ExpiredGrants);

        // What expired no longer counts toward the contract's quota: the contract can be granted again.
        var contract = await server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = deal.Provider, ContractNo = deal.ContractNo });
        Assert.Equal(3_000, contract.GrantedFen);
        await server.GrantAsync(deal, 47_000);
        await Books.AssertBalancedAsync(server);
    }

    [Fact]
    public async Task The_expiry_pass_goes_on_past_a_grant_it_cannot_expire_and_expires_it_next_time()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2026, 6, 20, 2, 0, 0, TimeSpan.Zero));
        var deal = await server.NewDealAsync();
        var stuck = await server.GrantAsync(deal, 1_000);
        var others = new[] { await server.GrantAsync(deal, 2_000), await server.GrantAsync(deal, 3_000) };
        server.Clock.Advance(TimeSpan.FromDays(32));

        // Something the pass cannot get past for this one grant (here a trigger an operator added).
        await ExecuteAsync(
            $"""
            CREATE FUNCTION test_refuse_grant_update() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'grant % is under maintenance', OLD.id; END $$;
            CREATE TRIGGER test_refuse_grant_update BEFORE UPDATE ON grants FOR EACH ROW WHEN (OLD.id = {stuck.GrantId})
              EXECUTE FUNCTION test_refuse_grant_update();
            """);
        ExpireDueGrantsResponse first;
        try
        {
            first = await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        }
        finally
        {
            await ExecuteAsync("DROP TRIGGER test_refuse_grant_update ON grants; DROP FUNCTION test_refuse_grant_update();");
        }

        Assert.Equal(1, first.FailedGrants);
        foreach (var grant in others)
        {
            var entries = await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = grant.GrantId });
            Assert.Single(entries, e => e.Kind == EntryKind.Expiry);
        }

        Assert.DoesNotContain(await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = stuck.GrantId }), e => e.Kind == EntryKind.Expiry);
        var second = await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        Assert.Equal(0, second.FailedGrants);
        Assert.Single(await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = stuck.GrantId }), e => e.Kind == EntryKind.Expiry);
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task The_background_pass_expires_due_grants_on_the_servers_clock()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2026, 7, 1, 2, 0, 0, TimeSpan.Zero), backgroundExpiry: true);
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 12_345);

        server.Clock.Advance(TimeSpan.FromDays(31) + TimeSpan.FromMinutes(2));

        // Figures count the grant as expired at once; the pass is seen by the entry it writes.
        var returned = 0L;
        for (var attempt = 0; attempt < 200 && returned == 0; attempt++)
        {
            var entries = await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = grant.GrantId });
            returned = entries.Where(e => e.Kind == EntryKind.Expiry).Sum(e => e.Postings.Sum(p => p.DebitFen));
            if (returned == 0)
            {
                await Task.Delay(50);
                server.Clock.Advance(TimeSpan.FromMinutes(1));
            }
        }

        Assert.Equal(12_345, returned);
    }

    [Fact]
    public async Task A_December_grant_expiring_in_January_stays_in_its_own_unit_year()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2026, 12, 20, 2, 0, 0, TimeSpan.Zero));
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        Assert.Equal(2026, grant.UnitYear.Year);

        server.Clock.SetUtcNow(new DateTimeOffset(2027, 1, 10, 2, 0, 0, TimeSpan.Zero));
        var deduction = await server.DeductAsync(deal, grant.GrantId, 4_000);
        Assert.Equal(2026, deduction.UnitYear.Year);
        Assert.Equal(2_000, deduction.UnitYear.DeductedFen);

        server.Clock.SetUtcNow(new DateTimeOffset(2027, 1, 21, 2, 0, 0, TimeSpan.Zero));
        var pool2026 = (await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 })).PoolFen;
        await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });

        var unitYear = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = 2026 });
        Assert.Equal(0, unitYear.GrantedOpenFen);
        Assert.Equal(2_000, unitYear.DeductedFen);
        Assert.Equal(pool2026, (await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 })).PoolFen);
        Assert.Equal(8_000, (await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId })).ReturnedFen);
        var entries = await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = grant.GrantId });
        Assert.All(entries, e => Assert.Equal(2026, e.Year));
        Assert.Empty(await Statement.ReadAsync(server, new ListEntriesRequest { UnitUscc = deal.Unit, Year = 2027 }));
    }

    [Fact]
    public async Task A_deduction_and_an_expiry_of_one_grant_never_both_win()
    {
        var start = new DateTimeOffset(2026, 8, 3, 2, 0, 0, TimeSpan.Zero);
        await using var billing = fixture.StartServer(start);
        var deal = await billing.NewDealAsync();
        var grants = new List<GrantResponse>();
        for (var i = 0; i < 20; i++)
        {
            grants.Add(await billing.GrantAsync(deal, 10_000));
        }

        var expiresAt = grants[0].ExpiresAt.ToDateTimeOffset();
        billing.Clock.SetUtcNow(expiresAt.AddTicks(-1));
        await using var sweeper = fixture.StartServer(expiresAt.AddSeconds(5));

        var deductions = grants.Select(async g =>
        {
            try
            {
                return (g.GrantId, Applied: (await billing.DeductAsync(deal, g.GrantId, 30_000)).AppliedFen);
            }
            catch (RpcException e) when (Refusal.ReasonOf(e) == "GRANT_EXPIRED")
            {
                return (g.GrantId, Applied: 0L);
            }
        }).ToList();
        var passes = Enumerable.Range(0, 2).Select(_ => sweeper.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() }).ResponseAsync).ToList();
        var outcomes = await Task.WhenAll(deductions);
        await Task.WhenAll(passes);
        await sweeper.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });

        foreach (var (grantId, applied) in outcomes)
        {
            var info = await sweeper.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantId });
            Assert.Equal(GrantStatus.Expired, info.Status);
            Assert.Equal(10_000, applied + info.ReturnedFen);
            Assert.Equal(applied, info.DeductedFen);
            Assert.Equal(0, info.RemainingFen);
        }

        await Books.AssertBalancedAsync(sweeper);
    }

    [Fact]
    public async Task Two_servers_expiring_at_once_expire_each_grant_exactly_once()
    {
        await using var first = fixture.StartServer(new DateTimeOffset(2026, 9, 1, 2, 0, 0, TimeSpan.Zero));
        var deal = await first.NewDealAsync();
        var grants = new List<long>();
        for (var i = 0; i < 30; i++)
        {
            grants.Add((await first.GrantAsync(deal, 1_000 + i)).GrantId);
        }

        first.Clock.Advance(TimeSpan.FromDays(40));
        await using var second = fixture.StartServer(first.Clock.GetUtcNow());
        var passes = await Task.WhenAll(
            first.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() }).ResponseAsync,
            second.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() }).ResponseAsync);

        Assert.True(passes.Sum(p => p.ExpiredGrants) >= 30);
        foreach (var (grantId, i) in grants.Select((g, i) => (g, i)))
        {
            var entries = await Statement.ReadAsync(first, new ListEntriesRequest { GrantId = grantId });
            Assert.Equal(1_000 + i, Assert.Single(entries, e => e.Kind == EntryKind.Expiry).Postings.Sum(p => p.DebitFen));
        }

        Assert.Equal(0, (await second.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() })).ExpiredGrants);
        await Books.AssertBalancedAsync(first);
    }

    [Fact]
    public async Task Release_returns_the_rest_to_the_pool_and_the_grant_accepts_nothing_more()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        await server.DeductAsync(deal, grant.GrantId, 4_000);
        var pool = (await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 })).PoolFen;
        var stranger = await server.NewProviderAsync();

        await Refusal.AssertAsync(() => server.Ledger.ReleaseAsync(Release(stranger, grant.GrantId)).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_GRANT");
        await Refusal.AssertAsync(() => server.Ledger.ReleaseAsync(new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = deal.Provider, GrantId = grant.GrantId }).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");

        var released = await server.Ledger.ReleaseAsync(Release(deal.Provider, grant.GrantId));
        Assert.Equal(8_000, released.ReleasedFen);
        Assert.Equal(0, released.UnitYear.GrantedOpenFen);
        Assert.Equal(2_000, released.UnitYear.DeductedFen);
        Assert.Equal(pool + 8_000, (await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 })).PoolFen);

        var info = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(GrantStatus.Released, info.Status);
        Assert.Equal("JS-2026-001", info.StatementRef);
        await Refusal.AssertAsync(() => server.DeductAsync(deal, grant.GrantId, 1_000), StatusCode.FailedPrecondition, "GRANT_CLOSED");
        await Refusal.AssertAsync(() => server.Ledger.ReleaseAsync(Release(deal.Provider, grant.GrantId)).ResponseAsync,
            StatusCode.FailedPrecondition, "GRANT_CLOSED");
        var kinds = (await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = grant.GrantId })).Select(e => e.Kind);
        Assert.Equal([EntryKind.Grant, EntryKind.Deduction, EntryKind.Release], kinds);
    }

    [Fact]
    public async Task Release_after_expiry_answers_GRANT_EXPIRED()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2026, 10, 5, 2, 0, 0, TimeSpan.Zero));
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        server.Clock.Advance(TimeSpan.FromDays(31));
        await Refusal.AssertAsync(() => server.Ledger.ReleaseAsync(Release(deal.Provider, grant.GrantId)).ResponseAsync,
            StatusCode.FailedPrecondition, "GRANT_EXPIRED");
    }

    private async Task ExecuteAsync(string sql)
    {
        await using var connection = new Npgsql.NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static ReleaseRequest Release(string provider, long grantId) => new()
    {
        RequestId = Ids.New(),
        ProviderUscc = provider,
        GrantId = grantId,
        StatementRef = "JS-2026-001",
    };
}
