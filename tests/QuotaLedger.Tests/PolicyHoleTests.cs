using Grpc.Core;
using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The holes an audit found against POLICY.md: quota never reaches or leaves a unit where the measures forbid
/// it, on any path, and a legitimate call never fails.</summary>
public sealed class PolicyHoleTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private readonly LedgerServer _server = fixture.Server;

    [Fact]
    public async Task A_gifted_grant_is_a_grant_to_claw_back_to_read_and_to_count()
    {
        var provider = await _server.NewProviderAsync();
        var opc = await _server.NewConfirmedOperatorAsync(provider);
        var resident = await _server.NewConfirmedResidentAsync(provider, opc);
        var deal = new Deal(provider, opc, await _server.NewContractAsync(provider, opc));
        var source = await _server.GrantAsync(deal, 30_000);
        var gift = await _server.Ledger.GiftAsync(new GiftRequest
        {
            RequestId = Ids.New(), OperatorUscc = opc, GrantId = source.GrantId, ResidentUscc = resident, AmountFen = 12_000,
        });
        var before = await ProgramYearAsync(_server, 2026);

        var back = await _server.Redemption.ClawBackAsync(new ClawBackRequest
        {
            RequestId = Ids.New(), GrantId = gift.Grant.GrantId, AmountFen = 5_000, Reason = "residency was invented",
        });

        // The claw-back reverses the entry that made the gifted grant: the operator's gift.
        var residentStatement = await Statement.ReadAsync(_server, new ListEntriesRequest { UnitUscc = resident });
        Assert.Equal([EntryKind.Gift, EntryKind.ClawBack], residentStatement.Select(e => e.Kind));
        Assert.Equal(residentStatement[0].EntryId, back.OriginalEntryId);
        Assert.Equal(source.GrantId, residentStatement[0].GrantId);
        Assert.Equal(gift.Grant.GrantId, residentStatement[0].CounterpartyGrantId);
        Assert.Equal(resident, back.PartyUscc);
        var grantStatement = await Statement.ReadAsync(_server, new ListEntriesRequest { GrantId = gift.Grant.GrantId });
        Assert.Equal([EntryKind.Gift, EntryKind.ClawBack], grantStatement.Select(e => e.Kind));

        var info = await _server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = gift.Grant.GrantId });
        Assert.Equal((7_000L, 5_000L, 0L), (info.RemainingFen, info.ClawedBackFen, info.ReturnedFen));
        var contract = await _server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = provider, ContractNo = deal.ContractNo });
        Assert.Equal(25_000, contract.GrantedFen);
        var after = await ProgramYearAsync(_server, 2026);
        Assert.Equal(before.PoolFen + 5_000, after.PoolFen);
        Assert.Equal(before.GrantedOpenFen - 5_000, after.GrantedOpenFen);
        Assert.Equal(before.ClawedBackFen + 5_000, after.ClawedBackFen);
        Assert.Equal(before.ReclaimedFen, after.ReclaimedFen);
        await Books.AssertHoldAsync(_server);
    }

    [Fact]
    public async Task Expiry_takes_effect_at_expires_at_for_the_contracts_quota_the_pool_and_the_programme_figures()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2044, 3, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2044, capFen: 1_000_000, totalFen: 100_000, fundFen: 100_000);
        var full = await server.NewDealAsync(contractAmountFen: 100_000);      // quota 50,000 at 50%
        var roomy = await server.NewDealAsync(contractAmountFen: 1_000_000);
        var first = await server.GrantAsync(full, 50_000);
        await server.GrantAsync(roomy, 50_000);
        await Refusal.AssertAsync(() => server.GrantAsync(full, 1), StatusCode.FailedPrecondition, "CONTRACT_QUOTA_EXCEEDED");
        await Refusal.AssertAsync(() => server.GrantAsync(roomy, 1), StatusCode.FailedPrecondition, "BUDGET_EXHAUSTED");

        // Both grants expire; no expiry pass runs.
        server.Clock.Advance(TimeSpan.FromDays(31));
        var contract = await server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = full.Provider, ContractNo = full.ContractNo });
        Assert.Equal(0, contract.GrantedFen);
        var program = await ProgramYearAsync(server, 2044);
        Assert.Equal((100_000L, 0L, 100_000L), (program.PoolFen, program.GrantedOpenFen, program.ReclaimedFen));
        var info = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = first.GrantId });
        Assert.Equal((GrantStatus.Expired, 0L, 50_000L), (info.Status, info.RemainingFen, info.ReturnedFen));

        // New grants see the quota and the pool free again, whether or not the pass has run: first on a contract that
        // held none of the expired quota (the pool alone must count it), then on the full one (its quota must).
        var fresh = await server.NewDealAsync(contractAmountFen: 1_000_000);
        await server.GrantAsync(fresh, 60_000);
        await server.GrantAsync(full, 40_000);
        program = await ProgramYearAsync(server, 2044);
        Assert.Equal((0L, 100_000L, 100_000L), (program.PoolFen, program.GrantedOpenFen, program.ReclaimedFen));
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task A_gift_needs_the_residents_approval_by_the_grants_provider_and_deductions_need_it_still()
    {
        var provider = await _server.NewProviderAsync();
        var opc = await _server.NewConfirmedOperatorAsync(provider);
        var resident = await _server.NewUnitAsync();
        await _server.Registry.AddResidentOpcAsync(new AddResidentOpcRequest { RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = resident });
        await _server.Registry.ConfirmResidentOpcAsync(new ConfirmResidentOpcRequest
        {
            RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = resident, Confirm = true, Reason = "lease seen",
        });
        var deal = new Deal(provider, opc, await _server.NewContractAsync(provider, opc));
        var source = await _server.GrantAsync(deal, 20_000);

        await Refusal.AssertAsync(() => Gift(opc, source.GrantId, resident, 5_000), StatusCode.FailedPrecondition, "UNIT_NOT_APPROVED");
        await _server.ApproveAsync(provider, resident);
        var gift = await Gift(opc, source.GrantId, resident, 5_000);
        await _server.DeductAsync(deal, gift.Grant.GrantId, 2_000);

        // Approval withdrawn: quota no longer leaves the resident, nor the operator.
        await _server.ApproveAsync(provider, resident, approve: false);
        await Refusal.AssertAsync(() => _server.DeductAsync(deal, gift.Grant.GrantId, 2_000), StatusCode.FailedPrecondition, "UNIT_NOT_APPROVED");
        await _server.ApproveAsync(provider, resident);
        await _server.ApproveAsync(provider, opc, approve: false);
        await Refusal.AssertAsync(() => Gift(opc, source.GrantId, resident, 1_000), StatusCode.FailedPrecondition, "UNIT_NOT_APPROVED");
        await Books.AssertHoldAsync(_server);
    }

    [Fact]
    public async Task The_related_party_ban_holds_on_both_deduction_paths_on_gifts_and_for_one_uscc_on_both_sides()
    {
        var deal = await _server.NewDealAsync();
        var grant = await _server.GrantAsync(deal, 10_000);
        var declared = await _server.Registry.DeclareRelatedPartyAsync(Related(deal.Provider, deal.Unit));
        Assert.True(declared.Related);
        await Refusal.AssertAsync(() => _server.DeductAsync(deal, grant.GrantId, 1_000), StatusCode.FailedPrecondition, "RELATED_PARTIES");
        await using (var plain = fixture.StartServer(LedgerFixture.Now, settings: new Dictionary<string, string?> { ["Deductions:Coalesce"] = "false" }))
        {
            await Refusal.AssertAsync(() => plain.DeductAsync(deal, grant.GrantId, 1_000), StatusCode.FailedPrecondition, "RELATED_PARTIES");
        }

        // Only the bureau ends a relation, with a new row: the declaration stays on record.
        var ended = await _server.Registry.EndRelatedPartyAsync(new EndRelatedPartyRequest
        {
            RequestId = Ids.New(), ProviderUscc = deal.Provider, UnitUscc = deal.Unit, Reason = "shareholding sold",
        });
        Assert.False(ended.Related);
        await _server.DeductAsync(deal, grant.GrantId, 1_000);
        Assert.Equal([true, false], await RelationHistoryAsync(deal.Provider, deal.Unit));

        // A gift: the provider must not be related to the resident, nor to the operator.
        var opc = await _server.NewConfirmedOperatorAsync(deal.Provider);
        var resident = await _server.NewConfirmedResidentAsync(deal.Provider, opc);
        var source = await _server.GrantAsync(new Deal(deal.Provider, opc, await _server.NewContractAsync(deal.Provider, opc)), 10_000);
        await _server.Registry.DeclareRelatedPartyAsync(Related(deal.Provider, resident));
        await Refusal.AssertAsync(() => Gift(opc, source.GrantId, resident, 1_000), StatusCode.FailedPrecondition, "RELATED_PARTIES");
        await _server.Registry.EndRelatedPartyAsync(new EndRelatedPartyRequest { RequestId = Ids.New(), ProviderUscc = deal.Provider, UnitUscc = resident, Reason = "cleared" });
        await _server.Registry.DeclareRelatedPartyAsync(Related(deal.Provider, opc));
        await Refusal.AssertAsync(() => Gift(opc, source.GrantId, resident, 1_000), StatusCode.FailedPrecondition, "RELATED_PARTIES");

        // One USCC registered both as provider and as unit is its own related party.
        var both = await _server.NewProviderAsync();
        await _server.Registry.RegisterUnitAsync(new RegisterUnitRequest
        {
            RequestId = Ids.New(), UnitUscc = both, Name = "Provider that also buys", Kind = UnitKind.Enterprise, Materials = { Scenario.Materials() },
        });
        await Refusal.AssertAsync(() => _server.ApproveAsync(both, both), StatusCode.FailedPrecondition, "RELATED_PARTIES");
        await Refusal.AssertAsync(() => _server.NewContractAsync(both, both), StatusCode.FailedPrecondition, "RELATED_PARTIES");
        await Refusal.AssertAsync(() => _server.NewContractAsync(deal.Provider, opc), StatusCode.FailedPrecondition, "RELATED_PARTIES");

        // A contract with itself from before the check (an older database) gets no quota either.
        var selfContract = "SELF-" + Ids.New()[..8];
        await ExecuteAsync(
            """
            INSERT INTO unit_reviews (provider_uscc, unit_uscc, approved, reason, reviewed_at) VALUES ($1, $1, true, 'old', now());
            INSERT INTO contracts (contract_no, provider_uscc, unit_uscc, accelerator, self_controllable, service_mode, unit_price_fen, amount_fen,
                                   purpose, uses_innovation_voucher, signed_on, granted_fen, invoiced_fen, registered_at)
            VALUES ($2, $1, $1, 'H100', false, 1, 100, 1000000, 'old', false, '2026-01-01', 0, 0, now());
            """,
            both, selfContract);
        await Refusal.AssertAsync(() => _server.GrantAsync(new Deal(both, both, selfContract), 1_000), StatusCode.FailedPrecondition, "RELATED_PARTIES");
        await Books.AssertHoldAsync(_server);
    }

    [Fact]
    public async Task Standing_is_checked_at_every_step_of_redemption_and_claw_back_reaches_applications_at_every_stage()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2045, 4, 1, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2045, capFen: 1_000_000, totalFen: 1_000_000, fundFen: 100_000);
        var deal = await server.NewDealAsync(contractAmountFen: 1_000_000);
        var grant = await server.GrantAsync(deal, 20_000);
        await server.DeductAsync(deal, grant.GrantId, 20_000);   // 10,000 deducted
        var batch = await server.Redemption.OpenBatchAsync(new OpenBatchRequest
        {
            RequestId = Ids.New(), Year = 2045, ClosesAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(server.Clock.GetUtcNow().AddDays(30)),
        });
        var application = await server.Redemption.SubmitAsync(Submit(batch.BatchId, deal.Unit, 6_000));

        // Blacklisted after applying: neither reviewed nor paid.
        await SetStandingAsync(server, deal.Unit, Standing.Blacklisted);
        await Refusal.AssertAsync(() => Review(server, application.RedemptionId, 4_000), StatusCode.FailedPrecondition, "PARTY_SUSPENDED");
        await SetStandingAsync(server, deal.Unit, Standing.Good);

        // Under review: the pending amount returns to the pool.
        await ClawBackAsync(server, application.RedemptionId, 1_000);
        await ExpectAsync(server, deal.Unit, pool: 81_000, deducted: 9_000, redeemed: 0, receivable: 0, clawedBack: 1_000);
        await SetStandingAsync(server, deal.Unit, Standing.Good);
        await Refusal.AssertAsync(() => Review(server, application.RedemptionId, 5_001), StatusCode.InvalidArgument, "INVALID_AMOUNT");
        var reviewed = await Review(server, application.RedemptionId, 4_000);
        Assert.Equal((4_000L, 4_000L), (reviewed.ApprovedFen, reviewed.OutstandingFen));

        // Approved, not paid: the approved amount returns to the pool; the claw-back blacklists, so nothing is paid.
        await ClawBackAsync(server, application.RedemptionId, 1_500);
        await ExpectAsync(server, deal.Unit, pool: 82_500, deducted: 7_500, redeemed: 2_500, receivable: 0, clawedBack: 2_500);
        await Refusal.AssertAsync(() => Disburse(server, application.RedemptionId), StatusCode.FailedPrecondition, "PARTY_SUSPENDED");
        await SetStandingAsync(server, deal.Unit, Standing.Good);
        var paid = await Disburse(server, application.RedemptionId);
        Assert.Equal((2_500L, 2_500L), (paid.DisbursedFen, paid.OutstandingFen));
        await Refusal.AssertAsync(() => Disburse(server, application.RedemptionId), StatusCode.FailedPrecondition, "ALREADY_DECIDED");

        // Paid: the payment becomes a receivable, never more than was paid.
        await Refusal.AssertAsync(() => ClawBackAsync(server, application.RedemptionId, 2_501), StatusCode.InvalidArgument, "INVALID_AMOUNT");
        await ClawBackAsync(server, application.RedemptionId, 500);
        await ExpectAsync(server, deal.Unit, pool: 82_500, deducted: 7_000, redeemed: 2_000, receivable: 500, clawedBack: 3_000);
        var final = await server.Redemption.GetRedemptionAsync(new GetRedemptionRequest { RedemptionId = application.RedemptionId });
        Assert.Equal((6_000L, 4_000L, 2_500L, 3_000L, 2_000L),
            (final.RequestedFen, final.ApprovedFen, final.DisbursedFen, final.ClawedBackFen, final.OutstandingFen));

        // A second application by a blacklisted unit is refused too.
        await Refusal.AssertAsync(() => server.Redemption.SubmitAsync(Submit(batch.BatchId, deal.Unit, 100)).ResponseAsync,
            StatusCode.FailedPrecondition, "PARTY_SUSPENDED");
        var kinds = (await Statement.ReadAsync(server, new ListEntriesRequest { UnitUscc = deal.Unit, Year = 2045 })).Select(e => e.Kind).ToList();
        Assert.Equal(3, kinds.Count(k => k == EntryKind.ClawBack));
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task A_claw_back_is_never_overwritten_by_a_later_release_or_expiry()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2046, 5, 4, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2046, capFen: 1_000_000, totalFen: 1_000_000, fundFen: 100_000);
        var deal = await server.NewDealAsync();
        var released = await server.GrantAsync(deal, 10_000);
        var expired = await server.GrantAsync(deal, 10_000);
        await server.Redemption.ClawBackAsync(new ClawBackRequest { RequestId = Ids.New(), GrantId = released.GrantId, AmountFen = 3_000, Reason = "r", Standing = Standing.Good });
        await server.Redemption.ClawBackAsync(new ClawBackRequest { RequestId = Ids.New(), GrantId = expired.GrantId, AmountFen = 2_000, Reason = "r", Standing = Standing.Good });

        var release = await server.Ledger.ReleaseAsync(new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = deal.Provider, GrantId = released.GrantId, StatementRef = "JS-1" });
        Assert.Equal(7_000, release.ReleasedFen);
        server.Clock.Advance(TimeSpan.FromDays(32));
        await ExpectGrantAsync(server, released.GrantId, returned: 7_000, clawedBack: 3_000);
        await ExpectGrantAsync(server, expired.GrantId, returned: 8_000, clawedBack: 2_000);
        var program = await ProgramYearAsync(server, 2046);
        Assert.Equal((15_000L, 5_000L), (program.ReclaimedFen, program.ClawedBackFen));

        await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        await ExpectGrantAsync(server, expired.GrantId, returned: 8_000, clawedBack: 2_000);
        Assert.Equal(program, await ProgramYearAsync(server, 2046));
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task SME_is_for_enterprises_and_the_bureau_confirms_operators_and_each_residency()
    {
        var university = RegisterUnit(UnitKind.University, sme: true, Scenario.Materials(sme: true));
        await Refusal.AssertAsync(() => _server.Registry.RegisterUnitAsync(university).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        var undeclared = RegisterUnit(UnitKind.Enterprise, sme: true, Scenario.Materials());
        await Refusal.AssertAsync(() => _server.Registry.RegisterUnitAsync(undeclared).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        var sme = await _server.Registry.RegisterUnitAsync(RegisterUnit(UnitKind.Enterprise, sme: true, Scenario.Materials(sme: true)));
        Assert.True(sme.Sme);

        var provider = await _server.NewProviderAsync();
        var opc = await _server.NewUnitAsync(kind: UnitKind.OpcOperator);
        await _server.ApproveAsync(provider, opc);
        var resident = await _server.NewUnitAsync();
        await _server.ApproveAsync(provider, resident);
        var institute = await _server.NewUnitAsync(kind: UnitKind.ResearchInstitute);
        var source = await _server.GrantAsync(new Deal(provider, opc, await _server.NewContractAsync(provider, opc)), 20_000);

        await Refusal.AssertAsync(() => AddResident(opc, institute), StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        var declared = await AddResident(opc, resident);
        Assert.Equal([resident], declared.ResidentUsccs);
        Assert.Equal(ResidencyStatus.Declared, Assert.Single(declared.Residents).Status);
        var refused = await ConfirmResident(opc, resident, confirm: false);
        Assert.Empty(refused.ResidentUsccs);
        Assert.Equal(ResidencyStatus.Rejected, Assert.Single(refused.Residents).Status);
        await ConfirmResident(opc, resident, confirm: true);

        Assert.False((await _server.Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = opc })).OpcConfirmed);
        await Refusal.AssertAsync(() => Gift(opc, source.GrantId, resident, 1_000), StatusCode.FailedPrecondition, "NOT_TRANSFERABLE");
        var confirmed = await _server.Registry.ConfirmOpcOperatorAsync(new ConfirmOpcOperatorRequest { RequestId = Ids.New(), OperatorUscc = opc, Confirm = true, Reason = "verified" });
        Assert.True(confirmed.OpcConfirmed);
        await Gift(opc, source.GrantId, resident, 1_000);

        var removed = await _server.Registry.RemoveResidentOpcAsync(new RemoveResidentOpcRequest { RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = resident, Reason = "moved out" });
        Assert.Equal(ResidencyStatus.Ended, Assert.Single(removed.Residents).Status);
        await Refusal.AssertAsync(() => Gift(opc, source.GrantId, resident, 1_000), StatusCode.FailedPrecondition, "NOT_RESIDENT");
        await Refusal.AssertAsync(() => ConfirmResident(opc, resident, confirm: true), StatusCode.FailedPrecondition, "NOT_RESIDENT");
        await _server.Registry.ConfirmOpcOperatorAsync(new ConfirmOpcOperatorRequest { RequestId = Ids.New(), OperatorUscc = opc, Confirm = false, Reason = "community closed" });
        await AddResident(opc, resident);
        await ConfirmResident(opc, resident, confirm: true);
        await Refusal.AssertAsync(() => Gift(opc, source.GrantId, resident, 1_000), StatusCode.FailedPrecondition, "NOT_TRANSFERABLE");

        var unit = await _server.Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = opc });
        Assert.False(unit.OpcConfirmed);
        Assert.Equal(ResidencyStatus.Confirmed, Assert.Single(unit.Residents).Status);
        Assert.Equal(6, await CountAsync("SELECT count(*) FROM opc_residents WHERE operator_uscc = $1", opc));
        Assert.Equal(2, await CountAsync("SELECT count(*) FROM opc_operator_confirmations WHERE operator_uscc = $1", opc));
    }

    [Fact]
    public async Task Registration_refuses_a_provider_without_a_licence_a_unit_without_materials_and_a_contract_without_a_service_mode()
    {
        foreach (var licences in new[] { Array.Empty<string>(), ["B1-2026"], ["XYZ-1"], ["IDC-"] })
        {
            var request = new RegisterProviderRequest { RequestId = Ids.New(), ProviderUscc = TestUscc.New(), Name = "No licence", Licences = { licences } };
            await Refusal.AssertAsync(() => _server.Registry.RegisterProviderAsync(request).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        }

        var bare = RegisterUnit(UnitKind.Enterprise, sme: false, []);
        bare.MaterialRefs.Add("some-document");
        await Refusal.AssertAsync(() => _server.Registry.RegisterUnitAsync(bare).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        var partial = RegisterUnit(UnitKind.Enterprise, sme: false, Scenario.Materials().Skip(1));
        await Refusal.AssertAsync(() => _server.Registry.RegisterUnitAsync(partial).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        var unit = await _server.Registry.RegisterUnitAsync(RegisterUnit(UnitKind.University, sme: false, Scenario.Materials()));
        Assert.Equal(4, unit.Materials.Count);

        var provider = await _server.NewProviderAsync();
        var contract = new RegisterContractRequest
        {
            RequestId = Ids.New(), ContractNo = "NOMODE-" + Ids.New()[..8], ProviderUscc = provider, UnitUscc = unit.UnitUscc, Accelerator = "Ascend 910B",
            SelfControllable = true, UnitPriceFen = 2_000, AmountFen = 1_000_000, Purpose = "training", SignedOn = "2026-05-20",
        };
        await Refusal.AssertAsync(() => _server.Registry.RegisterContractAsync(contract).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        contract.ServiceMode = ServiceMode.DedicatedCluster;
        Assert.Equal(ServiceMode.DedicatedCluster, (await _server.Registry.RegisterContractAsync(contract)).ServiceMode);
    }

    [Fact]
    public async Task Nothing_is_granted_before_the_policy_takes_effect_and_no_invoice_dated_before_it_is_deducted()
    {
        Assert.Equal("2026-05-13", (await _server.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 })).EffectiveFrom);

        // 23:00 on 12 May in Chengdu.
        await using var server = fixture.StartServer(new DateTimeOffset(2026, 5, 12, 15, 0, 0, TimeSpan.Zero));
        var deal = await server.NewDealAsync();
        await Refusal.AssertAsync(() => server.GrantAsync(deal, 10_000), StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
        server.Clock.Advance(TimeSpan.FromHours(1));
        var grant = await server.GrantAsync(deal, 10_000);

        var early = deal.DeductRequest(grant.GrantId, 1_000, invoiceDate: "2026-05-12");
        await Refusal.AssertAsync(() => server.Ledger.DeductAsync(early).ResponseAsync, StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
        await using (var plain = fixture.StartServer(server.Clock.GetUtcNow(), settings: new Dictionary<string, string?> { ["Deductions:Coalesce"] = "false" }))
        {
            await Refusal.AssertAsync(() => plain.Ledger.DeductAsync(deal.DeductRequest(grant.GrantId, 1_000, invoiceDate: "2026-05-12")).ResponseAsync,
                StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
        }

        var onTheDay = await server.Ledger.DeductAsync(deal.DeductRequest(grant.GrantId, 1_000, invoiceDate: "2026-05-13"));
        Assert.Equal(500, onTheDay.AppliedFen);

        // The bureau sets a later year's date; a date outside the year is refused.
        var later = new SetYearPolicyRequest
        {
            RequestId = Ids.New(), Year = 2047, SelfControllableRatioBp = 5_000, OtherRatioBp = 3_000, SmeBonusBp = 1_000, UnitYearCapFen = 1_000,
            UnitYearFloorFen = 0, YearTotalFen = 1_000_000, ValidityMonths = 1, EffectiveFrom = "2046-12-31",
        };
        await Refusal.AssertAsync(() => server.Admin.SetYearPolicyAsync(later).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        later.RequestId = Ids.New();
        later.EffectiveFrom = "";
        Assert.Equal("2047-01-01", (await server.Admin.SetYearPolicyAsync(later)).EffectiveFrom);
        later.RequestId = Ids.New();
        later.EffectiveFrom = "2047-03-01";
        await server.Admin.SetYearPolicyAsync(later);

        // Changing another value keeps the date the bureau set; a year before the measures has no policy.
        later.RequestId = Ids.New();
        later.EffectiveFrom = "";
        later.UnitYearCapFen = 2_000;
        Assert.Equal("2047-03-01", (await server.Admin.SetYearPolicyAsync(later)).EffectiveFrom);
        later.RequestId = Ids.New();
        later.Year = 2025;
        await Refusal.AssertAsync(() => server.Admin.SetYearPolicyAsync(later).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task A_year_without_a_policy_answers_YEAR_NOT_OPEN_everywhere()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2048, 2, 1, 2, 0, 0, TimeSpan.Zero));
        var deal = await server.NewDealAsync();
        await Refusal.AssertAsync(() => server.GrantAsync(deal, 1_000), StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
        await Refusal.AssertAsync(() => server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2048, AmountFen = 1 }).ResponseAsync,
            StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
        await Refusal.AssertAsync(() => server.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2048 }).ResponseAsync,
            StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
        await Refusal.AssertAsync(() => server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2048 }).ResponseAsync,
            StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
        await Refusal.AssertAsync(() => server.Redemption.OpenBatchAsync(new OpenBatchRequest
        {
            RequestId = Ids.New(), Year = 2048, ClosesAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(server.Clock.GetUtcNow().AddDays(1)),
        }).ResponseAsync, StatusCode.FailedPrecondition, "YEAR_NOT_OPEN");
    }

    private static RegisterUnitRequest RegisterUnit(UnitKind kind, bool sme, IEnumerable<Material> materials) => new()
    {
        RequestId = Ids.New(), UnitUscc = TestUscc.New(), Name = $"A {kind}", Kind = kind, Sme = sme, Materials = { materials },
    };

    private static DeclareRelatedPartyRequest Related(string provider, string unit) =>
        new() { RequestId = Ids.New(), ProviderUscc = provider, UnitUscc = unit, Reason = "common controlling shareholder" };

    private Task<GiftResponse> Gift(string operatorUscc, long grantId, string resident, long amount) =>
        _server.Ledger.GiftAsync(new GiftRequest { RequestId = Ids.New(), OperatorUscc = operatorUscc, GrantId = grantId, ResidentUscc = resident, AmountFen = amount }).ResponseAsync;

    private Task<AddResidentOpcResponse> AddResident(string opc, string resident) =>
        _server.Registry.AddResidentOpcAsync(new AddResidentOpcRequest { RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = resident }).ResponseAsync;

    private Task<AddResidentOpcResponse> ConfirmResident(string opc, string resident, bool confirm) =>
        _server.Registry.ConfirmResidentOpcAsync(new ConfirmResidentOpcRequest
        {
            RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = resident, Confirm = confirm, Reason = confirm ? "lease seen" : "no lease",
        }).ResponseAsync;

    private static Task<ProgramYear> ProgramYearAsync(LedgerServer server, int year) =>
        server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = year }).ResponseAsync;

    private static async Task ExpectGrantAsync(LedgerServer server, long grantId, long returned, long clawedBack)
    {
        var info = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantId });
        Assert.Equal((returned, clawedBack, 0L), (info.ReturnedFen, info.ClawedBackFen, info.RemainingFen));
    }

    private static async Task ExpectAsync(LedgerServer server, string unit, long pool, long deducted, long redeemed, long receivable, long clawedBack)
    {
        var program = await ProgramYearAsync(server, 2045);
        Assert.Equal((pool, deducted, redeemed, receivable, clawedBack),
            (program.PoolFen, program.DeductedFen, program.RedeemedFen, program.ReceivableFen, program.ClawedBackFen));
        Assert.Equal(program.FundedFen, program.PoolFen + program.GrantedOpenFen + program.DeductedFen + program.ReceivableFen);
        var unitYear = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = unit, Year = 2045 });
        Assert.Equal((deducted, redeemed), (unitYear.DeductedFen, unitYear.RedeemedFen));
    }

    private static Task SetStandingAsync(LedgerServer server, string uscc, Standing standing) =>
        server.Admin.SetStandingAsync(new SetStandingRequest { RequestId = Ids.New(), Uscc = uscc, Standing = standing, Reason = "inspection" }).ResponseAsync;

    private static Task<ClawBackResponse> ClawBackAsync(LedgerServer server, long redemptionId, long amount) =>
        server.Redemption.ClawBackAsync(new ClawBackRequest { RequestId = Ids.New(), RedemptionId = redemptionId, AmountFen = amount, Reason = "forged usage log" }).ResponseAsync;

    private static Task<Redemption> Review(LedgerServer server, long redemptionId, long approved) =>
        server.Redemption.ReviewAsync(new ReviewRequest { RequestId = Ids.New(), RedemptionId = redemptionId, ApprovedFen = approved, Reviewer = "Expert Zhou", Reason = "partly proven" }).ResponseAsync;

    private static Task<Redemption> Disburse(LedgerServer server, long redemptionId) =>
        server.Redemption.DisburseAsync(new DisburseRequest { RequestId = Ids.New(), RedemptionId = redemptionId, PaymentRef = "PAY-" + Ids.New()[..8] }).ResponseAsync;

    private static SubmitRequest Submit(long batchId, string unit, long amount) => new()
    {
        RequestId = Ids.New(), BatchId = batchId, UnitUscc = unit, AmountFen = amount,
        Evidence =
        {
            new[] { EvidenceKind.ApplicationForm, EvidenceKind.Qualification, EvidenceKind.Contract, EvidenceKind.RdProof, EvidenceKind.Invoice, EvidenceKind.PaymentProof, EvidenceKind.UsageLog }
                .Select(k => new Evidence { Kind = k, Reference = $"doc-{k}", Sha256 = new string('b', 64) }),
        },
    };

    private async Task<List<bool>> RelationHistoryAsync(string provider, string unit)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT related FROM related_parties WHERE provider_uscc = $1 AND unit_uscc = $2 ORDER BY id", connection)
        {
            Parameters = { new() { Value = provider }, new() { Value = unit } },
        };
        var history = new List<bool>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            history.Add(reader.GetBoolean(0));
        }

        return history;
    }

    private async Task<long> CountAsync(string sql, string parameter)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection) { Parameters = { new() { Value = parameter } } };
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private async Task ExecuteAsync(string sql, params object[] parameters)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var batch = new NpgsqlBatch(connection);
        foreach (var statement in sql.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var command = new NpgsqlBatchCommand(statement);
            foreach (var parameter in parameters.Take(statement.Contains("$2", StringComparison.Ordinal) ? 2 : 1))
            {
                command.Parameters.Add(new NpgsqlParameter { Value = parameter });
            }

            batch.BatchCommands.Add(command);
        }

        await batch.ExecuteNonQueryAsync();
    }
}
