using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

public sealed class DeductTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private readonly LedgerServer _server = fixture.Server;

    [Fact]
    public async Task Deduct_applies_the_voucher_share_floored_to_the_fen()
    {
        var deal = await _server.NewDealAsync(selfControllable: false);
        var grant = await _server.GrantAsync(deal, 10_000);

        var result = await _server.DeductAsync(deal, grant.GrantId, 333);

        Assert.Equal(99, result.RequestedFen);
        Assert.Equal(99, result.AppliedFen);
        Assert.Equal(10_000 - 99, result.GrantRemainingFen);
        Assert.Equal(99, result.UnitYear.DeductedFen);
        Assert.Equal(10_000 - 99, result.UnitYear.GrantedOpenFen);
        Assert.True(result.DeductionId > 0);
    }

    [Fact]
    public async Task Deduct_is_capped_at_what_the_grant_holds_and_an_empty_grant_answers_GRANT_EMPTY()
    {
        var deal = await _server.NewDealAsync();
        var grant = await _server.GrantAsync(deal, 1_000);

        var partial = await _server.DeductAsync(deal, grant.GrantId, 3_000);
        Assert.Equal(1_500, partial.RequestedFen);
        Assert.Equal(1_000, partial.AppliedFen);
        Assert.Equal(0, partial.GrantRemainingFen);

        await Refusal.AssertAsync(() => _server.DeductAsync(deal, grant.GrantId, 100), StatusCode.FailedPrecondition, "GRANT_EMPTY");
        var info = await _server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(GrantStatus.Exhausted, info.Status);
        Assert.Equal(1_000, info.DeductedFen);
    }

    [Fact]
    public async Task An_invoice_is_accepted_once_per_provider()
    {
        var deal = await _server.NewDealAsync();
        var first = await _server.GrantAsync(deal, 10_000);
        var second = await _server.GrantAsync(deal, 10_000);
        await _server.DeductAsync(deal, first.GrantId, 1_000, "INV-0001");

        await Refusal.AssertAsync(() => _server.DeductAsync(deal, first.GrantId, 1_000, "INV-0001"), StatusCode.AlreadyExists, "DUPLICATE_INVOICE");
        await Refusal.AssertAsync(() => _server.DeductAsync(deal, second.GrantId, 2_000, "INV-0001"), StatusCode.AlreadyExists, "DUPLICATE_INVOICE");
        var untouched = await _server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = second.GrantId });
        Assert.Equal(10_000, untouched.RemainingFen);

        // Another provider's invoice numbers are its own.
        var otherDeal = await _server.NewDealAsync();
        var otherGrant = await _server.GrantAsync(otherDeal, 10_000);
        await _server.DeductAsync(otherDeal, otherGrant.GrantId, 1_000, "INV-0001");
    }

    [Fact]
    public async Task A_refused_duplicate_invoice_names_the_deduction_that_took_it_and_its_replay_does_too()
    {
        var deal = await _server.NewDealAsync();
        var first = await _server.GrantAsync(deal, 10_000);
        var second = await _server.GrantAsync(deal, 10_000);
        var invoice = "DUPNAME-" + Ids.New()[..8];
        var taken = await _server.DeductAsync(deal, first.GrantId, 1_000, invoice);

        var again = deal.DeductRequest(second.GrantId, 2_000, invoice);
        var refused = await Refusal.AssertAsync(() => _server.Ledger.DeductAsync(again).ResponseAsync, StatusCode.AlreadyExists, "DUPLICATE_INVOICE");
        Assert.Equal(Refusal.DuplicateOf(taken.DeductionId, first.GrantId, invoice), Refusal.MetadataOf(refused));

        // The refusal is recorded against its request id; the retry replays it, naming the same deduction.
        var replayed = await Refusal.AssertAsync(() => _server.Ledger.DeductAsync(again).ResponseAsync, StatusCode.AlreadyExists, "DUPLICATE_INVOICE");
        Assert.Equal(refused.Status.Detail, replayed.Status.Detail);
        Assert.Equal(Refusal.DuplicateOf(taken.DeductionId, first.GrantId, invoice), Refusal.MetadataOf(replayed));

        // Other refusals name nothing.
        var empty = await Refusal.AssertAsync(() => _server.DeductAsync(deal, 987_654_321, 1_000), StatusCode.NotFound, "UNKNOWN_GRANT");
        Assert.Empty(Refusal.MetadataOf(empty));
    }

    [Fact]
    public async Task GetDeduction_reads_one_by_id_or_by_invoice_with_its_entry_request_id_and_claw_backs()
    {
        var deal = await _server.NewDealAsync();
        var grant = await _server.GrantAsync(deal, 10_000);
        var request = deal.DeductRequest(grant.GrantId, 3_000, "LOOKUP-" + Ids.New()[..8], _server.Today());
        var made = await _server.Ledger.DeductAsync(request);

        var byId = await _server.Ledger.GetDeductionAsync(new GetDeductionRequest { DeductionId = made.DeductionId });
        Assert.Equal(made.DeductionId, byId.DeductionId);
        Assert.Equal(grant.GrantId, byId.GrantId);
        Assert.Equal((deal.Provider, deal.Unit, 2026), (byId.ProviderUscc, byId.UnitUscc, byId.Year));
        Assert.Equal((request.InvoiceNo, 3_000L, request.InvoiceDate), (byId.InvoiceNo, byId.InvoiceAmountFen, byId.InvoiceDate));
        Assert.Equal((1_500L, 1_500L), (byId.RequestedFen, byId.AppliedFen));
        Assert.Equal(_server.Clock.GetUtcNow(), byId.CreatedAt.ToDateTimeOffset());
        Assert.Equal(made.Receipt.EntryId, byId.EntryId);
        Assert.Equal(request.RequestId, byId.RequestId);
        Assert.Equal(0, byId.ClawedBackFen);
        var byInvoice = await _server.Ledger.GetDeductionAsync(new GetDeductionRequest { ProviderUscc = deal.Provider, InvoiceNo = request.InvoiceNo });
        Assert.Equal(byId, byInvoice);

        // A claw-back is a new entry: the deduction reads as it was applied, with what was clawed back from it.
        await _server.Redemption.ClawBackAsync(new ClawBackRequest
        {
            RequestId = Ids.New(), DeductionId = made.DeductionId, AmountFen = 400, Reason = "invoice not paid", Standing = Standing.Good,
        });
        var clawed = await _server.Ledger.GetDeductionAsync(new GetDeductionRequest { DeductionId = made.DeductionId });
        Assert.Equal(400, clawed.ClawedBackFen);
        Assert.Equal(1_500, clawed.AppliedFen);
    }

    [Fact]
    public async Task GetDeduction_refuses_no_key_both_keys_and_bad_keys_and_answers_UNKNOWN_DEDUCTION_for_none()
    {
        var deal = await _server.NewDealAsync();
        var grant = await _server.GrantAsync(deal, 10_000);
        var invoice = "KEYS-" + Ids.New()[..8];
        var made = await _server.DeductAsync(deal, grant.GrantId, 1_000, invoice);
        var otherProvider = await _server.NewProviderAsync();
        Task Get(GetDeductionRequest request) => _server.Ledger.GetDeductionAsync(request).ResponseAsync;

        await Refusal.AssertAsync(() => Get(new GetDeductionRequest()), StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => Get(new GetDeductionRequest { DeductionId = made.DeductionId, ProviderUscc = deal.Provider, InvoiceNo = "X" }),
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => Get(new GetDeductionRequest { DeductionId = made.DeductionId, InvoiceNo = "X" }), StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => Get(new GetDeductionRequest { DeductionId = -1 }), StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => Get(new GetDeductionRequest { ProviderUscc = deal.Provider }), StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => Get(new GetDeductionRequest { InvoiceNo = "X" }), StatusCode.InvalidArgument, "INVALID_USCC");
        await Refusal.AssertAsync(() => Get(new GetDeductionRequest { ProviderUscc = TestUscc.WithBadCheck(deal.Provider), InvoiceNo = "X" }),
            StatusCode.InvalidArgument, "INVALID_USCC");

        await Refusal.AssertAsync(() => Get(new GetDeductionRequest { DeductionId = 987_654_321_987 }), StatusCode.NotFound, "UNKNOWN_DEDUCTION");
        await Refusal.AssertAsync(() => Get(new GetDeductionRequest { ProviderUscc = deal.Provider, InvoiceNo = "NEVER-" + Ids.New()[..8] }),
            StatusCode.NotFound, "UNKNOWN_DEDUCTION");
        // An invoice number is the provider's own: another provider's key finds nothing.
        await Refusal.AssertAsync(() => Get(new GetDeductionRequest { ProviderUscc = otherProvider, InvoiceNo = invoice }),
            StatusCode.NotFound, "UNKNOWN_DEDUCTION");
    }

    [Fact]
    public async Task A_grant_past_its_expiry_accepts_nothing_whatever_the_background_has_done()
    {
        var start = new DateTimeOffset(2026, 6, 10, 2, 0, 0, TimeSpan.Zero);
        await using var server = fixture.StartServer(start);
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);

        server.Clock.SetUtcNow(grant.ExpiresAt.ToDateTimeOffset().AddTicks(-10));
        await server.DeductAsync(deal, grant.GrantId, 1_000);

        server.Clock.SetUtcNow(grant.ExpiresAt.ToDateTimeOffset());
        await Refusal.AssertAsync(() => server.DeductAsync(deal, grant.GrantId, 1_000), StatusCode.FailedPrecondition, "GRANT_EXPIRED");

        var info = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(GrantStatus.Expired, info.Status);
        Assert.Equal(0, info.RemainingFen);
        Assert.Equal(9_500, info.ReturnedFen);

        // Expired quota stops counting toward the cap, even before it is swept back to the pool.
        var unitYear = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = 2026 });
        Assert.Equal(0, unitYear.GrantedOpenFen);
        Assert.Equal(500, unitYear.DeductedFen);
    }

    [Fact]
    public async Task Deduct_refuses_another_providers_grant_unknown_grants_and_bad_input_changing_nothing()
    {
        var deal = await _server.NewDealAsync();
        var grant = await _server.GrantAsync(deal, 10_000);
        var stranger = await _server.NewProviderAsync();

        await Refusal.AssertAsync(() => _server.DeductAsync(deal with { Provider = stranger }, grant.GrantId, 1_000),
            StatusCode.NotFound, "UNKNOWN_GRANT");
        await Refusal.AssertAsync(() => _server.DeductAsync(deal, 987_654_321, 1_000), StatusCode.NotFound, "UNKNOWN_GRANT");
        await Refusal.AssertAsync(() => _server.DeductAsync(deal, grant.GrantId, 0), StatusCode.InvalidArgument, "INVALID_AMOUNT");
        await Refusal.AssertAsync(() => _server.DeductAsync(deal, grant.GrantId, 1), StatusCode.InvalidArgument, "INVALID_AMOUNT");

        var badDate = deal.DeductRequest(grant.GrantId, 1_000);
        badDate.InvoiceDate = "2026-02-30";
        await Refusal.AssertAsync(() => _server.Ledger.DeductAsync(badDate).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        var future = deal.DeductRequest(grant.GrantId, 1_000);
        future.InvoiceDate = "2026-06-03";
        await Refusal.AssertAsync(() => _server.Ledger.DeductAsync(future).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        var noInvoice = deal.DeductRequest(grant.GrantId, 1_000);
        noInvoice.InvoiceNo = "";
        await Refusal.AssertAsync(() => _server.Ledger.DeductAsync(noInvoice).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");

        var info = await _server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(10_000, info.RemainingFen);
    }

    [Fact]
    public async Task Invoices_against_a_contract_never_exceed_its_amount()
    {
        var deal = await _server.NewDealAsync(contractAmountFen: 100_000);
        var grant = await _server.GrantAsync(deal, 50_000);
        await _server.DeductAsync(deal, grant.GrantId, 60_000);
        await Refusal.AssertAsync(() => _server.DeductAsync(deal, grant.GrantId, 40_001), StatusCode.FailedPrecondition, "INVOICE_EXCEEDS_CONTRACT");
        var last = await _server.DeductAsync(deal, grant.GrantId, 40_000);
        Assert.Equal(20_000, last.AppliedFen);

        var contract = await _server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = deal.Provider, ContractNo = deal.ContractNo });
        Assert.Equal(100_000, contract.InvoicedFen);
    }
}
