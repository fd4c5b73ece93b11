using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>A unit-year exists only in a year with a policy: without one there is no cap to show, and the read says so
/// as GetProgramYear does, never a cap of 0.</summary>
public sealed class UnitYearTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task GetUnitYear_in_a_year_without_a_policy_answers_YEAR_NOT_OPEN_as_GetProgramYear_does()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        await server.GrantAsync(deal, 10_000);
        const int withoutPolicy = 2998;

        await Refusal.AssertAsync(() => server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = withoutPolicy }).ResponseAsync,
            StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
        await Refusal.AssertAsync(() => server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = withoutPolicy }).ResponseAsync,
            StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
        var asOf = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(LedgerFixture.Now);
        await Refusal.AssertAsync(() => server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = withoutPolicy, AsOf = asOf }).ResponseAsync,
            StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");

        // A year with a policy answers its figures, the cap among them.
        var open = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = 2026 });
        Assert.Equal(10_000L, open.GrantedOpenFen);
        Assert.True(open.CapFen > 0, $"the cap of 2026 is {open.CapFen}");
    }
}
