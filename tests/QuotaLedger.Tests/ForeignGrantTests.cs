using System.Globalization;
using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>A write tells a caller nothing of what is not its own, as a read does: every write that names a grant answers
/// for another party's grant exactly as for a grant that does not exist, on every path, and changes nothing.</summary>
public sealed class ForeignGrantTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task Every_write_on_another_partys_grant_answers_exactly_as_on_a_grant_that_does_not_exist()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        var stranger = await server.NewProviderAsync();
        var missing = 9_000_000_000L + Random.Shared.Next(1_000_000);
        await using var oneByOne = fixture.StartServer(LedgerFixture.Now, settings: new Dictionary<string, string?> { ["Deductions:Coalesce"] = "false" });

        // Deduct, coalesced and one by one, and its dry run.
        foreach (var target in new[] { server, oneByOne })
        {
            await AssertAlikeAsync(grant.GrantId, missing, id => target.Ledger.DeductAsync(Deduction(deal, stranger, id)).ResponseAsync);
        }

        var foreignDryRun = await DryRunAsync(server, deal, stranger, grant.GrantId);
        var missingDryRun = await DryRunAsync(server, deal, stranger, missing);
        Assert.Equal((missingDryRun.Reason, Anonymous(missingDryRun.Message, missing)), (foreignDryRun.Reason, Anonymous(foreignDryRun.Message, grant.GrantId)));
        Assert.Equal(("UNKNOWN_GRANT", 0, 0L), (foreignDryRun.Reason, foreignDryRun.RatioBp, foreignDryRun.GrantBalanceFen));

        // Release.
        await AssertAlikeAsync(grant.GrantId, missing, id => server.Ledger.ReleaseAsync(new ReleaseRequest
        {
            RequestId = Ids.New(), ProviderUscc = stranger, GrantId = id, StatementRef = "JS-1",
        }).ResponseAsync);

        // Gift: a confirmed operator names a grant made to another unit.
        var opc = await server.NewConfirmedOperatorAsync(deal.Provider);
        var resident = await server.NewConfirmedResidentAsync(deal.Provider, opc);
        await AssertAlikeAsync(grant.GrantId, missing, id => server.Ledger.GiftAsync(new GiftRequest
        {
            RequestId = Ids.New(), OperatorUscc = opc, GrantId = id, ResidentUscc = resident, AmountFen = 1_000,
        }).ResponseAsync);

        // Nothing of the grant moved, and its owner still deducts from it.
        var after = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal((GrantStatus.Open, 10_000L), (after.Status, after.RemainingFen));
        Assert.Equal(500, (await server.DeductAsync(deal, grant.GrantId, 1_000)).AppliedFen);
    }

    /// <summary>The call on the foreign grant and on the missing one fail alike: status, reason word, message (but for the
    /// id it repeats) and metadata.</summary>
    private static async Task AssertAlikeAsync(long foreign, long missing, Func<long, Task> call)
    {
        var onForeign = await Assert.ThrowsAsync<RpcException>(() => call(foreign));
        var onMissing = await Assert.ThrowsAsync<RpcException>(() => call(missing));
        Assert.Equal((StatusCode.NotFound, "UNKNOWN_GRANT"), (onMissing.StatusCode, Refusal.ReasonOf(onMissing)));
        Assert.Equal(
            (onMissing.StatusCode, Refusal.ReasonOf(onMissing), Anonymous(onMissing.Status.Detail, missing)),
            (onForeign.StatusCode, Refusal.ReasonOf(onForeign), Anonymous(onForeign.Status.Detail, foreign)));
        Assert.Equal(Refusal.MetadataOf(onMissing), Refusal.MetadataOf(onForeign));
    }

    private static string Anonymous(string message, long grantId) => message.Replace(grantId.ToString(CultureInfo.InvariantCulture), "#", StringComparison.Ordinal);

    private static DeductRequest Deduction(Deal deal, string provider, long grantId)
    {
        var request = deal.DeductRequest(grantId, 1_000);
        request.ProviderUscc = provider;
        return request;
    }

    private static async Task<Explanation> DryRunAsync(LedgerServer server, Deal deal, string provider, long grantId)
    {
        var request = Deduction(deal, provider, grantId);
        request.DryRun = true;
        return (await server.Ledger.DeductAsync(request)).Explanation;
    }
}
