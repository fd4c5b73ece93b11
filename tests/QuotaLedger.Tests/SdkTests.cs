using Microsoft.Extensions.DependencyInjection;
using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>The client SDK against a real server and PostgreSQL.</summary>
[Collection(FeedTests.Collection)]
public sealed class SdkTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly DateOnly s_invoiceDate = new(2026, 6, 1);

    private static readonly UnitMaterial[] s_materials =
    [
        new(MaterialKind.ApplicationForm, "form.pdf"), new(MaterialKind.RegistrationCertificate, "licence.pdf"),
        new(MaterialKind.IntegrityPledge, "pledge.pdf"), new(MaterialKind.CreditReport, "credit.pdf"),
    ];

    private QuotaLedgerClient Client(LedgerServer server, Func<HttpMessageHandler, HttpMessageHandler>? wrap = null, Action<QuotaLedgerClientOptions>? configure = null)
    {
        var options = new QuotaLedgerClientOptions
        {
            Address = server.BaseAddress,
            HttpHandler = wrap is null ? server.CreateHandler() : wrap(server.CreateHandler()),
            Retry = { InitialBackoff = TimeSpan.FromMilliseconds(20), MaxBackoff = TimeSpan.FromMilliseconds(200) },
        };
        configure?.Invoke(options);
        return new QuotaLedgerClient(options);
    }

    [Fact]
    public async Task Every_method_works_end_to_end_with_dotnet_types()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2040, 3, 2, 2, 0, 0, TimeSpan.Zero));
        using var client = Client(server);
        string provider = TestUscc.New(), unit = TestUscc.New(), opc = TestUscc.New(), resident = TestUscc.New();

        var policy = await client.SetYearPolicyAsync(new YearPolicy(2040, 5_000, 3_000, 1_000, Fen.FromYuan(5_000_000), Fen.FromYuan(100), Fen.FromYuan(100_000_000), 1));
        Assert.Equal(policy, await client.GetYearPolicyAsync(2040));
        var funded = await client.FundBudgetAsync(2040, Fen.FromYuan(1_000_000));
        Assert.Equal(Fen.FromYuan(1_000_000), funded.Pool);

        Assert.Equal("SDK provider", (await client.RegisterProviderAsync(provider, "SDK provider", ["IDC-1"])).Name);
        Assert.Equal(provider, (await client.GetProviderAsync(provider)).Uscc);
        await client.RegisterUnitAsync(new UnitRegistration(unit, "SDK unit", UnitKind.Enterprise, Sme: true, ["form"], [.. s_materials, new(MaterialKind.SmeDeclaration, "sme.pdf")]));
        await client.RegisterUnitAsync(new UnitRegistration(opc, "SDK OPC community", UnitKind.OpcOperator, Materials: s_materials));
        await client.RegisterUnitAsync(new UnitRegistration(resident, "SDK resident", UnitKind.Enterprise, Materials: s_materials));
        var reviewed = await client.ReviewUnitAsync(provider, unit, approve: true);
        Assert.True(reviewed.Approved);
        await client.ReviewUnitAsync(provider, opc, approve: true);
        Assert.True((await client.GetUnitAsync(unit)).Sme);

        var terms = new ContractTerms("SDK-" + Ids.New()[..8], provider, unit, "Ascend 910B", true, ServiceMode.CloudInstance, new Fen(2_000), Fen.FromYuan(100_000), "training", false, new DateOnly(2040, 2, 1));
        var contract = await client.RegisterContractAsync(terms);
        Assert.Equal(terms, contract.Terms);
        Assert.Equal(contract, await client.GetContractAsync(provider, terms.ContractNo));

        var grant = await client.GrantAsync(provider, terms.ContractNo, Fen.FromYuan(10_000));
        Assert.Equal(6_000, grant.RatioBp);
        Assert.Equal(Fen.FromYuan(10_000), grant.UnitYear.GrantedOpen);
        var deduction = await client.DeductAsync(provider, grant.GrantId, "SDK-INV-" + Ids.New()[..8], Fen.FromYuan(1_000), new DateOnly(2040, 3, 1));
        Assert.Equal(Fen.FromYuan(600), deduction.Applied);
        var details = await client.GetGrantAsync(grant.GrantId);
        Assert.Equal(GrantStatus.Open, details.Status);
        Assert.Equal(Fen.FromYuan(9_400), details.Remaining);
        Assert.Equal(deduction.UnitYear, await client.GetUnitYearAsync(unit, 2040));

        var batch = await client.OpenBatchAsync(2040, server.Clock.GetUtcNow().AddDays(30));
        var evidence = Enum.GetValues<EvidenceKind>().Where(k => k != EvidenceKind.PlatformStatement)
            .Select(k => new EvidenceItem(k, $"doc-{k}", new string('a', 64))).ToList();
        var applied = await client.SubmitRedemptionAsync(batch.BatchId, unit, Fen.FromYuan(300), evidence);
        Assert.Contains(applied.Evidence, e => e.Kind == EvidenceKind.PlatformStatement);
        await client.ReviewRedemptionAsync(applied.RedemptionId, Fen.FromYuan(200), "Expert Li", "partly proven");
        var paid = await client.DisburseAsync(applied.RedemptionId, "PAY-2040-1");
        Assert.Equal(Fen.FromYuan(200), paid.Disbursed);
        Assert.Equal(RedemptionState.Disbursed, (await client.GetRedemptionAsync(applied.RedemptionId)).State);
        Assert.Single(await client.ListRedemptionsAsync(batchId: batch.BatchId).ToListAsync());
        Assert.Equal(Fen.FromYuan(200), (await client.GetUnitYearAsync(unit, 2040)).Redeemed);

        var entries = new List<JournalEntryInfo>();
        await foreach (var entry in client.ListEntriesAsync(new EntryFilter(GrantId: grant.GrantId)))
        {
            entries.Add(entry);
        }

        Assert.Equal([EntryKind.Grant, EntryKind.Deduction], entries.Select(e => e.Kind));
        Assert.All(entries, e => Assert.Equal(e.Postings.Sum(p => p.Debit.Value), e.Postings.Sum(p => p.Credit.Value)));

        var released = await client.ReleaseAsync(provider, grant.GrantId, "JS-SDK");
        Assert.Equal(Fen.FromYuan(9_400), released.Released);

        var opcContract = terms with { ContractNo = "SDK-OPC-" + Ids.New()[..8], UnitUscc = opc };
        await client.RegisterContractAsync(opcContract);
        var opcGrant = await client.GrantAsync(provider, opcContract.ContractNo, Fen.FromYuan(1_000));
        Assert.Equal([resident], await client.AddResidentOpcAsync(opc, resident));
        Assert.True((await client.ConfirmOpcOperatorAsync(opc, confirm: true, "community verified")).OpcConfirmed);
        Assert.Equal(ResidencyStatus.Confirmed, Assert.Single(await client.ConfirmResidentOpcAsync(opc, resident)).Status);
        await client.ReviewUnitAsync(provider, resident, approve: true);
        var gift = await client.GiftAsync(opc, opcGrant.GrantId, resident, Fen.FromYuan(400));
        Assert.Equal(opcGrant.GrantId, gift.Grant.GiftedFromGrantId);
        Assert.Equal(Fen.FromYuan(600), gift.SourceRemaining);

        await client.DeclareRelatedPartyAsync(provider, unit, "same parent company");
        var refused = await Assert.ThrowsAsync<QuotaLedgerException>(() => client.GrantAsync(provider, terms.ContractNo, Fen.FromYuan(1)));
        Assert.Equal(LedgerReason.RelatedParties, refused.Reason);

        var standing = await client.SetStandingAsync(resident, Standing.Suspended, "inspection");
        Assert.Equal(Standing.Good, standing.Previous);
        server.Clock.Advance(TimeSpan.FromDays(40));
        Assert.True((await client.ExpireDueGrantsAsync()).ExpiredGrants >= 2);
        var program = await client.GetProgramYearAsync(2040);
        Assert.Equal(program.Funded, program.Pool + program.GrantedOpen + program.Deducted + program.Receivable);
        var trial = await client.TrialBalanceAsync(2040);
        Assert.True(trial.Balanced && trial.BalancesMatchPostings);

        var clawed = await client.ClawBackAsync(ClawBackTarget.Disbursement, applied.RedemptionId, Fen.FromYuan(50), "forged invoice");
        Assert.Equal(Standing.Blacklisted, clawed.Standing);
        Assert.Equal(Fen.FromYuan(50), (await client.GetProgramYearAsync(2040)).Receivable);
        var verdict = await client.VerifyJournalAsync();
        Assert.True(verdict.Ok, verdict.Problem);
    }

    [Fact]
    public async Task A_deduction_whose_response_is_lost_is_retried_with_the_same_request_id_and_applied_once()
    {
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 10_000);
        var dropper = new DropResponses("/quotaledger.v1.LedgerService/Deduct");
        using var client = Client(fixture.Server, inner => { dropper.InnerHandler = inner; return dropper; });

        var result = await client.DeductAsync(deal.Provider, grant.GrantId, "LOST-" + Ids.New()[..8], new Fen(4_000), s_invoiceDate);

        Assert.Equal(2, dropper.Attempts);
        Assert.Equal(new Fen(2_000), result.Applied);
        Assert.Equal(new Fen(8_000), result.GrantRemaining);
        Assert.Equal(new Fen(8_000), (await client.GetGrantAsync(grant.GrantId)).Remaining);
    }

    [Fact]
    public async Task An_attempt_past_its_deadline_is_retried_and_applied_once()
    {
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 10_000);
        var slow = new DelayFirstRequest("/quotaledger.v1.LedgerService/Deduct", TimeSpan.FromSeconds(2));
        using var client = Client(fixture.Server, inner => { slow.InnerHandler = inner; return slow; },
            options => options.Retry.AttemptTimeout = TimeSpan.FromMilliseconds(500));

        var result = await client.DeductAsync(deal.Provider, grant.GrantId, "SLOW-" + Ids.New()[..8], new Fen(4_000), s_invoiceDate);

        Assert.True(slow.Attempts >= 2);
        Assert.Equal(new Fen(2_000), result.Applied);
        Assert.Equal(new Fen(8_000), (await client.GetGrantAsync(grant.GrantId)).Remaining);
    }

    [Fact]
    public async Task Rate_limited_calls_wait_for_the_servers_hint_and_business_refusals_are_never_retried()
    {
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: new Dictionary<string, string?>
        {
            ["RateLimits:PermitsPerSecond"] = "1",
            ["RateLimits:Burst"] = "5",
        });
        var counter = new CountRequests();
        // Enough attempts for the last of three refused calls, which gets the one permit of the third second.
        using var client = Client(server, inner => { counter.InnerHandler = inner; return counter; }, options => options.Retry.MaxAttempts = 10);

        // Eight at once against a burst of five: however slow the machine, they arrive before three more permits do.
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => client.GetYearPolicyAsync(2026)));

        Assert.True(counter.Requests > 8);

        // On a server with permits to spare (that one's may not have refilled yet), a refusal is one request.
        var plain = new CountRequests();
        using var unlimited = Client(fixture.Server, inner => { plain.InnerHandler = inner; return plain; });
        var refusal = await Assert.ThrowsAsync<QuotaLedgerException>(() => unlimited.GetGrantAsync(987_654_321));
        Assert.Equal(LedgerReason.UnknownGrant, refusal.Reason);
        Assert.Equal(Grpc.Core.StatusCode.NotFound, refusal.StatusCode);
        Assert.Contains("987654321", refusal.ServerMessage);
        Assert.Equal(1, plain.Requests);
    }

    [Fact]
    public async Task Refusals_surface_with_their_typed_reason()
    {
        using var client = Client(fixture.Server);
        var deal = await fixture.Server.NewDealAsync();
        var grant = await client.GrantAsync(deal.Provider, deal.ContractNo, new Fen(1_000));
        await client.DeductAsync(deal.Provider, grant.GrantId, "TYPED-1", new Fen(10_000), s_invoiceDate);

        async Task<LedgerReason> ReasonOf(Func<Task> call) => (await Assert.ThrowsAsync<QuotaLedgerException>(call)).Reason;

        Assert.Equal(LedgerReason.GrantEmpty, await ReasonOf(() => client.DeductAsync(deal.Provider, grant.GrantId, "TYPED-2", new Fen(10_000), s_invoiceDate)));
        Assert.Equal(LedgerReason.DuplicateInvoice, await ReasonOf(() => client.DeductAsync(deal.Provider, grant.GrantId, "TYPED-1", new Fen(10_000), s_invoiceDate)));
        Assert.Equal(LedgerReason.UnknownContract, await ReasonOf(() => client.GrantAsync(deal.Provider, "nope", new Fen(1))));
        Assert.Equal(LedgerReason.InvalidUscc, await ReasonOf(() => client.GetUnitAsync("not-a-uscc")));
        Assert.Equal(LedgerReason.InvalidAmount, await ReasonOf(() => client.GrantAsync(deal.Provider, deal.ContractNo, new Fen(-1))));
        Assert.Equal(LedgerReason.ContractQuotaExceeded, await ReasonOf(() => client.GrantAsync(deal.Provider, deal.ContractNo, Fen.FromYuan(10_000_000))));
        Assert.Equal(LedgerReason.AlreadyRegistered, await ReasonOf(() => client.RegisterProviderAsync(deal.Provider, "again", ["IDC-1"])));
        var stranger = await fixture.Server.NewUnitAsync();
        Assert.Equal(LedgerReason.NotTransferable, await ReasonOf(() => client.GiftAsync(deal.Unit, grant.GrantId, stranger, new Fen(1))));
        var id = QuotaLedgerClient.NewRequestId();
        await client.GrantAsync(deal.Provider, deal.ContractNo, new Fen(10), id);
        Assert.Equal(LedgerReason.RequestIdReused, await ReasonOf(() => client.GrantAsync(deal.Provider, deal.ContractNo, new Fen(11), id)));
    }

    [Fact]
    public async Task AddQuotaLedgerClient_registers_one_client_from_a_plain_ServiceCollection()
    {
        using var provider = new ServiceCollection()
            .AddQuotaLedgerClient(options =>
            {
                options.Address = fixture.Server.BaseAddress;
                options.HttpHandler = fixture.Server.CreateHandler();
                options.DefaultDeadline = TimeSpan.FromSeconds(20);
            })
            .Services.BuildServiceProvider();

        var client = provider.GetRequiredService<QuotaLedgerClient>();
        Assert.Same(client, provider.GetRequiredService<QuotaLedgerClient>());
        Assert.Equal(5_000, (await client.GetYearPolicyAsync(2026)).SelfControllableRatioBp);
    }

    [Fact]
    public async Task A_refused_duplicate_invoice_names_the_deduction_that_took_it_which_reads_by_id_or_by_invoice()
    {
        using var client = Client(fixture.Server);
        var deal = await fixture.Server.NewDealAsync();
        var grant = await client.GrantAsync(deal.Provider, deal.ContractNo, new Fen(10_000));
        var invoice = "TRACE-" + Ids.New()[..8];
        var first = await client.DeductAsync(deal.Provider, grant.GrantId, invoice, new Fen(4_000), s_invoiceDate, "trace-first");

        var duplicate = await Assert.ThrowsAsync<QuotaLedgerException>(() => client.DeductAsync(deal.Provider, grant.GrantId, invoice, new Fen(4_000), s_invoiceDate));

        Assert.Equal(LedgerReason.DuplicateInvoice, duplicate.Reason);
        Assert.Equal(first.DeductionId, duplicate.ExistingDeductionId);
        Assert.Equal(grant.GrantId.ToString(System.Globalization.CultureInfo.InvariantCulture), duplicate.Metadata["grantId"]);
        var byId = await client.GetDeductionAsync(duplicate.ExistingDeductionId!.Value);
        Assert.Equal(byId, await client.GetDeductionByInvoiceAsync(deal.Provider, invoice));
        Assert.Equal((invoice, new Fen(4_000), first.Applied, "trace-first", first.Receipt!.EntryId), (byId.InvoiceNo, byId.InvoiceAmount, byId.Applied, byId.RequestId, byId.EntryId));
        Assert.Equal(LedgerReason.UnknownDeduction, (await Assert.ThrowsAsync<QuotaLedgerException>(() => client.GetDeductionByInvoiceAsync(deal.Provider, "NO-SUCH-INVOICE"))).Reason);
    }

    [Fact]
    public async Task Redemptions_and_journal_entries_come_in_pages_each_once_in_order()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2043, 4, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2043, capFen: 1_000_000, totalFen: 10_000_000, fundFen: 100_000);
        using var client = Client(server);
        var deal = await server.NewDealAsync(contractAmountFen: 1_000_000);
        var grant = await client.GrantAsync(deal.Provider, deal.ContractNo, new Fen(20_000));
        for (var i = 0; i < 4; i++)
        {
            await client.DeductAsync(deal.Provider, grant.GrantId, $"PAGE-{i}-" + Ids.New()[..8], new Fen(5_000), new DateOnly(2043, 3, 31));
        }

        var batch = await client.OpenBatchAsync(2043, server.Clock.GetUtcNow().AddDays(10));
        var evidence = Enum.GetValues<EvidenceKind>().Where(k => k != EvidenceKind.PlatformStatement).Select(k => new EvidenceItem(k, $"doc-{k}", new string('b', 64))).ToList();
        var submitted = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            submitted.Add((await client.SubmitRedemptionAsync(batch.BatchId, deal.Unit, new Fen(1_000), evidence)).RedemptionId);
        }

        Assert.Equal(submitted, await client.ListRedemptionsAsync(unitUscc: deal.Unit, pageSize: 2).Select(r => r.RedemptionId).ToListAsync());
        var first = await client.ListRedemptionsPageAsync(unitUscc: deal.Unit, pageSize: 3);
        Assert.Equal(submitted[..3], first.Items.Select(r => r.RedemptionId));
        var last = await client.ListRedemptionsPageAsync(unitUscc: deal.Unit, pageSize: 3, pageToken: first.NextPageToken);
        Assert.Equal(submitted[3..], last.Items.Select(r => r.RedemptionId));
        Assert.Null(last.NextPageToken);

        var all = await client.ListEntriesAsync(new EntryFilter(GrantId: grant.GrantId)).Select(e => e.EntryId).ToListAsync();
        Assert.Equal(5, all.Count);
        var read = new List<long>();
        long? cursor = null;
        while (true)
        {
            var page = await client.ListEntriesAsync(new EntryFilter(GrantId: grant.GrantId, AfterEntryId: cursor, PageSize: 2)).Select(e => e.EntryId).ToListAsync();
            read.AddRange(page);
            if (page.Count < 2)
            {
                break;
            }

            cursor = page[^1];
        }

        Assert.Equal(all, read);
        Assert.Throws<ArgumentOutOfRangeException>(() => client.ListEntriesAsync(new EntryFilter(PageSize: 0)).GetAsyncEnumerator().MoveNextAsync().AsTask().GetAwaiter().GetResult());
    }

    [Fact]
    public async Task A_dry_run_predicts_the_call_and_reads_as_of_show_the_ledger_as_it_stood()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2077, 3, 2, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2077, capFen: 1_000_000, totalFen: 10_000_000, fundFen: 100_000);
        using var client = Client(server);
        var deal = await server.NewDealAsync(contractAmountFen: 1_000_000);

        var grantPlan = await client.ExplainGrantAsync(deal.Provider, deal.ContractNo, new Fen(20_000));
        Assert.True(grantPlan.WouldApply);
        Assert.Equal((new Fen(20_000), new Fen(100_000)), (grantPlan.Applied, grantPlan.Pool));
        Assert.Equal(LedgerReason.BudgetExhausted, (await client.ExplainGrantAsync(deal.Provider, deal.ContractNo, new Fen(100_001))).Reason);
        var grant = await client.GrantAsync(deal.Provider, deal.ContractNo, new Fen(20_000));
        Assert.Equal(grantPlan.ExpiresAt, grant.ExpiresAt);
        var afterGrant = server.Clock.GetUtcNow();
        var figuresAfterGrant = await client.GetUnitYearAsync(deal.Unit, 2077);

        server.Clock.Advance(TimeSpan.FromDays(1));
        var plan = await client.ExplainDeductAsync(deal.Provider, grant.GrantId, "DRY-1", new Fen(10_000), new DateOnly(2077, 3, 2));
        Assert.True(plan.WouldApply);
        Assert.Equal(new Fen(20_000), plan.GrantBalance);
        var done = await client.DeductAsync(deal.Provider, grant.GrantId, "DRY-1", new Fen(10_000), new DateOnly(2077, 3, 2));
        Assert.Equal((plan.Requested, plan.Applied), (done.Requested, done.Applied));
        var duplicate = await client.ExplainDeductAsync(deal.Provider, grant.GrantId, "DRY-1", new Fen(10_000), new DateOnly(2077, 3, 2));
        Assert.Equal((false, LedgerReason.DuplicateInvoice), (duplicate.WouldApply, duplicate.Reason));

        Assert.Equal(figuresAfterGrant, await client.GetUnitYearAsync(deal.Unit, 2077, afterGrant));
        Assert.Equal(new Fen(20_000), (await client.GetGrantAsync(grant.GrantId, afterGrant)).Remaining);
        Assert.Equal(new Fen(20_000) - done.Applied, (await client.GetGrantAsync(grant.GrantId)).Remaining);
        Assert.Equal(Fen.Zero, (await client.GetProgramYearAsync(2077, afterGrant)).Deducted);
        Assert.Equal(LedgerReason.InvalidArgument,
            (await Assert.ThrowsAsync<QuotaLedgerException>(() => client.GetUnitYearAsync(deal.Unit, 2077, server.Clock.GetUtcNow().AddDays(1)))).Reason);
    }

    [Fact]
    public async Task Alerts_fire_with_the_grant_that_crosses_a_threshold_and_list_through_the_sdk()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2089, 3, 2, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2089, capFen: 10_000, totalFen: 10_000_000, fundFen: 1_000_000);
        using var client = Client(server);
        var defaults = await client.GetAlertRulesAsync(2089);
        Assert.True(defaults.Defaults);
        Assert.Equal([8_000, 9_000, 10_000], defaults.UnitYearCapBp);
        var deal = await server.NewDealAsync();

        var grant = await client.GrantAsync(deal.Provider, deal.ContractNo, new Fen(8_500));

        var alert = Assert.Single(await client.ListAlertsAsync(new AlertFilter(Year: 2089, UnitUscc: deal.Unit)).ToListAsync());
        Assert.Equal((AlertKind.UnitYearCap, 8_000, new Fen(8_500), new Fen(10_000)), (alert.Kind, alert.ThresholdBp, alert.Figure, alert.Base));
        Assert.Equal(grant.Receipt!.EntryId, alert.EntryId);
        await client.RunAlertPassAsync();
        Assert.Equal(new AlertPassResult(0, 0), await client.RunAlertPassAsync()); // each alert fires once, whoever runs the pass

        var rules = await client.SetAlertRulesAsync(defaults with { Year = 2089, UnitYearCapBp = [5_000, 9_500], Defaults = false });
        Assert.Equal([5_000, 9_500], rules.UnitYearCapBp);
        Assert.False((await client.GetAlertRulesAsync(2089)).Defaults);
    }

    [Fact]
    public void Fen_converts_yuan_exactly_or_not_at_all()
    {
        Assert.Equal(new Fen(123_456), Fen.FromYuan(1_234.56m));
        Assert.Equal("1234.56 yuan", new Fen(123_456).ToString());
        Assert.Throws<ArgumentException>(() => Fen.FromYuan(0.001m));
    }

    /// <summary>Holds the first request of one method back longer than the client's attempt deadline.</summary>
    private sealed class DelayFirstRequest(string path, TimeSpan delay) : DelegatingHandler
    {
        public int Attempts { get; private set; }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (request.RequestUri!.AbsolutePath == path && ++Attempts == 1)
            {
                await Task.Delay(delay, CancellationToken.None);
            }

            return await base.SendAsync(request, cancellationToken);
        }
    }

    [Fact]
    public async Task WatchAsync_resumes_after_broken_streams_and_hands_over_every_entry_once_in_commit_order()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000_000);
        for (var i = 0; i < 12; i++)
        {
            await server.DeductAsync(deal, grant.GrantId, 200);
        }

        // The first three streams break after 900 bytes each, somewhere inside an entry.
        var breaking = new BreakStreams("/quotaledger.v1.LedgerService/Watch", breaks: 3, afterBytes: 900);
        using var client = Client(server, handler => { breaking.InnerHandler = handler; return breaking; });
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var watched = new List<LedgerEvent>();
        await foreach (var e in client.WatchAsync(new WatchFilter(UnitUscc: deal.Unit), cancellationToken: patience.Token))
        {
            watched.Add(e);
            if (watched.Count(w => w.Entry is not null) == 13)
            {
                break;
            }
        }

        Assert.True(breaking.Responses > 3, $"the watch reconnected ({breaking.Responses} responses)");
        var journal = await client.ListEntriesAsync(new EntryFilter(UnitUscc: deal.Unit, CommitOrder: true), patience.Token).ToListAsync(patience.Token);
        Assert.Equal(journal.Select(e => e.Cursor), watched.Where(e => e.Entry is not null).Select(e => e.Cursor));
        Assert.Equal(journal.Select(e => e.EntryId), watched.Where(e => e.Entry is not null).Select(e => e.Entry!.EntryId));
        Assert.All(watched, e => Assert.Equal(e.Cursor, e.Entry?.Cursor ?? e.Cursor));

        // Resuming from a stored cursor: what comes after it, nothing before.
        var next = await server.DeductAsync(deal, grant.GrantId, 200);
        await foreach (var e in client.WatchAsync(new WatchFilter(UnitUscc: deal.Unit), afterCursor: watched[^1].Cursor, cancellationToken: patience.Token))
        {
            Assert.Equal(next.Receipt.EntryId, e.Entry?.EntryId);
            break;
        }

        // ListEntriesAsync by cursor resumes by cursor too: a page from the middle.
        var rest = await client.ListEntriesAsync(new EntryFilter(UnitUscc: deal.Unit, AfterCursor: journal[5].Cursor), patience.Token).ToListAsync(patience.Token);
        Assert.Equal(journal.Skip(6).Select(e => e.EntryId).Append(next.Receipt.EntryId), rest.Select(e => e.EntryId));
    }

    [Fact]
    public async Task A_watch_from_now_that_breaks_before_its_first_event_resumes_from_where_it_started_and_misses_nothing()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000_000);

        // The first stream delivers its headers (the starting cursor), then breaks only after a deduction committed.
        var committed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var breaking = new BreakStreams("/quotaledger.v1.LedgerService/Watch", breaks: 1, afterBytes: 0, hold: committed.Task);
        using var client = Client(server, handler => { breaking.InnerHandler = handler; return breaking; });
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var watch = client.WatchAsync(new WatchFilter(UnitUscc: deal.Unit), fromNow: true, cancellationToken: patience.Token)
            .GetAsyncEnumerator(patience.Token);
        var first = watch.MoveNextAsync().AsTask();
        while (breaking.Responses == 0)
        {
            await Task.Delay(10, patience.Token);
        }

        var deduction = await server.DeductAsync(deal, grant.GrantId, 200);
        committed.SetResult();

        Assert.True(await first);
        Assert.Equal(deduction.Receipt.EntryId, watch.Current.Entry?.EntryId);
        Assert.Equal(2, breaking.Responses);
    }
}
