using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>GetUnitYear, GetGrant and GetProgramYear as_of: the ledger as it stood then, computed from the journal, with
/// expiry as of then. Each moment's live answers are recorded as the test goes and compared with as_of that moment later.</summary>
public sealed class AsOfTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private const int Year = 2072;

    private sealed record Moment(string Name, DateTimeOffset At, ProgramYear Programme, UnitYear UnitYear, GrantInfo? First, GrantInfo? Second);

    [Fact]
    public async Task As_of_each_moment_answers_what_the_live_call_answered_then_expiry_and_claw_back_included()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(Year, 3, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(Year, capFen: 5_000_000, totalFen: 10_000_000, fundFen: 4_000_000);
        var deal = await server.NewDealAsync(contractAmountFen: 10_000_000);
        long first = 0, second = 0;
        var moments = new List<Moment>();

        async Task Record(string name)
        {
            var at = server.Clock.GetUtcNow();
            var programme = await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = Year });
            var unitYear = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = Year });
            moments.Add(new Moment(name, at, programme, unitYear,
                first == 0 ? null : await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = first }),
                second == 0 ? null : await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = second })));
            server.Clock.Advance(TimeSpan.FromMinutes(7));
        }

        await Record("funded, nothing granted");
        first = (await server.GrantAsync(deal, 300_000)).GrantId;
        await Record("first grant");
        server.Clock.Advance(TimeSpan.FromDays(3));
        second = (await server.GrantAsync(deal, 200_000)).GrantId;
        await Record("second grant, three days later");
        var deduction = await server.DeductAsync(deal, first, 100_000);
        await Record("a deduction of 50,000");
        await server.DeductAsync(deal, second, 60_000);
        await Record("a deduction from the second grant");
        await server.Redemption.ClawBackAsync(new ClawBackRequest
        {
            RequestId = Ids.New(), DeductionId = deduction.DeductionId, AmountFen = 20_000, Reason = "invoice inflated", Standing = Standing.Good,
        });
        await Record("a claw-back of 20,000 of the deduction");
        await server.Redemption.ClawBackAsync(new ClawBackRequest
        {
            RequestId = Ids.New(), GrantId = second, AmountFen = 30_000, Reason = "grant obtained by fraud", Standing = Standing.Good,
        });
        await Record("a claw-back of 30,000 of the second grant");

        // The first grant expires on 1 April; the second on 4 April. No expiry pass runs until after both.
        server.Clock.Advance(TimeSpan.FromDays(28));
        await Record("first grant past its expiry, no pass yet");
        server.Clock.Advance(TimeSpan.FromDays(3));
        await Record("both past expiry, no pass yet");
        var pass = await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        // Both of this test's grants, and whatever other tests left due on the shared database.
        Assert.True(pass.ExpiredGrants >= 2);
        await Record("after the expiry pass");

        foreach (var moment in moments)
        {
            var asOf = Timestamp.FromDateTimeOffset(moment.At);
            var programme = await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = Year, AsOf = asOf });
            Assert.True(moment.Programme.Equals(programme), $"{moment.Name}: programme year\n live {moment.Programme}\n as_of {programme}");
            var unitYear = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = Year, AsOf = asOf });
            Assert.True(moment.UnitYear.Equals(unitYear), $"{moment.Name}: unit-year\n live {moment.UnitYear}\n as_of {unitYear}");
            foreach (var (grantId, live) in new[] { (first, moment.First), (second, moment.Second) })
            {
                if (live is null)
                {
                    // The grant was made after this moment: as of then it did not exist.
                    await Refusal.AssertAsync(() => server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantId, AsOf = asOf }).ResponseAsync,
                        StatusCode.NotFound, "UNKNOWN_GRANT");
                    continue;
                }

                var then = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantId, AsOf = asOf });
                Assert.True(live.Equals(then), $"{moment.Name}: grant {grantId}\n live {live}\n as_of {then}");
            }
        }

        // The figures moved where the test says they did: a claw-back shows only from its own time on, and a grant past
        // its expiry is expired (holding nothing, its quota back in the pool) before the pass had run.
        var byName = moments.ToDictionary(m => m.Name);
        Assert.Equal(0, byName["a deduction from the second grant"].Programme.ClawedBackFen);
        Assert.Equal(20_000, byName["a claw-back of 20,000 of the deduction"].Programme.ClawedBackFen);
        Assert.Equal(50_000 - 20_000 + 30_000, byName["a claw-back of 20,000 of the deduction"].UnitYear.DeductedFen);
        var lapsed = byName["first grant past its expiry, no pass yet"];
        Assert.Equal((GrantStatus.Expired, 0L, 250_000L), (lapsed.First!.Status, lapsed.First.RemainingFen, lapsed.First.ReturnedFen));
        Assert.Equal(GrantStatus.Open, lapsed.Second!.Status);
        // Funded, less both grants, plus both claw-backs and what the first grant held when it expired.
        Assert.Equal(4_000_000 - 300_000 - 200_000 + 20_000 + 30_000 + 250_000, lapsed.Programme.PoolFen);
        Assert.Equal(250_000, lapsed.Programme.ReclaimedFen);
        var swept = byName["after the expiry pass"];
        Assert.Equal(byName["both past expiry, no pass yet"].Programme, swept.Programme);
    }

    [Fact]
    public async Task As_of_now_equals_the_live_answer_and_as_of_the_future_is_refused()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(Year + 1, 3, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(Year + 1, capFen: 5_000_000, totalFen: 10_000_000, fundFen: 1_000_000);
        var deal = await server.NewDealAsync();
        var before = Timestamp.FromDateTimeOffset(server.Clock.GetUtcNow());
        server.Clock.Advance(TimeSpan.FromSeconds(1));
        var grant = await server.GrantAsync(deal, 100_000);
        await server.DeductAsync(deal, grant.GrantId, 40_000);
        server.Clock.Advance(TimeSpan.FromDays(40));

        var now = Timestamp.FromDateTimeOffset(server.Clock.GetUtcNow());
        Assert.Equal(await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = Year + 1 }),
            await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = Year + 1, AsOf = now }));
        Assert.Equal(await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = Year + 1 }),
            await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = Year + 1, AsOf = now }));
        var live = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(live, await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId, AsOf = now }));
        Assert.Equal((GrantStatus.Expired, 0L, 80_000L), (live.Status, live.RemainingFen, live.ReturnedFen));

        // Before anything of the unit existed: zeros under the policy's cap; the grant did not exist.
        Assert.Equal(new UnitYear { UnitUscc = deal.Unit, Year = Year + 1, CapFen = 5_000_000, HeadroomFen = 5_000_000 },
            await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = Year + 1, AsOf = before }));
        await Refusal.AssertAsync(() => server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId, AsOf = before }).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_GRANT");

        var future = Timestamp.FromDateTimeOffset(server.Clock.GetUtcNow().AddSeconds(1));
        await Refusal.AssertAsync(() => server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId, AsOf = future }).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = Year + 1, AsOf = future }).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = Year + 1, AsOf = future }).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");
    }
}
