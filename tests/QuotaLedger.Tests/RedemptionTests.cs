using Grpc.Core;
using Google.Protobuf.WellKnownTypes;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Redemption (Art 12, 13) and claw-back (Art 17), with the figures checked to the fen at each step.</summary>
public sealed class RedemptionTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task From_funding_to_disbursement_and_claw_back_the_figures_hold_to_the_fen()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2041, 4, 1, 2, 0, 0, TimeSpan.Zero));
        await server.Admin.SetYearPolicyAsync(new SetYearPolicyRequest
        {
            RequestId = Ids.New(), Year = 2041, SelfControllableRatioBp = 5_000, OtherRatioBp = 3_000, SmeBonusBp = 1_000,
            UnitYearCapFen = 1_000_000, UnitYearFloorFen = 1_000, YearTotalFen = 10_000_000, ValidityMonths = 1,
        });
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2041, AmountFen = 100_000 });
        var deal = await server.NewDealAsync(contractAmountFen: 1_000_000);
        var grant = await server.GrantAsync(deal, 20_000);
        var first = await server.DeductAsync(deal, grant.GrantId, 1_000);   // 500 applied
        await Expect(server, deal.Unit, unitDeducted: 500, unitRedeemed: 0, pool: 80_000, open: 19_500, deducted: 500, redeemed: 0, disbursed: 0, receivable: 0);

        var batch = await server.Redemption.OpenBatchAsync(new OpenBatchRequest
        {
            RequestId = Ids.New(), Year = 2041, ClosesAt = Timestamp.FromDateTimeOffset(server.Clock.GetUtcNow().AddDays(10)),
        });

        await Refusal.AssertAsync(() => Submit(server, batch.BatchId, deal.Unit, 500), StatusCode.FailedPrecondition, "BELOW_YEAR_FLOOR");
        await server.DeductAsync(deal, grant.GrantId, 7_000);              // 3,500 more: 4,000 deducted
        await Refusal.AssertAsync(() => Submit(server, batch.BatchId, deal.Unit, 4_001), StatusCode.FailedPrecondition, "REDEMPTION_EXCEEDS_DEDUCTED");
        await Refusal.AssertAsync(() => Submit(server, batch.BatchId, deal.Unit, 100, evidence: Evidence().Skip(1)), StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => Submit(server, 987_654, deal.Unit, 100), StatusCode.NotFound, "UNKNOWN_BATCH");

        var redemption = await Submit(server, batch.BatchId, deal.Unit, 3_000);
        Assert.Equal(RedemptionState.Submitted, redemption.State);
        var statement = Assert.Single(redemption.Evidence, e => e.Kind == EvidenceKind.PlatformStatement);
        Assert.Equal(64, statement.Sha256.Length);
        Assert.Equal(8, redemption.Evidence.Count);
        await Expect(server, deal.Unit, unitDeducted: 4_000, unitRedeemed: 0, pool: 80_000, open: 16_000, deducted: 4_000, redeemed: 0, disbursed: 0, receivable: 0);
        await Refusal.AssertAsync(() => Submit(server, batch.BatchId, deal.Unit, 1_001), StatusCode.FailedPrecondition, "REDEMPTION_EXCEEDS_DEDUCTED");

        var reviewed = await server.Redemption.ReviewAsync(new ReviewRequest
        {
            RequestId = Ids.New(), RedemptionId = redemption.RedemptionId, ApprovedFen = 2_000, Reviewer = "Expert Li", Reason = "one invoice lacks a payment proof",
        });
        Assert.Equal(2_000, reviewed.ApprovedFen);
        await Expect(server, deal.Unit, unitDeducted: 4_000, unitRedeemed: 2_000, pool: 80_000, open: 16_000, deducted: 4_000, redeemed: 2_000, disbursed: 0, receivable: 0);
        await Refusal.AssertAsync(() => server.Redemption.ReviewAsync(new ReviewRequest
        {
            RequestId = Ids.New(), RedemptionId = redemption.RedemptionId, ApprovedFen = 1, Reviewer = "Expert Li", Reason = "again",
        }).ResponseAsync, StatusCode.FailedPrecondition, "ALREADY_DECIDED");

        // The unapproved 1,000 may be applied for again, with the 1,000 never applied for.
        var second = await Submit(server, batch.BatchId, deal.Unit, 2_000);
        await server.Redemption.ReviewAsync(new ReviewRequest { RequestId = Ids.New(), RedemptionId = second.RedemptionId, ApprovedFen = 0, Reviewer = "Expert Wang", Reason = "no usage logs" });

        var paid = await server.Redemption.DisburseAsync(new DisburseRequest { RequestId = Ids.New(), RedemptionId = redemption.RedemptionId, PaymentRef = "PAY-2041-001" });
        Assert.Equal(RedemptionState.Disbursed, paid.State);
        Assert.Equal(2_000, paid.DisbursedFen);
        await Expect(server, deal.Unit, unitDeducted: 4_000, unitRedeemed: 2_000, pool: 80_000, open: 16_000, deducted: 4_000, redeemed: 2_000, disbursed: 2_000, receivable: 0);
        await Refusal.AssertAsync(() => server.Redemption.DisburseAsync(new DisburseRequest { RequestId = Ids.New(), RedemptionId = redemption.RedemptionId, PaymentRef = "again" }).ResponseAsync,
            StatusCode.FailedPrecondition, "ALREADY_DECIDED");
        await Refusal.AssertAsync(() => server.Redemption.DisburseAsync(new DisburseRequest { RequestId = Ids.New(), RedemptionId = second.RedemptionId, PaymentRef = "x" }).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_AMOUNT");

        Assert.NotNull(paid.Receipt);
        paid.Receipt = null;
        Assert.Equal(paid, await server.Redemption.GetRedemptionAsync(new GetRedemptionRequest { RedemptionId = redemption.RedemptionId }));
        var listed = await server.Redemption.ListRedemptionsAsync(new ListRedemptionsRequest { BatchId = batch.BatchId });
        Assert.Equal([redemption.RedemptionId, second.RedemptionId], listed.Redemptions.Select(r => r.RedemptionId));
        await Refusal.AssertAsync(() => server.Redemption.GetRedemptionAsync(new GetRedemptionRequest { RedemptionId = 987_654 }).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_REDEMPTION");
        await Refusal.AssertAsync(() => server.Redemption.ClawBackAsync(new ClawBackRequest
        {
            RequestId = Ids.New(), DeductionId = 987_654_321_987, AmountFen = 500, Reason = "no such deduction",
        }).ResponseAsync, StatusCode.NotFound, "UNKNOWN_DEDUCTION");

        // Fraud found: the disbursement, a deduction and the grant's open quota are reversed by new entries.
        var back = await server.Redemption.ClawBackAsync(new ClawBackRequest { RequestId = Ids.New(), RedemptionId = redemption.RedemptionId, AmountFen = 500, Reason = "forged invoice" });
        Assert.Equal(Standing.Blacklisted, back.Standing);
        Assert.Equal(deal.Unit, back.PartyUscc);
        await Expect(server, deal.Unit, unitDeducted: 3_500, unitRedeemed: 1_500, pool: 80_000, open: 16_000, deducted: 3_500, redeemed: 1_500, disbursed: 1_500, receivable: 500);

        await server.Redemption.ClawBackAsync(new ClawBackRequest { RequestId = Ids.New(), DeductionId = first.DeductionId, AmountFen = 500, Reason = "forged invoice" });
        await server.Redemption.ClawBackAsync(new ClawBackRequest { RequestId = Ids.New(), GrantId = grant.GrantId, AmountFen = 16_000, Reason = "forged contract" });
        await Expect(server, deal.Unit, unitDeducted: 3_000, unitRedeemed: 1_500, pool: 96_500, open: 0, deducted: 3_000, redeemed: 1_500, disbursed: 1_500, receivable: 500);
        await Refusal.AssertAsync(() => server.DeductAsync(deal, grant.GrantId, 100), StatusCode.FailedPrecondition, "PARTY_SUSPENDED");

        var entries = await Statement.ReadAsync(server, new ListEntriesRequest { UnitUscc = deal.Unit, Year = 2041 });
        var clawBacks = entries.Where(e => e.Kind == EntryKind.ClawBack).ToList();
        Assert.Equal(3, clawBacks.Count);
        Assert.All(clawBacks, c => Assert.Contains(entries, e => e.EntryId == c.ReversesEntryId && e.EntryId < c.EntryId));
        Assert.True((await server.Admin.VerifyJournalAsync(new VerifyJournalRequest())).Ok);

        // Submitting after the batch closed.
        server.Clock.Advance(TimeSpan.FromDays(11));
        await server.Admin.SetStandingAsync(new SetStandingRequest { RequestId = Ids.New(), Uscc = deal.Unit, Standing = Standing.Good, Reason = "appeal upheld" });
        await Refusal.AssertAsync(() => Submit(server, batch.BatchId, deal.Unit, 100), StatusCode.FailedPrecondition, "BATCH_CLOSED");
    }

    private static async Task Expect(LedgerServer server, string unit, long unitDeducted, long unitRedeemed, long pool, long open, long deducted, long redeemed, long disbursed, long receivable)
    {
        var program = await server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2041 });
        Assert.Equal((pool, open, deducted, redeemed, disbursed, receivable),
            (program.PoolFen, program.GrantedOpenFen, program.DeductedFen, program.RedeemedFen, program.DisbursedFen, program.ReceivableFen));
        Assert.Equal(program.FundedFen, program.PoolFen + program.GrantedOpenFen + program.DeductedFen + program.ReceivableFen);
        var unitYear = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = unit, Year = 2041 });
        Assert.Equal((unitDeducted, unitRedeemed), (unitYear.DeductedFen, unitYear.RedeemedFen));
        var trial = await Books.AssertBalancedAsync(server, 2041);
        Assert.Equal(program.FundedFen, trial.Kinds.Single(k => k.Kind == AccountKind.Funding).BalanceFen);
    }

    [Fact]
    public async Task ListRedemptions_pages_by_redemption_id_each_once_in_order_until_an_empty_next_page_token()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2042, 4, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2042, capFen: 1_000_000, totalFen: 10_000_000, fundFen: 100_000);
        var deal = await server.NewDealAsync(contractAmountFen: 1_000_000);
        var grant = await server.GrantAsync(deal, 20_000);
        await server.DeductAsync(deal, grant.GrantId, 20_000);              // 10,000 deducted
        var batch = await server.Redemption.OpenBatchAsync(new OpenBatchRequest
        {
            RequestId = Ids.New(), Year = 2042, ClosesAt = Timestamp.FromDateTimeOffset(server.Clock.GetUtcNow().AddDays(10)),
        });
        var submitted = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            submitted.Add((await Submit(server, batch.BatchId, deal.Unit, 1_000)).RedemptionId);
        }

        var pages = new List<List<long>>();
        var token = "";
        do
        {
            var page = await server.Redemption.ListRedemptionsAsync(new ListRedemptionsRequest { UnitUscc = deal.Unit, PageSize = 2, PageToken = token });
            pages.Add([.. page.Redemptions.Select(r => r.RedemptionId)]);
            token = page.NextPageToken;
            Assert.True(pages.Count <= 5, "The pages never end.");
        }
        while (token.Length > 0);

        Assert.Equal([2, 2, 1], pages.Select(p => p.Count));
        Assert.Equal(submitted.Order(), pages.SelectMany(p => p));

        // A token is only good with the filters it was issued for.
        var second = (await server.Redemption.ListRedemptionsAsync(new ListRedemptionsRequest { UnitUscc = deal.Unit, PageSize = 2 })).NextPageToken;
        Assert.Equal(pages[1], (await server.Redemption.ListRedemptionsAsync(new ListRedemptionsRequest { UnitUscc = deal.Unit, PageSize = 2, PageToken = second }))
            .Redemptions.Select(r => r.RedemptionId));
        var otherFilters = await Refusal.AssertAsync(() => server.Redemption.ListRedemptionsAsync(new ListRedemptionsRequest
        {
            UnitUscc = deal.Unit, Year = 2042, PageSize = 2, PageToken = second,
        }).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        Assert.Contains("page_token", otherFilters.Status.Detail, StringComparison.Ordinal);

        // page_size 0 is the default of 100; a size past the maximum is taken as the maximum, not refused.
        var all = await server.Redemption.ListRedemptionsAsync(new ListRedemptionsRequest { UnitUscc = deal.Unit });
        Assert.Equal(submitted.Order(), all.Redemptions.Select(r => r.RedemptionId));
        Assert.Equal("", all.NextPageToken);
        Assert.Equal(5, (await server.Redemption.ListRedemptionsAsync(new ListRedemptionsRequest { UnitUscc = deal.Unit, PageSize = 50_000 })).Redemptions.Count);
        // A page that ends exactly at the last redemption says there is no next page.
        Assert.Equal("", (await server.Redemption.ListRedemptionsAsync(new ListRedemptionsRequest { UnitUscc = deal.Unit, PageSize = 5 })).NextPageToken);
    }

    [Fact]
    public async Task ListRedemptions_refuses_a_negative_page_size_and_a_malformed_page_token()
    {
        var unit = await fixture.Server.NewUnitAsync();
        Task List(ListRedemptionsRequest request) => fixture.Server.Redemption.ListRedemptionsAsync(request).ResponseAsync;

        await Refusal.AssertAsync(() => List(new ListRedemptionsRequest { UnitUscc = unit, PageSize = -1 }), StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        foreach (var malformed in new[] { "not a token", "AAAA", Convert.ToBase64String(new byte[17]), "%%%" })
        {
            var refused = await Refusal.AssertAsync(() => List(new ListRedemptionsRequest { UnitUscc = unit, PageToken = malformed }),
                StatusCode.InvalidArgument, "INVALID_ARGUMENT");
            Assert.Contains("page_token", refused.Status.Detail, StringComparison.Ordinal);
        }
    }

    private static Task<Redemption> Submit(LedgerServer server, long batchId, string unit, long amount, IEnumerable<Evidence>? evidence = null) =>
        server.Redemption.SubmitAsync(new SubmitRequest
        {
            RequestId = Ids.New(), BatchId = batchId, UnitUscc = unit, AmountFen = amount, Evidence = { evidence ?? Evidence() },
        }).ResponseAsync;

    /// <summary>The seven documents an application carries (Art 13), each with a reference and its SHA-256.</summary>
    internal static IEnumerable<Evidence> Evidence() =>
        new[] { EvidenceKind.ApplicationForm, EvidenceKind.Qualification, EvidenceKind.Contract, EvidenceKind.RdProof, EvidenceKind.Invoice, EvidenceKind.PaymentProof, EvidenceKind.UsageLog }
            .Select(k => new Evidence { Kind = k, Reference = $"doc-{k}", Sha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(k.ToString()))) });
}
