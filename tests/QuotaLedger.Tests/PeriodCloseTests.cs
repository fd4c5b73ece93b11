using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Closing months and a year (issue 28): the closing's figures equal the as-of reads at the period's last
/// instant and are each an opening plus the period's movements; a closed period takes no entry dated inside it; a
/// claw-back found after the close is listed as a correction and leaves the closing as it was; a year closes after its
/// twelve months and settles its pool. One story in one test, on the class's own database: closings are ledger-wide.</summary>
public sealed class PeriodCloseTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly DateTimeOffset May20 = new(2026, 5, 20, 2, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset June10 = new(2026, 6, 10, 2, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task A_month_and_a_year_close_to_the_as_of_figures_and_nothing_is_dated_inside_them_after()
    {
        await using var server = fixture.StartServer(May20);
        await server.SetSmallYearAsync(2026, capFen: 100_000_000, totalFen: 10_000_000_000, fundFen: 1_000_000);

        // May: a grant that lapses in June.
        var deal = await server.NewDealAsync(contractAmountFen: 10_000_000);
        var lapsing = await server.GrantAsync(deal, 50_000);

        // June: deductions, a release, a gift, a redemption to payment, and the May grant's expiry.
        server.Clock.SetUtcNow(June10);
        await server.DeductAsync(deal, lapsing.GrantId, 10_000);
        var grant = await server.GrantAsync(deal, 200_000);
        var deduction = await server.DeductAsync(deal, grant.GrantId, 60_000);
        var released = await server.GrantAsync(deal, 30_000);
        await server.Ledger.ReleaseAsync(new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = deal.Provider, GrantId = released.GrantId, StatementRef = "JS-1" });
        var opc = await server.NewConfirmedOperatorAsync(deal.Provider);
        var resident = await server.NewConfirmedResidentAsync(deal.Provider, opc);
        var opcGrant = await server.GrantAsync(new Deal(deal.Provider, opc, await server.NewContractAsync(deal.Provider, opc)), 50_000);
        await server.Ledger.GiftAsync(new GiftRequest { RequestId = Ids.New(), OperatorUscc = opc, GrantId = opcGrant.GrantId, ResidentUscc = resident, AmountFen = 20_000 });
        var batch = await server.Redemption.OpenBatchAsync(new OpenBatchRequest
        {
            RequestId = Ids.New(), Year = 2026, ClosesAt = Timestamp.FromDateTimeOffset(June10.AddDays(10)),
        });
        var redemption = await server.Redemption.SubmitAsync(new SubmitRequest
        {
            RequestId = Ids.New(), BatchId = batch.BatchId, UnitUscc = deal.Unit, AmountFen = 20_000, Evidence = { RedemptionTests.Evidence() },
        });
        await server.Redemption.ReviewAsync(new ReviewRequest
        {
            RequestId = Ids.New(), RedemptionId = redemption.RedemptionId, ApprovedFen = 15_000, Reviewer = "Expert Li", Reason = "one invoice short",
        });
        await server.Redemption.DisburseAsync(new DisburseRequest { RequestId = Ids.New(), RedemptionId = redemption.RedemptionId, PaymentRef = "PAY-2026-06" });
        server.Clock.SetUtcNow(new DateTimeOffset(2026, 6, 25, 2, 0, 0, TimeSpan.Zero));
        Assert.Equal(1, (await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() })).ExpiredGrants);

        // Not before its end, not out of order.
        await Refusal.AssertAsync(() => Close(server, 2026, 6), StatusCode.FailedPrecondition, "PERIOD_NOT_READY");
        server.Clock.SetUtcNow(new DateTimeOffset(2026, 7, 3, 2, 0, 0, TimeSpan.Zero));
        await Refusal.AssertAsync(() => Close(server, 2026, 6), StatusCode.FailedPrecondition, "PERIOD_NOT_READY");
        await Refusal.AssertAsync(() => Close(server, 2026, 0), StatusCode.FailedPrecondition, "PERIOD_NOT_READY");
        await Refusal.AssertAsync(() => Close(server, 2026, 13), StatusCode.InvalidArgument, "INVALID_ARGUMENT");

        var may = await Close(server, 2026, 5);
        var closeJune = new ClosePeriodRequest { RequestId = Ids.New(), Year = 2026, Month = 6 };
        var june = await server.Admin.ClosePeriodAsync(closeJune);
        Assert.Equal(june, await server.Admin.ClosePeriodAsync(closeJune));
        await Refusal.AssertAsync(() => Close(server, 2026, 6), StatusCode.FailedPrecondition, "PERIOD_CLOSED");
        await Refusal.AssertAsync(() => Close(server, 2026, 5), StatusCode.FailedPrecondition, "PERIOD_CLOSED");

        foreach (var closing in new[] { may, june })
        {
            await AssertFiguresAreTheAsOfReadsAsync(server, closing);
        }

        // June opens where May closed, and moves by June's entries: the May grant's expiry and the June work.
        var juneBody = june.Decoded;
        Assert.All(juneBody.Figures, f => Assert.Equal(f.ClosingFen, f.OpeningFen + f.Movements.Sum(m => m.Fen)));
        foreach (var line in may.Decoded.Figures)
        {
            var next = juneBody.Figures.SingleOrDefault(f => (f.Scope, f.Year, f.Party, f.AccountKind) == (line.Scope, line.Year, line.Party, line.AccountKind));
            Assert.Equal(line.ClosingFen, next?.OpeningFen ?? 0);
        }

        // (A gift moves quota between two grants of the year: it shows in the unit-years' lines, not the programme's.)
        var juneMoves = juneBody.Figures.SelectMany(f => f.Movements).Select(m => m.Kind).ToHashSet();
        Assert.Superset(new HashSet<EntryKind>
        {
            EntryKind.Grant, EntryKind.Deduction, EntryKind.Release, EntryKind.Gift, EntryKind.Expiry, EntryKind.RedemptionSubmitted,
            EntryKind.RedemptionReviewed, EntryKind.Disbursement,
        }, juneMoves);
        var juneEntries = await Statement.ReadAsync(server, new ListEntriesRequest
        {
            From = juneBody.StartsAt, To = Timestamp.FromDateTimeOffset(juneBody.EndsAt.ToDateTimeOffset().AddTicks(-10)),
        });
        Assert.Equal(juneEntries.Count, juneBody.Entries);
        var checkpoint = await server.Admin.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = june.CheckpointId });
        Assert.Equal((2026, 6), (checkpoint.Decoded.Seal.Year, checkpoint.Decoded.Seal.Month));
        Assert.Equal(june.Digest, checkpoint.Decoded.Seal.ClosingDigest);

        // An entry dated inside a closed month is refused on every path: a server whose clock says June.
        await using (var late = fixture.StartServer(new DateTimeOffset(2026, 6, 28, 2, 0, 0, TimeSpan.Zero)))
        {
            await Refusal.AssertAsync(() => late.DeductAsync(deal, grant.GrantId, 1_000), StatusCode.FailedPrecondition, "PERIOD_CLOSED");
            await Refusal.AssertAsync(() => late.GrantAsync(deal, 1_000), StatusCode.FailedPrecondition, "PERIOD_CLOSED");
            await Refusal.AssertAsync(() => late.Ledger.GiftAsync(new GiftRequest
            {
                RequestId = Ids.New(), OperatorUscc = opc, GrantId = opcGrant.GrantId, ResidentUscc = resident, AmountFen = 1_000,
            }).ResponseAsync, StatusCode.FailedPrecondition, "PERIOD_CLOSED");
            await Refusal.AssertAsync(() => late.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1 }).ResponseAsync,
                StatusCode.FailedPrecondition, "PERIOD_CLOSED");
        }

        // A claw-back of June's payment found in July: an entry of July that names the June entry it reverses; June's
        // closing stays as it was.
        var juneDisbursement = juneEntries.Single(e => e.Kind == EntryKind.Disbursement);
        server.Clock.SetUtcNow(new DateTimeOffset(2026, 7, 5, 2, 0, 0, TimeSpan.Zero));
        var back = await server.Redemption.ClawBackAsync(new ClawBackRequest
        {
            RequestId = Ids.New(), RedemptionId = redemption.RedemptionId, AmountFen = 5_000, Reason = "forged invoice", Standing = Standing.Good,
        });
        var corrected = await server.Admin.GetClosingAsync(new GetClosingRequest { Year = 2026, Month = 6 });
        var correction = Assert.Single(corrected.Corrections);
        Assert.Equal((juneDisbursement.EntryId, EntryKind.ClawBack, 5_000L), (correction.ReversesEntryId, correction.Kind, correction.AmountFen));
        Assert.Equal(june.Digest, corrected.Digest);
        Assert.Equal(june.Decoded, corrected.Decoded);
        await AssertFiguresAreTheAsOfReadsAsync(server, corrected);

        // The year: not before December is closed; then its pool's remainder is settled, and nothing more moves its quota.
        server.Clock.SetUtcNow(new DateTimeOffset(2027, 1, 5, 2, 0, 0, TimeSpan.Zero));
        await Refusal.AssertAsync(() => Close(server, 2026, 0), StatusCode.FailedPrecondition, "PERIOD_NOT_READY");
        var months = new List<Closing>();
        for (var month = 7; month <= 12; month++)
        {
            months.Add(await Close(server, 2026, month));
        }

        var july = months[0];
        Assert.Contains(july.Decoded.Figures, f => f.Scope == ClosingScope.UnitYear && f.Party == deal.Unit
            && f.Movements.Any(m => m.Kind == EntryKind.ClawBack));
        var poolBefore = (await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 })).PoolFen;
        Assert.True(poolBefore > 0);
        var year = await Close(server, 2026, 0);
        Assert.Equal(poolBefore, year.Decoded.SettledFen);
        var after = await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 });
        Assert.Equal((0L, 0L), (after.PoolFen, after.GrantedOpenFen));
        var settlement = Assert.Single(await Statement.ReadAsync(server, new ListEntriesRequest { Year = 2026, From = Timestamp.FromDateTimeOffset(new DateTimeOffset(2027, 1, 1, 0, 0, 0, TimeSpan.Zero)) }),
            e => e.Kind == EntryKind.YearSettlement);
        Assert.Equal(year.Decoded.SettlementEntryId, settlement.EntryId);
        Assert.Equal(poolBefore, settlement.Postings.Single(p => p.AccountKind == AccountKind.Settled).DebitFen);

        // The year's lines are the year's own: each closes where December closed it, and opens from nothing.
        var december = months[^1].Decoded;
        Assert.All(year.Decoded.Figures, f => Assert.Equal(2026, f.Year));
        Assert.All(year.Decoded.Figures, f => Assert.Equal(0, f.OpeningFen));
        var decemberClosing = december.Figures.Where(f => f.Year == 2026).ToDictionary(f => (f.Scope, f.Party, f.AccountKind), f => f.ClosingFen);
        Assert.All(year.Decoded.Figures, f => Assert.Equal(decemberClosing.GetValueOrDefault((f.Scope, f.Party, f.AccountKind)), f.ClosingFen));
        Assert.Subset(year.Decoded.Figures.Select(f => (f.Scope, f.Party, f.AccountKind)).ToHashSet(), decemberClosing.Keys.ToHashSet());

        await Refusal.AssertAsync(() => server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1 }).ResponseAsync,
            StatusCode.FailedPrecondition, "PERIOD_CLOSED");
        await Refusal.AssertAsync(() => Close(server, 2026, 0), StatusCode.FailedPrecondition, "PERIOD_CLOSED");

        // A claw-back of the closed year's deduction returns its quota to the year's settled account: the pool stays empty.
        var settledBefore = (await server.Admin.TrialBalanceAsync(new TrialBalanceRequest { Year = 2026 })).Kinds.Single(k => k.Kind == AccountKind.Settled).BalanceFen;
        await server.Redemption.ClawBackAsync(new ClawBackRequest
        {
            RequestId = Ids.New(), DeductionId = deduction.DeductionId, AmountFen = 1_000, Reason = "found after the year closed", Standing = Standing.Good,
        });
        Assert.Equal(0, (await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 })).PoolFen);
        Assert.Equal(settledBefore + 1_000,
            (await server.Admin.TrialBalanceAsync(new TrialBalanceRequest { Year = 2026 })).Kinds.Single(k => k.Kind == AccountKind.Settled).BalanceFen);

        var listed = await server.Admin.ListClosingsAsync(new ListClosingsRequest { Year = 2026 });
        Assert.Equal([5, 6, 7, 8, 9, 10, 11, 12, 0], listed.Closings.Select(c => c.Month));
        Assert.All(listed.Closings, c => Assert.Null(c.Decoded));
        Assert.Single(listed.Closings.Single(c => c.Month == 6).Corrections, c => c.EntryId == back.Receipt.EntryId);
        Assert.True((await server.Admin.VerifyJournalAsync(new VerifyJournalRequest())).Ok);
        await Books.AssertBalancedAsync(server, 2026);

        // The bureau's page lists the months and the year: closed, with the year's figures at their end and June's correction.
        using var http = new HttpClient(server.CreateHandler()) { BaseAddress = server.BaseAddress };
        using var summary = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync(new Uri("/bureau/api/summary?year=2026", UriKind.Relative)));
        var lines = summary.RootElement.GetProperty("closings").EnumerateArray().ToList();
        Assert.Equal(["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11", "2026-12", "2026"],
            lines.Select(l => l.GetProperty("period").GetString()));
        Assert.Equal([false, false, false, false, true, true, true, true, true, true, true, true, true], lines.Select(l => l.GetProperty("closed").GetBoolean()));
        Assert.All(lines.Take(4), l => Assert.Equal("before the first closing", l.GetProperty("state").GetString()));
        var juneLine = lines[5];
        // June's payment clawed back in July, and June's deduction after the year closed.
        Assert.Equal((2, 6_000L), (juneLine.GetProperty("corrections").GetInt32(), juneLine.GetProperty("correctedFen").GetInt64()));
        Assert.Equal(june.Decoded.ProgramYears.Single(p => p.Year == 2026).PoolFen, juneLine.GetProperty("figures").GetProperty("poolFen").GetInt64());
    }

    /// <summary>The closing's as-of figures are what GetProgramYear and GetUnitYear answer as of the period's last
    /// instant, and its account lines hold the same amounts, lapsed quota aside.</summary>
    private static async Task AssertFiguresAreTheAsOfReadsAsync(LedgerServer server, Closing closing)
    {
        var body = closing.Decoded;
        var last = Timestamp.FromDateTimeOffset(body.EndsAt.ToDateTimeOffset().AddTicks(-10));
        var programme = Assert.Single(body.ProgramYears, p => p.Year == 2026);
        Assert.Equal(await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026, AsOf = last }), programme);
        Assert.NotEmpty(body.UnitYears);
        foreach (var unitYear in body.UnitYears)
        {
            var read = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = unitYear.UnitUscc, Year = unitYear.Year, AsOf = last });
            Assert.Equal(
                (read.CapFen, read.GrantedOpenFen, read.DeductedFen, read.RedeemedFen, read.HeadroomFen),
                (unitYear.CapFen, unitYear.GrantedOpenFen, unitYear.DeductedFen, unitYear.RedeemedFen, unitYear.HeadroomFen));
        }

        long Line(AccountKind kind) =>
            body.Figures.SingleOrDefault(f => f.Scope == ClosingScope.Programme && f.Year == 2026 && f.AccountKind == kind)?.ClosingFen ?? 0;
        Assert.Equal(programme.FundedFen, Line(AccountKind.Funding));
        Assert.Equal(programme.PoolFen + programme.GrantedOpenFen, Line(AccountKind.Pool) + Line(AccountKind.Grant));
        Assert.Equal(programme.DeductedFen, Line(AccountKind.Deducted) + Line(AccountKind.Pending) + Line(AccountKind.Redeemed) + Line(AccountKind.Disbursed));
        Assert.Equal(programme.RedeemedFen, Line(AccountKind.Redeemed) + Line(AccountKind.Disbursed));
        Assert.Equal(programme.ReceivableFen, Line(AccountKind.Receivable));
    }

    private static Task<Closing> Close(LedgerServer server, int year, int month) =>
        server.Admin.ClosePeriodAsync(new ClosePeriodRequest { RequestId = Ids.New(), Year = year, Month = month }).ResponseAsync;
}
