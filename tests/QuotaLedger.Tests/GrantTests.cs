using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

public sealed class GrantTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private readonly LedgerServer _server = fixture.Server;

    [Fact]
    public async Task Grant_requires_the_unit_approved_by_the_granting_provider()
    {
        var provider = await _server.NewProviderAsync();
        var other = await _server.NewProviderAsync();
        var unit = await _server.NewUnitAsync();
        var deal = new Deal(provider, unit, await _server.NewContractAsync(provider, unit));

        await Refusal.AssertAsync(() => _server.GrantAsync(deal, 10_000), StatusCode.FailedPrecondition, "UNIT_NOT_APPROVED");
        await _server.ApproveAsync(other, unit);
        await Refusal.AssertAsync(() => _server.GrantAsync(deal, 10_000), StatusCode.FailedPrecondition, "UNIT_NOT_APPROVED");
        await _server.ApproveAsync(provider, unit, approve: false);
        await Refusal.AssertAsync(() => _server.GrantAsync(deal, 10_000), StatusCode.FailedPrecondition, "UNIT_NOT_APPROVED");

        await _server.ApproveAsync(provider, unit);
        var grant = await _server.GrantAsync(deal, 10_000);
        Assert.Equal(10_000, grant.AmountFen);

        await _server.ApproveAsync(provider, unit, approve: false);
        await Refusal.AssertAsync(() => _server.GrantAsync(deal, 10_000), StatusCode.FailedPrecondition, "UNIT_NOT_APPROVED");
    }

    [Theory]
    [InlineData(true, false, 5_000)]
    [InlineData(true, true, 6_000)]
    [InlineData(false, false, 3_000)]
    [InlineData(false, true, 4_000)]
    public async Task Contract_quota_is_the_contract_amount_times_the_ratio_floored(bool selfControllable, bool sme, int ratioBp)
    {
        const long contractAmount = 1_000_003;
        var deal = await _server.NewDealAsync(contractAmount, selfControllable, sme);
        var quota = contractAmount * ratioBp / 10_000;

        await Refusal.AssertAsync(() => _server.GrantAsync(deal, quota + 1), StatusCode.FailedPrecondition, "CONTRACT_QUOTA_EXCEEDED");
        var first = await _server.GrantAsync(deal, quota - 100);
        Assert.Equal(ratioBp, first.RatioBp);
        await Refusal.AssertAsync(() => _server.GrantAsync(deal, 101), StatusCode.FailedPrecondition, "CONTRACT_QUOTA_EXCEEDED");
        await _server.GrantAsync(deal, 100);

        var contract = await _server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = deal.Provider, ContractNo = deal.ContractNo });
        Assert.Equal(quota, contract.GrantedFen);
    }

    [Fact]
    public async Task Grant_moves_quota_from_the_pool_and_expires_one_calendar_month_later()
    {
        var deal = await _server.NewDealAsync();
        var before = await _server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 });

        var grant = await _server.GrantAsync(deal, 250_000);

        var after = await _server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 });
        Assert.Equal(before.PoolFen - 250_000, after.PoolFen);
        Assert.Equal(before.GrantedOpenFen + 250_000, after.GrantedOpenFen);
        Assert.Equal(before.FundedFen, after.FundedFen);
        Assert.Equal(LedgerFixture.Now.AddMonths(1), grant.ExpiresAt.ToDateTimeOffset());
        Assert.Equal(new UnitYear
        {
            UnitUscc = deal.Unit, Year = 2026, CapFen = 500_000_000, GrantedOpenFen = 250_000, DeductedFen = 0, HeadroomFen = 500_000_000 - 250_000,
        }, grant.UnitYear);

        var info = await _server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(GrantStatus.Open, info.Status);
        Assert.Equal(250_000, info.RemainingFen);
        Assert.Equal(deal.ContractNo, info.ContractNo);
    }

    [Fact]
    public async Task A_grant_made_on_the_31st_of_October_expires_at_the_end_of_November()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2026, 10, 31, 10, 0, 0, TimeSpan.FromHours(8)));
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 1_000);
        Assert.Equal(new DateTimeOffset(2026, 11, 30, 10, 0, 0, TimeSpan.FromHours(8)), grant.ExpiresAt.ToDateTimeOffset());
    }

    [Fact]
    public async Task Unit_year_cap_counts_open_grants_plus_deducted()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2031, 5, 10, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2031, capFen: 10_000, totalFen: 1_000_000, fundFen: 1_000_000);
        var deal = await server.NewDealAsync();
        var other = await server.NewContractAsync(deal.Provider, deal.Unit);

        var grant = await server.GrantAsync(deal, 6_000);
        var deducted = await server.DeductAsync(deal, grant.GrantId, 8_000, invoiceNo: null);
        Assert.Equal(4_000, deducted.AppliedFen);

        await Refusal.AssertAsync(() => server.GrantAsync(deal with { ContractNo = other }, 4_001), StatusCode.FailedPrecondition, "UNIT_YEAR_CAP_EXCEEDED");
        var last = await server.GrantAsync(deal with { ContractNo = other }, 4_000);
        Assert.Equal(0, last.UnitYear.HeadroomFen);
        Assert.Equal(6_000 + 4_000 - 4_000, last.UnitYear.GrantedOpenFen);
        Assert.Equal(4_000, last.UnitYear.DeductedFen);

        var unitYear = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = 2031 });
        Assert.Equal(last.UnitYear, unitYear);
    }

    [Fact]
    public async Task Grant_refuses_more_than_the_pool_holds_and_leaves_nothing_behind()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2032, 7, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2032, capFen: 1_000_000, totalFen: 1_000_000, fundFen: 5_000);
        var deal = await server.NewDealAsync();

        await server.GrantAsync(deal, 3_000);
        await Refusal.AssertAsync(() => server.GrantAsync(deal, 2_001), StatusCode.FailedPrecondition, "BUDGET_EXHAUSTED");

        var contract = await server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = deal.Provider, ContractNo = deal.ContractNo });
        Assert.Equal(3_000, contract.GrantedFen);
        var program = await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2032 });
        Assert.Equal(2_000, program.PoolFen);
        Assert.Equal(3_000, program.GrantedOpenFen);
        await server.GrantAsync(deal, 2_000);
    }

    [Fact]
    public async Task A_year_without_a_policy_accepts_no_grants()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2033, 2, 1, 2, 0, 0, TimeSpan.Zero));
        var deal = await server.NewDealAsync();
        var error = await Refusal.AssertAsync(() => server.GrantAsync(deal, 1_000), StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
        Assert.Contains("SetYearPolicy", error.Status.Detail);
    }

    [Fact]
    public async Task A_contract_with_the_innovation_voucher_gets_no_quota()
    {
        var deal = await _server.NewDealAsync();
        var contractNo = await _server.NewContractAsync(deal.Provider, deal.Unit, usesInnovationVoucher: true);
        await Refusal.AssertAsync(() => _server.GrantAsync(deal with { ContractNo = contractNo }, 1_000),
            StatusCode.FailedPrecondition, "INNOVATION_VOUCHER_CONFLICT");
    }

    [Fact]
    public async Task Grant_names_what_is_unknown_and_refuses_malformed_input()
    {
        var deal = await _server.NewDealAsync();
        await Refusal.AssertAsync(() => _server.GrantAsync(deal with { ContractNo = "missing" }, 1_000), StatusCode.NotFound, "UNKNOWN_CONTRACT");
        await Refusal.AssertAsync(() => _server.GrantAsync(deal with { Provider = TestUscc.New() }, 1_000), StatusCode.NotFound, "UNKNOWN_PROVIDER");
        await Refusal.AssertAsync(() => _server.GrantAsync(deal with { Provider = TestUscc.WithBadCheck(deal.Provider) }, 1_000),
            StatusCode.InvalidArgument, "INVALID_USCC");
        await Refusal.AssertAsync(() => _server.GrantAsync(deal, 0), StatusCode.InvalidArgument, "INVALID_AMOUNT");
        await Refusal.AssertAsync(() => _server.GrantAsync(deal, -5), StatusCode.InvalidArgument, "INVALID_AMOUNT");

        var noId = deal.GrantRequest(1_000);
        noId.RequestId = "";
        await Refusal.AssertAsync(() => _server.Ledger.GrantAsync(noId).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        noId.RequestId = new string('x', 65);
        await Refusal.AssertAsync(() => _server.Ledger.GrantAsync(noId).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");

        var contract = await _server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = deal.Provider, ContractNo = deal.ContractNo });
        Assert.Equal(0, contract.GrantedFen);
    }
}
