using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>What a write answers is what the ledger holds: a later read returns the same values, times included
/// (PostgreSQL keeps a time to the microsecond, .NET to a tenth of one).</summary>
public sealed class WriteAnswerTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task A_grant_and_a_gift_answer_the_times_a_later_read_returns()
    {
        // A clock between two microseconds.
        await using var server = fixture.StartServer(LedgerFixture.Now.AddTicks(1_234_567));
        using var ledger = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = server.BaseAddress, HttpHandler = server.CreateHandler() });
        var provider = await server.NewProviderAsync();
        var opc = await server.NewConfirmedOperatorAsync(provider);
        var resident = await server.NewConfirmedResidentAsync(provider, opc);
        var contractNo = await server.NewContractAsync(provider, opc);

        var grant = await ledger.GrantAsync(provider, contractNo, new Fen(100_000));
        var grantRead = await ledger.GetGrantAsync(grant.GrantId);
        Assert.Equal(grantRead.ExpiresAt, grant.ExpiresAt);
        Assert.Equal(grantRead.GrantedAt, grant.GrantedAt);

        var gift = await ledger.GiftAsync(opc, grant.GrantId, resident, new Fen(20_000));
        Assert.Equal(await ledger.GetGrantAsync(gift.Grant.GrantId), gift.Grant);
    }
}
