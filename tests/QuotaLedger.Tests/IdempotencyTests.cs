using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

public sealed class IdempotencyTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private readonly LedgerServer _server = fixture.Server;

    [Fact]
    public async Task The_same_request_id_and_request_returns_the_first_response_without_a_second_effect()
    {
        var deal = await _server.NewDealAsync();
        var grantRequest = deal.GrantRequest(5_000);
        var grant = await _server.Ledger.GrantAsync(grantRequest);
        var retried = await _server.Ledger.GrantAsync(grantRequest);
        Assert.Equal(grant, retried);

        var deductRequest = deal.DeductRequest(grant.GrantId, 2_000);
        var first = await _server.Ledger.DeductAsync(deductRequest);
        await _server.DeductAsync(deal, grant.GrantId, 2_000);
        var replay = await _server.Ledger.DeductAsync(deductRequest);

        Assert.Equal(first, replay);
        var info = await _server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(3_000, info.RemainingFen);
    }

    [Fact]
    public async Task The_same_request_id_with_a_different_request_answers_REQUEST_ID_REUSED()
    {
        var deal = await _server.NewDealAsync();
        var request = deal.GrantRequest(5_000);
        await _server.Ledger.GrantAsync(request);

        var changed = request.Clone();
        changed.AmountFen = 5_001;
        await Refusal.AssertAsync(() => _server.Ledger.GrantAsync(changed).ResponseAsync, StatusCode.AlreadyExists, "REQUEST_ID_REUSED");

        // Another method with the same caller and id is a different request too.
        var deduct = deal.DeductRequest(1, 1_000);
        deduct.RequestId = request.RequestId;
        await Refusal.AssertAsync(() => _server.Ledger.DeductAsync(deduct).ResponseAsync, StatusCode.AlreadyExists, "REQUEST_ID_REUSED");

        var contract = await _server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = deal.Provider, ContractNo = deal.ContractNo });
        Assert.Equal(5_000, contract.GrantedFen);
    }

    [Fact]
    public async Task A_refusal_is_the_first_response_too_and_is_replayed_with_its_reason()
    {
        var provider = await _server.NewProviderAsync();
        var unit = await _server.NewUnitAsync();
        var deal = new Deal(provider, unit, await _server.NewContractAsync(provider, unit));
        var request = deal.GrantRequest(5_000);

        await Refusal.AssertAsync(() => _server.Ledger.GrantAsync(request).ResponseAsync, StatusCode.FailedPrecondition, "UNIT_NOT_APPROVED");
        await _server.ApproveAsync(provider, unit);
        await Refusal.AssertAsync(() => _server.Ledger.GrantAsync(request).ResponseAsync, StatusCode.FailedPrecondition, "UNIT_NOT_APPROVED");

        var fresh = request.Clone();
        fresh.RequestId = Ids.New();
        await _server.Ledger.GrantAsync(fresh);
    }

    [Fact]
    public async Task Request_ids_are_scoped_to_the_caller()
    {
        var dealA = await _server.NewDealAsync();
        var dealB = await _server.NewDealAsync();
        var shared = Ids.New();

        var a = dealA.GrantRequest(1_000);
        a.RequestId = shared;
        var b = dealB.GrantRequest(2_000);
        b.RequestId = shared;

        var grantA = await _server.Ledger.GrantAsync(a);
        var grantB = await _server.Ledger.GrantAsync(b);
        Assert.NotEqual(grantA.GrantId, grantB.GrantId);
        Assert.Equal(2_000, grantB.AmountFen);
    }
}
