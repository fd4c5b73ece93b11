using Grpc.Core;
using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

public sealed class AdminTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task The_2026_policy_of_the_measures_is_present_from_the_start()
    {
        var policy = await fixture.Server.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 });
        Assert.Equal(5_000, policy.SelfControllableRatioBp);
        Assert.Equal(3_000, policy.OtherRatioBp);
        Assert.Equal(1_000, policy.SmeBonusBp);
        Assert.Equal(5_000_000_00, policy.UnitYearCapFen);
        Assert.Equal(10_000_00, policy.UnitYearFloorFen);
        Assert.Equal(100_000_000_00, policy.YearTotalFen);
        Assert.Equal(1, policy.ValidityMonths);
    }

    [Fact]
    public async Task Funding_never_exceeds_the_years_total()
    {
        var server = fixture.Server;
        await server.SetSmallYearAsync(2035, capFen: 1_000, totalFen: 10_000, fundFen: 0);

        var funded = await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2035, AmountFen = 7_000 });
        Assert.Equal(7_000, funded.FundedFen);
        Assert.Equal(7_000, funded.PoolFen);
        Assert.Equal(10_000, funded.YearTotalFen);

        await Refusal.AssertAsync(() => server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2035, AmountFen = 3_001 }).ResponseAsync,
            StatusCode.FailedPrecondition, "YEAR_TOTAL_EXCEEDED");
        await Refusal.AssertAsync(() => server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2035, AmountFen = 0 }).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_AMOUNT");
        await Refusal.AssertAsync(() => server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2036, AmountFen = 1 }).ResponseAsync,
            StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");

        // The total cannot be lowered below what is funded.
        await Refusal.AssertAsync(() => server.SetSmallYearAsync(2035, capFen: 1_000, totalFen: 6_999, fundFen: 0),
            StatusCode.FailedPrecondition, "YEAR_TOTAL_EXCEEDED");

        var full = await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2035, AmountFen = 3_000 });
        Assert.Equal(10_000, full.FundedFen);
        var program = await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2035 });
        Assert.NotNull(full.Receipt);
        full.Receipt = null;
        Assert.Equal(full, program);
    }

    [Fact]
    public async Task SetYearPolicy_refuses_incoherent_values_and_grants_follow_the_policy_of_their_year()
    {
        var server = fixture.Server;
        var bad = new SetYearPolicyRequest
        {
            RequestId = Ids.New(), Year = 2037, SelfControllableRatioBp = 9_500, OtherRatioBp = 3_000, SmeBonusBp = 1_000,
            UnitYearCapFen = 1_000, UnitYearFloorFen = 0, YearTotalFen = 1_000_000, ValidityMonths = 1,
        };
        await Refusal.AssertAsync(() => server.Admin.SetYearPolicyAsync(bad).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        bad.SelfControllableRatioBp = 4_000;
        bad.ValidityMonths = 0;
        bad.RequestId = Ids.New();
        await Refusal.AssertAsync(() => server.Admin.SetYearPolicyAsync(bad).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        bad.ValidityMonths = 2;
        bad.UnitYearCapFen = 0;
        bad.RequestId = Ids.New();
        await Refusal.AssertAsync(() => server.Admin.SetYearPolicyAsync(bad).ResponseAsync, StatusCode.InvalidArgument, "INVALID_AMOUNT");
        await Refusal.AssertAsync(() => server.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2037 }).ResponseAsync,
            StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");

        bad.UnitYearCapFen = 100_000;
        bad.RequestId = Ids.New();
        var set = await server.Admin.SetYearPolicyAsync(bad);
        Assert.Equal(4_000, set.SelfControllableRatioBp);
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2037, AmountFen = 100_000 });

        await using var in2037 = fixture.StartServer(new DateTimeOffset(2037, 3, 1, 0, 0, 0, TimeSpan.Zero));
        var deal = await in2037.NewDealAsync(contractAmountFen: 100_000, sme: true);
        var grant = await in2037.GrantAsync(deal, 1_000);
        Assert.Equal(5_000, grant.RatioBp);
        Assert.Equal(new DateTimeOffset(2037, 5, 1, 0, 0, 0, TimeSpan.Zero), grant.ExpiresAt.ToDateTimeOffset());
        Assert.Equal(100_000, grant.UnitYear.CapFen);
        await Refusal.AssertAsync(() => in2037.GrantAsync(deal, 49_001), StatusCode.FailedPrecondition, "CONTRACT_QUOTA_EXCEEDED");
    }

    [Fact]
    public async Task Grants_keep_the_ratio_and_expiry_they_got_when_their_years_policy_changes()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2038, 3, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2038, capFen: 1_000_000, totalFen: 1_000_000, fundFen: 1_000_000);
        var deal = await server.NewDealAsync(contractAmountFen: 1_000_000);
        var before = await server.GrantAsync(deal, 10_000);

        await server.Admin.SetYearPolicyAsync(new SetYearPolicyRequest
        {
            RequestId = Ids.New(), Year = 2038, SelfControllableRatioBp = 2_000, OtherRatioBp = 1_000, SmeBonusBp = 500,
            UnitYearCapFen = 1_000_000, UnitYearFloorFen = 0, YearTotalFen = 1_000_000, ValidityMonths = 3,
        });
        var after = await server.GrantAsync(deal, 10_000);

        Assert.Equal(5_000, before.RatioBp);
        Assert.Equal(2_000, after.RatioBp);
        Assert.Equal(new DateTimeOffset(2038, 6, 1, 2, 0, 0, TimeSpan.Zero), after.ExpiresAt.ToDateTimeOffset());
        Assert.Equal(new DateTimeOffset(2038, 4, 1, 2, 0, 0, TimeSpan.Zero), before.ExpiresAt.ToDateTimeOffset());
        Assert.Equal(500, (await server.DeductAsync(deal, before.GrantId, 1_000)).AppliedFen);
        Assert.Equal(200, (await server.DeductAsync(deal, after.GrantId, 1_000)).AppliedFen);
    }

    [Fact]
    public async Task The_database_refuses_to_rewrite_the_journal()
    {
        var deal = await fixture.Server.NewDealAsync();
        await fixture.Server.GrantAsync(deal, 1_000);

        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        foreach (var sql in new[]
        {
            "UPDATE postings SET amount_fen = amount_fen * 2",
            "DELETE FROM journal_entries",
            "TRUNCATE postings",
        })
        {
            await using var command = new NpgsqlCommand(sql, connection);
            var error = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());
            Assert.Contains("append-only", error.MessageText);
        }

        // An entry whose postings do not balance is refused at commit.
        await using var transaction = await connection.BeginTransactionAsync();
        await using var insert = new NpgsqlCommand(
            """
            WITH e AS (INSERT INTO journal_entries (kind, created_at, year, request_id, caller, memo, chain_key, prev_hash, hash)
                       VALUES (1, now(), 2026, 'forged', 'test', '', '2026', ''::bytea, sha256('forged'::bytea)) RETURNING id)
            INSERT INTO postings (entry_id, account_id, amount_fen)
            SELECT e.id, (SELECT min(id) FROM accounts), 100 FROM e
            """, connection, transaction);
        await insert.ExecuteNonQueryAsync();
        var unbalanced = await Assert.ThrowsAsync<PostgresException>(() => transaction.CommitAsync());
        Assert.Contains("does not balance", unbalanced.MessageText);
    }
}
