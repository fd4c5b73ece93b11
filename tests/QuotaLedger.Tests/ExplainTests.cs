using Grpc.Core;
using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Grant and Deduct dry runs: the answer of the same rules function the real call decides with, with nothing
/// written and no request id consumed.</summary>
public sealed class ExplainTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private const int Year = 2074;

    /// <summary>A call's answer as one word: "applied A of R", or the refusal's reason.</summary>
    private static string Said(Explanation e) => e.WouldApply ? $"applied {e.AppliedFen} of {e.RequestedFen}" : e.Reason;

    private static async Task<string> RealAsync<T>(Func<Task<T>> call, Func<T, string> said)
    {
        try
        {
            return said(await call());
        }
        catch (RpcException e)
        {
            return Refusal.ReasonOf(e);
        }
    }

    /// <summary>Dry run, then the real call with the same request id: returns what both said.</summary>
    private static async Task<(string Predicted, string Real)> GrantBothAsync(LedgerServer server, GrantRequest request)
    {
        var dry = request.Clone();
        dry.DryRun = true;
        var predicted = Said((await server.Ledger.GrantAsync(dry)).Explanation);
        var real = await RealAsync(() => server.Ledger.GrantAsync(request).ResponseAsync, r => $"applied {r.AmountFen} of {r.AmountFen}");
        return (predicted, real);
    }

    private static async Task<(string Predicted, string Real)> DeductBothAsync(LedgerServer server, DeductRequest request)
    {
        var dry = request.Clone();
        dry.DryRun = true;
        var predicted = Said((await server.Ledger.DeductAsync(dry)).Explanation);
        var real = await RealAsync(() => server.Ledger.DeductAsync(request).ResponseAsync, r => $"applied {r.AppliedFen} of {r.RequestedFen}");
        return (predicted, real);
    }

    [Fact]
    public async Task A_dry_run_predicts_what_the_real_call_then_does_over_a_table_of_cases()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(Year, 3, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(Year, capFen: 300_000, totalFen: 10_000_000, fundFen: 400_000);
        var answers = new List<(string Case, string Predicted, string Real)>();
        async Task Grant(string name, GrantRequest request)
        {
            var (predicted, real) = await GrantBothAsync(server, request);
            answers.Add((name, predicted, real));
        }

        async Task Deduct(string name, DeductRequest request)
        {
            var (predicted, real) = await DeductBothAsync(server, request);
            answers.Add((name, predicted, real));
        }

        var one = await server.NewDealAsync(contractAmountFen: 10_000_000);
        var two = await server.NewDealAsync(contractAmountFen: 10_000_000);
        var three = await server.NewDealAsync(contractAmountFen: 10_000_000);
        var small = await server.NewDealAsync(contractAmountFen: 100_000);
        await Grant("grant applied", one.GrantRequest(100_000));
        await Grant("grant applied, second unit", two.GrantRequest(200_000));
        await Grant("contract quota", small.GrantRequest(60_000));
        await Grant("unit-year cap", two.GrantRequest(150_000));
        await Grant("pool", three.GrantRequest(150_000));
        await Grant("unknown contract", (one with { ContractNo = "NO-SUCH-CONTRACT" }).GrantRequest(1_000));
        var innovation = one with { ContractNo = await server.NewContractAsync(one.Provider, one.Unit, usesInnovationVoucher: true) };
        await Grant("innovation voucher", innovation.GrantRequest(1_000));
        var unapproved = await server.NewDealAsync();
        await server.ApproveAsync(unapproved.Provider, unapproved.Unit, approve: false);
        await Grant("approval withdrawn", unapproved.GrantRequest(1_000));

        var grants = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = one.Unit, Year = Year });
        Assert.Equal(100_000, grants.GrantedOpenFen);
        var smallGrant = await server.GrantAsync(small, 40_000);
        var oneGrant = (await server.Ledger.GrantAsync(one.GrantRequest(10_000))).GrantId;
        var invoice = "EXP-" + Ids.New()[..8];
        await Deduct("deduction applied", one.DeductRequest(oneGrant, 4_000, invoice, server.Today()));
        await Deduct("the invoice again", one.DeductRequest(oneGrant, 4_000, invoice, server.Today()));
        await Deduct("capped at what the grant holds", one.DeductRequest(oneGrant, 40_000, invoiceDate: server.Today()));
        await Deduct("grant empty", one.DeductRequest(oneGrant, 4_000, invoiceDate: server.Today()));
        await Deduct("invoice before the policy", small.DeductRequest(smallGrant.GrantId, 4_000, invoiceDate: $"{Year - 1}-12-31"));
        await Deduct("past the contract", small.DeductRequest(smallGrant.GrantId, 100_001, invoiceDate: server.Today()));
        await Deduct("share rounds to 0", small.DeductRequest(smallGrant.GrantId, 1, invoiceDate: server.Today()));
        await Deduct("another provider's grant", two.DeductRequest(smallGrant.GrantId, 4_000, invoiceDate: server.Today()));
        await Deduct("unknown grant", small.DeductRequest(long.MaxValue - 7, 4_000, invoiceDate: server.Today()));
        server.Clock.Advance(TimeSpan.FromDays(32));
        await Deduct("expired, before any pass", small.DeductRequest(smallGrant.GrantId, 4_000, invoiceDate: server.Today()));
        await Grant("expired quota counts back", small.GrantRequest(50_000));

        await using var closed = fixture.StartServer(new DateTimeOffset(Year + 1, 3, 1, 2, 0, 0, TimeSpan.Zero));
        var (predicted, real) = await GrantBothAsync(closed, one.GrantRequest(1_000));
        answers.Add(("no policy for the year", predicted, real));

        Assert.All(answers, a => Assert.True(a.Predicted == a.Real, $"{a.Case}: the dry run said {a.Predicted}, the real call {a.Real}"));
        Assert.Equal(
            [
                ("grant applied", "applied 100000 of 100000"),
                ("grant applied, second unit", "applied 200000 of 200000"),
                ("contract quota", "CONTRACT_QUOTA_EXCEEDED"),
                ("unit-year cap", "UNIT_YEAR_CAP_EXCEEDED"),
                ("pool", "BUDGET_EXHAUSTED"),
                ("unknown contract", "UNKNOWN_CONTRACT"),
                ("innovation voucher", "INNOVATION_VOUCHER_CONFLICT"),
                ("approval withdrawn", "UNIT_NOT_APPROVED"),
                ("deduction applied", "applied 2000 of 2000"),
                ("the invoice again", "DUPLICATE_INVOICE"),
                ("capped at what the grant holds", "applied 8000 of 20000"),
                ("grant empty", "GRANT_EMPTY"),
                ("invoice before the policy", "YEAR_NOT_OPEN"),
                ("past the contract", "INVOICE_EXCEEDS_CONTRACT"),
                ("share rounds to 0", "INVALID_AMOUNT"),
                ("another provider's grant", "UNKNOWN_GRANT"),
                ("unknown grant", "UNKNOWN_GRANT"),
                ("expired, before any pass", "GRANT_EXPIRED"),
                ("expired quota counts back", "applied 50000 of 50000"),
                ("no policy for the year", "YEAR_NOT_OPEN"),
            ],
            answers.Select(a => (a.Case, a.Real)));
    }

    [Fact]
    public async Task A_dry_run_writes_nothing_and_its_request_id_is_free_for_the_real_call()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync(contractAmountFen: 1_000_000);
        var grant = await server.GrantAsync(deal, 100_000);
        var grantRequest = deal.GrantRequest(50_000);
        var deductRequest = deal.DeductRequest(grant.GrantId, 10_000, invoiceDate: server.Today());
        var refused = deal.GrantRequest(999_999_999);
        var before = await CountsAsync(deal);

        foreach (var request in new[] { grantRequest, refused })
        {
            var dry = request.Clone();
            dry.DryRun = true;
            Assert.NotNull((await server.Ledger.GrantAsync(dry)).Explanation);
            dry.RequestId = "";
            Assert.NotNull((await server.Ledger.GrantAsync(dry)).Explanation);
        }

        var dryDeduct = deductRequest.Clone();
        dryDeduct.DryRun = true;
        Assert.True((await server.Ledger.DeductAsync(dryDeduct)).Explanation.WouldApply);
        dryDeduct.RequestId = "";
        Assert.True((await server.Ledger.DeductAsync(dryDeduct)).Explanation.WouldApply);
        Assert.Equal(before, await CountsAsync(deal));

        // The request ids the dry runs carried were not consumed: the real calls apply with them.
        Assert.Equal(50_000, (await server.Ledger.GrantAsync(grantRequest)).AmountFen);
        Assert.Equal(5_000, (await server.Ledger.DeductAsync(deductRequest)).AppliedFen);
        Assert.NotEqual(before, await CountsAsync(deal));
    }

    /// <summary>Journal entries, idempotency records and the balances of the deal's contract and unit, in one read.</summary>
    private async Task<string> CountsAsync(Deal deal)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            """
            SELECT (SELECT count(*) FROM journal_entries) || '/' || (SELECT count(*) FROM postings) || '/' || (SELECT count(*) FROM idempotency_records)
                   || '/' || (SELECT count(*) FROM deductions) || '/' || (SELECT count(*) FROM grants)
                   || '/' || (SELECT string_agg(a.id || ':' || a.balance_fen, ',' ORDER BY a.id) FROM accounts a WHERE a.unit_uscc = $1 OR a.unit_uscc IS NULL
                              OR a.id IN (SELECT g.account_id FROM grants g WHERE g.unit_uscc = $1))
                   || '/' || (SELECT granted_fen || ':' || invoiced_fen FROM contracts WHERE contract_no = $2)
                   || '/' || (SELECT count(*) FROM unit_years)
            """,
            connection);
        command.Parameters.Add(new NpgsqlParameter { Value = deal.Unit });
        command.Parameters.Add(new NpgsqlParameter { Value = deal.ContractNo });
        return (string)(await command.ExecuteScalarAsync())!;
    }

    [Fact]
    public async Task A_dry_run_reports_the_headroom_under_every_limit_that_applies()
    {
        var start = new DateTimeOffset(Year + 2, 3, 1, 2, 0, 0, TimeSpan.Zero);
        await using var server = fixture.StartServer(start);
        await server.SetSmallYearAsync(Year + 2, capFen: 300_000, totalFen: 10_000_000, fundFen: 1_000_000);
        var deal = await server.NewDealAsync(contractAmountFen: 400_000);
        var grant = await server.GrantAsync(deal, 120_000);
        await server.DeductAsync(deal, grant.GrantId, 100_000);

        var asked = deal.GrantRequest(10_000);
        asked.DryRun = true;
        var forGrant = (await server.Ledger.GrantAsync(asked)).Explanation;
        Assert.True(forGrant.WouldApply);
        Assert.Equal(("", 10_000L, 10_000L), (forGrant.Reason, forGrant.RequestedFen, forGrant.AppliedFen));
        Assert.Equal(400_000 * 5_000 / 10_000 - 120_000, forGrant.ContractQuotaRemainingFen);
        Assert.Equal(300_000 - 120_000, forGrant.UnitYearHeadroomFen);
        Assert.Equal(1_000_000 - 120_000, forGrant.PoolFen);
        Assert.Equal(start.AddMonths(1), forGrant.ExpiresAt.ToDateTimeOffset());
        Assert.Equal((5_000, deal.Unit, Year + 2), (forGrant.RatioBp, forGrant.UnitUscc, forGrant.Year));
        var live = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = Year + 2 });
        Assert.Equal(live.HeadroomFen, forGrant.UnitYearHeadroomFen);

        var tooMuch = deal.GrantRequest(90_000);
        tooMuch.DryRun = true;
        var refused = (await server.Ledger.GrantAsync(tooMuch)).Explanation;
        Assert.Equal((false, "CONTRACT_QUOTA_EXCEEDED", 90_000L, 0L), (refused.WouldApply, refused.Reason, refused.RequestedFen, refused.AppliedFen));
        Assert.False(string.IsNullOrWhiteSpace(refused.Message));
        Assert.Equal((80_000L, 180_000L), (refused.ContractQuotaRemainingFen, refused.UnitYearHeadroomFen));

        var invoice = deal.DeductRequest(grant.GrantId, 300_000, invoiceDate: server.Today());
        invoice.DryRun = true;
        var forDeduct = (await server.Ledger.DeductAsync(invoice)).Explanation;
        Assert.True(forDeduct.WouldApply);
        Assert.Equal((150_000L, 70_000L), (forDeduct.RequestedFen, forDeduct.AppliedFen));
        Assert.Equal(70_000, forDeduct.GrantBalanceFen);
        Assert.Equal(400_000 - 100_000, forDeduct.ContractUninvoicedFen);
        Assert.Equal(300_000 - 120_000, forDeduct.UnitYearHeadroomFen);
        Assert.Equal(grant.ExpiresAt, forDeduct.ExpiresAt);

        // Someone else's grant: the refusal, and nothing of the grant.
        var other = await server.NewDealAsync();
        var foreign = other.DeductRequest(grant.GrantId, 1_000, invoiceDate: server.Today());
        foreign.DryRun = true;
        var hidden = (await server.Ledger.DeductAsync(foreign)).Explanation;
        Assert.Equal(new Explanation { Reason = "UNKNOWN_GRANT", Message = $"There is no grant {grant.GrantId}.", EvaluatedAt = hidden.EvaluatedAt }, hidden);
    }

    [Fact]
    public async Task A_malformed_dry_run_is_refused_as_the_real_call_is()
    {
        var deal = await fixture.Server.NewDealAsync();
        var grant = deal.GrantRequest(0);
        grant.DryRun = true;
        await Refusal.AssertAsync(() => fixture.Server.Ledger.GrantAsync(grant).ResponseAsync, StatusCode.InvalidArgument, "INVALID_AMOUNT");
        var deduct = deal.DeductRequest(1, 1_000, invoiceDate: "2026-13-01");
        deduct.DryRun = true;
        await Refusal.AssertAsync(() => fixture.Server.Ledger.DeductAsync(deduct).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        var badUscc = deal.GrantRequest(1_000);
        badUscc.ProviderUscc = TestUscc.WithBadCheck(deal.Provider);
        badUscc.DryRun = true;
        await Refusal.AssertAsync(() => fixture.Server.Ledger.GrantAsync(badUscc).ResponseAsync, StatusCode.InvalidArgument, "INVALID_USCC");
    }

    [Fact]
    public async Task A_dry_run_deduct_neither_waits_for_nor_holds_the_unit_year_lock()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var hold = new NpgsqlCommand(
            "SELECT 1 FROM unit_years WHERE id = (SELECT unit_year_id FROM grants WHERE id = $1) FOR UPDATE", connection, transaction))
        {
            hold.Parameters.Add(new NpgsqlParameter { Value = grant.GrantId });
            await hold.ExecuteNonQueryAsync();
        }

        // With the unit-year row held by another session (as a real deduction in flight holds it), the dry run answers.
        var dry = deal.DeductRequest(grant.GrantId, 10_000, invoiceDate: server.Today());
        dry.DryRun = true;
        var explanation = (await server.Ledger.DeductAsync(dry, deadline: DateTime.UtcNow.AddSeconds(20))).Explanation;
        Assert.Equal(5_000, explanation.AppliedFen);
        await transaction.RollbackAsync();
    }
}
