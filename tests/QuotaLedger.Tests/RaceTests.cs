using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Concurrency: the unit-year row lock and the idempotency claim under parallel calls.</summary>
public sealed class RaceTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private readonly LedgerServer _server = fixture.Server;

    [Fact]
    public async Task Deduct_never_overdraws_a_grant_under_race()
    {
        var deal = await _server.NewDealAsync();
        const long share = 500;
        var grant = await _server.GrantAsync(deal, 200 * share);

        // 300 invoices of 1,000 fen at 50%: each asks for 500 fen; the grant covers exactly 200 of them.
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 300).Select(async _ =>
        {
            try
            {
                return (Response: await _server.DeductAsync(deal, grant.GrantId, 1_000), Reason: "");
            }
            catch (RpcException e)
            {
                return (Response: (DeductResponse?)null, Reason: Refusal.ReasonOf(e));
            }
        }));

        var applied = outcomes.Where(o => o.Response is not null).Select(o => o.Response!).ToList();
        Assert.Equal(200, applied.Count);
        Assert.All(applied, r => Assert.Equal(share, r.AppliedFen));
        Assert.All(applied, r => Assert.Equal(share, r.RequestedFen));
        Assert.Equal(100, outcomes.Count(o => o.Reason == "GRANT_EMPTY"));
        Assert.Equal(Enumerable.Range(0, 200).Select(i => i * share).ToHashSet(), applied.Select(r => r.GrantRemainingFen).ToHashSet());

        var info = await _server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(0, info.RemainingFen);
        Assert.Equal(200 * share, info.DeductedFen);
        var unitYear = await _server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = 2026 });
        Assert.Equal(200 * share, unitYear.DeductedFen);
        await Books.AssertBalancedAsync(_server);
    }

    [Fact]
    public async Task Racing_deductions_cap_the_last_one_at_what_the_grant_still_holds()
    {
        var deal = await _server.NewDealAsync();
        var grant = await _server.GrantAsync(deal, (50 * 500) + 250);

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 80).Select(async _ =>
        {
            try
            {
                return (await _server.DeductAsync(deal, grant.GrantId, 1_000)).AppliedFen;
            }
            catch (RpcException e) when (Refusal.ReasonOf(e) == "GRANT_EMPTY")
            {
                return 0;
            }
        }));

        Assert.Equal(50, outcomes.Count(a => a == 500));
        Assert.Equal(1, outcomes.Count(a => a == 250));
        Assert.Equal(29, outcomes.Count(a => a == 0));
    }

    [Fact]
    public async Task Concurrent_grants_never_exceed_the_unit_year_cap()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2034, 6, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2034, capFen: 10_000, totalFen: 10_000_000, fundFen: 10_000_000);
        var deal = await server.NewDealAsync();
        var contracts = new List<string> { deal.ContractNo };
        for (var i = 0; i < 3; i++)
        {
            contracts.Add(await server.NewContractAsync(deal.Provider, deal.Unit));
        }

        // A second server instance on the same database takes half the calls, as a second replica would.
        await using var replica = fixture.StartServer(server.Clock.GetUtcNow());
        // A grant that waited for the unit-year's lock past the lock timeout is answered STORE_UNAVAILABLE (on a loaded
        // machine some do): as a client would, it is sent again with the same request id until it gets a decision.
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 40).Select(async i =>
        {
            var via = i % 2 == 0 ? server : replica;
            var request = (deal with { ContractNo = contracts[i % contracts.Count] }).GrantRequest(1_000);
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await via.Ledger.GrantAsync(request);
                    return "OK";
                }
                catch (RpcException e) when (Refusal.ReasonOf(e) == "STORE_UNAVAILABLE" && attempt < 10)
                {
                }
                catch (RpcException e)
                {
                    return Refusal.ReasonOf(e);
                }
            }
        }));

        Assert.Equal(10, outcomes.Count(o => o == "OK"));
        Assert.Equal(30, outcomes.Count(o => o == "UNIT_YEAR_CAP_EXCEEDED"));
        var unitYear = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = 2034 });
        Assert.Equal(10_000, unitYear.GrantedOpenFen);
        Assert.Equal(0, unitYear.HeadroomFen);
        var program = await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2034 });
        Assert.Equal(10_000_000 - 10_000, program.PoolFen);
    }

    [Fact]
    public async Task One_request_id_sent_50_times_in_parallel_has_one_effect_and_50_identical_responses()
    {
        var deal = await _server.NewDealAsync();
        var grant = await _server.GrantAsync(deal, 100_000);
        var request = deal.DeductRequest(grant.GrantId, 2_000);

        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => _server.Ledger.DeductAsync(request).ResponseAsync));

        Assert.All(responses, r => Assert.Equal(responses[0], r));
        Assert.Equal(1_000, responses[0].AppliedFen);
        var info = await _server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(99_000, info.RemainingFen);
        var entries = await Statement.ReadAsync(_server, new ListEntriesRequest { GrantId = grant.GrantId });
        Assert.Single(entries, e => e.Kind == EntryKind.Deduction);
    }

    [Fact]
    public async Task One_grant_request_id_sent_50_times_in_parallel_grants_once()
    {
        var deal = await _server.NewDealAsync();
        var request = deal.GrantRequest(7_000);

        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => _server.Ledger.GrantAsync(request).ResponseAsync));

        Assert.All(responses, r => Assert.Equal(responses[0], r));
        var contract = await _server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = deal.Provider, ContractNo = deal.ContractNo });
        Assert.Equal(7_000, contract.GrantedFen);
    }
}
