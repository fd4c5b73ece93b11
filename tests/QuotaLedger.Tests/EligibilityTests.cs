using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Standing (Art 4, 5, 17), related parties (Art 5.6) and the OPC gifts that are the only transfer (Art 15).</summary>
public sealed class EligibilityTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private readonly LedgerServer _server = fixture.Server;

    [Fact]
    public async Task A_suspended_or_blacklisted_party_can_neither_grant_be_granted_nor_deduct_until_restored()
    {
        var deal = await _server.NewDealAsync();
        var grant = await _server.GrantAsync(deal, 10_000);

        var suspended = await _server.Admin.SetStandingAsync(Standing(deal.Unit, V1.Standing.Suspended, "false usage logs under review"));
        Assert.Equal(V1.Standing.Good, suspended.PreviousStanding);
        Assert.Equal(["unit"], suspended.Parties);
        await Refusal.AssertAsync(() => _server.GrantAsync(deal, 1_000), StatusCode.FailedPrecondition, "PARTY_SUSPENDED");
        await Refusal.AssertAsync(() => _server.DeductAsync(deal, grant.GrantId, 1_000), StatusCode.FailedPrecondition, "PARTY_SUSPENDED");
        Assert.Equal(V1.Standing.Suspended, (await _server.Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = deal.Unit })).Standing);

        await _server.Admin.SetStandingAsync(Standing(deal.Unit, V1.Standing.Good, "review closed"));
        await _server.DeductAsync(deal, grant.GrantId, 1_000);

        await _server.Admin.SetStandingAsync(Standing(deal.Provider, V1.Standing.Blacklisted, "credit blacklist"));
        await Refusal.AssertAsync(() => _server.GrantAsync(deal, 1_000), StatusCode.FailedPrecondition, "PARTY_SUSPENDED");
        await Refusal.AssertAsync(() => _server.DeductAsync(deal, grant.GrantId, 1_000), StatusCode.FailedPrecondition, "PARTY_SUSPENDED");
        Assert.Equal(V1.Standing.Blacklisted, (await _server.Registry.GetProviderAsync(new GetProviderRequest { ProviderUscc = deal.Provider })).Standing);

        await _server.Admin.SetStandingAsync(Standing(deal.Provider, V1.Standing.Good, "removed from the blacklist"));
        await _server.GrantAsync(deal, 1_000);

        await Refusal.AssertAsync(() => _server.Admin.SetStandingAsync(Standing(TestUscc.New(), V1.Standing.Suspended, "x")).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_UNIT");
        await Refusal.AssertAsync(() => _server.Admin.SetStandingAsync(Standing(deal.Unit, V1.Standing.Suspended, "")).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");
    }

    [Fact]
    public async Task Related_parties_get_no_grants_even_on_contracts_registered_before_the_declaration()
    {
        var deal = await _server.NewDealAsync();
        await _server.GrantAsync(deal, 1_000);

        var declared = await _server.Registry.DeclareRelatedPartyAsync(new DeclareRelatedPartyRequest
        {
            RequestId = Ids.New(), ProviderUscc = deal.Provider, UnitUscc = deal.Unit, Reason = "common controlling shareholder",
        });
        Assert.Equal("common controlling shareholder", declared.Reason);

        await Refusal.AssertAsync(() => _server.GrantAsync(deal, 1_000), StatusCode.FailedPrecondition, "RELATED_PARTIES");
        var other = await _server.NewDealAsync();
        await _server.ApproveAsync(deal.Provider, other.Unit);
        var unrelated = await _server.NewContractAsync(deal.Provider, other.Unit);
        await _server.GrantAsync(new Deal(deal.Provider, other.Unit, unrelated), 1_000);
    }

    [Fact]
    public async Task An_OPC_operator_gifts_open_quota_to_a_resident_keeping_the_expiry()
    {
        var provider = await _server.NewProviderAsync();
        var opc = await _server.NewConfirmedOperatorAsync(provider);
        var deal = new Deal(provider, opc, await _server.NewContractAsync(provider, opc));
        var grant = await _server.GrantAsync(deal, 50_000);
        var resident = await _server.NewConfirmedResidentAsync(provider, opc);

        var giftRequest = new GiftRequest { RequestId = Ids.New(), OperatorUscc = opc, GrantId = grant.GrantId, ResidentUscc = resident, AmountFen = 20_000 };
        var gift = await _server.Ledger.GiftAsync(giftRequest);
        Assert.Equal(resident, gift.Grant.UnitUscc);
        Assert.Equal(20_000, gift.Grant.RemainingFen);
        Assert.Equal(grant.ExpiresAt, gift.Grant.ExpiresAt);
        Assert.Equal(grant.GrantId, gift.Grant.GiftedFromGrantId);
        Assert.Equal(30_000, gift.SourceRemainingFen);
        Assert.Equal(30_000, gift.OperatorUnitYear.GrantedOpenFen);
        Assert.Equal(20_000, gift.ResidentUnitYear.GrantedOpenFen);
        Assert.Equal(gift, await _server.Ledger.GiftAsync(giftRequest));

        // The provider bills the resident's use against the gifted grant.
        var deduction = await _server.DeductAsync(deal, gift.Grant.GrantId, 10_000);
        Assert.Equal(5_000, deduction.AppliedFen);
        Assert.Equal(resident, deduction.UnitYear.UnitUscc);

        var residentStatement = await Statement.ReadAsync(_server, new ListEntriesRequest { UnitUscc = resident });
        var giftEntry = residentStatement.First();
        Assert.Equal(EntryKind.Gift, giftEntry.Kind);
        Assert.Equal(opc, giftEntry.UnitUscc);
        Assert.Equal(resident, giftEntry.CounterpartyUscc);
        Assert.Equal(gift.Grant.GrantId, giftEntry.CounterpartyGrantId);
        Assert.Equal(giftRequest.RequestId, giftEntry.RequestId);
        await Books.AssertBalancedAsync(_server);
    }

    [Fact]
    public async Task Every_other_transfer_answers_NOT_TRANSFERABLE_and_a_gift_goes_only_to_a_confirmed_resident()
    {
        var provider = await _server.NewProviderAsync();
        var opc = await _server.NewUnitAsync(kind: UnitKind.OpcOperator);
        var stranger = await _server.NewUnitAsync();
        await _server.ApproveAsync(provider, opc);
        await _server.ApproveAsync(provider, stranger);
        var opcGrant = await _server.GrantAsync(new Deal(provider, opc, await _server.NewContractAsync(provider, opc)), 10_000);
        await _server.Registry.AddResidentOpcAsync(new AddResidentOpcRequest { RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = stranger });

        // An operator that calls itself one, without the bureau's confirmation, gives nothing.
        await Refusal.AssertAsync(() => Gift(opc, opcGrant.GrantId, stranger, 1_000), StatusCode.FailedPrecondition, "NOT_TRANSFERABLE");

        // An ordinary enterprise gives to anyone: refused too, whatever lists exist.
        var deal = await _server.NewDealAsync();
        var grant = await _server.GrantAsync(deal, 10_000);
        await Refusal.AssertAsync(() => Gift(deal.Unit, grant.GrantId, stranger, 1_000), StatusCode.FailedPrecondition, "NOT_TRANSFERABLE");
        await Refusal.AssertAsync(() => _server.Registry.AddResidentOpcAsync(new AddResidentOpcRequest
        {
            RequestId = Ids.New(), OperatorUscc = deal.Unit, ResidentUscc = stranger,
        }).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");

        // Confirmed as an operator, it still gives only to residents the bureau confirmed.
        await _server.Registry.ConfirmOpcOperatorAsync(new ConfirmOpcOperatorRequest { RequestId = Ids.New(), OperatorUscc = opc, Confirm = true, Reason = "verified" });
        await Refusal.AssertAsync(() => Gift(opc, opcGrant.GrantId, stranger, 1_000), StatusCode.FailedPrecondition, "NOT_RESIDENT");
        await Refusal.AssertAsync(() => Gift(opc, opcGrant.GrantId, deal.Unit, 1_000), StatusCode.FailedPrecondition, "NOT_RESIDENT");
        await _server.Registry.ConfirmResidentOpcAsync(new ConfirmResidentOpcRequest
        {
            RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = stranger, Confirm = true, Reason = "lease seen",
        });

        // An operator gives only from its own grants, and no more than they hold.
        await Refusal.AssertAsync(() => Gift(opc, grant.GrantId, stranger, 1_000), StatusCode.NotFound, "UNKNOWN_GRANT");
        await Refusal.AssertAsync(() => Gift(opc, opcGrant.GrantId, stranger, 10_001), StatusCode.FailedPrecondition, "GRANT_EMPTY");
        Assert.Equal(10_000, (await _server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = opcGrant.GrantId })).RemainingFen);
        await Gift(opc, opcGrant.GrantId, stranger, 1_000);
    }

    [Fact]
    public async Task A_gift_respects_the_residents_unit_year_cap()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2039, 4, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2039, capFen: 10_000, totalFen: 1_000_000, fundFen: 1_000_000);
        var provider = await server.NewProviderAsync();
        var opc = await server.NewConfirmedOperatorAsync(provider);
        var resident = await server.NewConfirmedResidentAsync(provider, opc);
        var opcGrant = await server.GrantAsync(new Deal(provider, opc, await server.NewContractAsync(provider, opc)), 10_000);
        await server.GrantAsync(new Deal(provider, resident, await server.NewContractAsync(provider, resident)), 7_000);

        await Refusal.AssertAsync(() => server.Ledger.GiftAsync(new GiftRequest
        {
            RequestId = Ids.New(), OperatorUscc = opc, GrantId = opcGrant.GrantId, ResidentUscc = resident, AmountFen = 3_001,
        }).ResponseAsync, StatusCode.FailedPrecondition, "UNIT_YEAR_CAP_EXCEEDED");
        var gift = await server.Ledger.GiftAsync(new GiftRequest
        {
            RequestId = Ids.New(), OperatorUscc = opc, GrantId = opcGrant.GrantId, ResidentUscc = resident, AmountFen = 3_000,
        });
        Assert.Equal(0, gift.ResidentUnitYear.HeadroomFen);
        Assert.Equal(3_000, gift.OperatorUnitYear.HeadroomFen);
    }

    private Task<GiftResponse> Gift(string operatorUscc, long grantId, string resident, long amount) =>
        _server.Ledger.GiftAsync(new GiftRequest
        {
            RequestId = Ids.New(), OperatorUscc = operatorUscc, GrantId = grantId, ResidentUscc = resident, AmountFen = amount,
        }).ResponseAsync;

    private static SetStandingRequest Standing(string uscc, Standing standing, string reason) =>
        new() { RequestId = Ids.New(), Uscc = uscc, Standing = standing, Reason = reason };
}
