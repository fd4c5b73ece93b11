using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using QuotaLedger.Server.Security;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Alerts: a figure's threshold fires once per crossing in the transaction of the entry that crossed it and
/// re-arms when the figure goes back; the time-based ones fire once from a pass on the server's clock, across restarts.
/// Each test has a year of its own (2081-2088), so the pool and rules it sees are its own.</summary>
public sealed class AlertTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static DateTimeOffset June(int year, int day = 2) => new(year, 6, day, 1, 0, 0, TimeSpan.Zero);

    private static AlertService.AlertServiceClient AlertsOf(LedgerServer server) => new(server.Channel);

    private static async Task<List<Alert>> ListAsync(AlertService.AlertServiceClient client, ListAlertsRequest request)
    {
        var all = new List<Alert>();
        do
        {
            var page = await client.ListAlertsAsync(request);
            all.AddRange(page.Alerts);
            request = request.Clone();
            request.PageToken = page.NextPageToken;
        }
        while (request.PageToken.Length > 0);
        return all;
    }

    private static Task<List<Alert>> UnitAlertsAsync(LedgerServer server, string unit) =>
        ListAsync(AlertsOf(server), new ListAlertsRequest { Kind = AlertKind.UnitYearCap, UnitUscc = unit });

    [Fact]
    public async Task Crossing_80_and_90_percent_of_a_unit_years_cap_in_one_grant_fires_each_once_in_the_grants_transaction()
    {
        await using var server = fixture.StartServer(June(2081));
        await server.SetSmallYearAsync(2081, capFen: 1_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var deal = await server.NewDealAsync(contractAmountFen: 10_000_000);

        await server.GrantAsync(deal, 500_000);
        Assert.Empty(await UnitAlertsAsync(server, deal.Unit));

        var request = deal.GrantRequest(420_000);
        var grant = await server.Ledger.GrantAsync(request);
        var alerts = await UnitAlertsAsync(server, deal.Unit);
        Assert.Equal([8_000, 9_000], alerts.Select(a => a.ThresholdBp));
        Assert.All(alerts, a =>
        {
            Assert.Equal(grant.Receipt.EntryId, a.EntryId);
            Assert.Equal(2081, a.Year);
            Assert.Equal(deal.Provider, a.ProviderUscc);
            Assert.Equal(920_000, a.FigureFen);
            Assert.Equal(1_000_000, a.BaseFen);
            Assert.Equal(June(2081), a.CreatedAt.ToDateTimeOffset());
        });
        Assert.Equal([800_000, 900_000], alerts.Select(a => a.LimitFen));

        // The same request again answers the first grant and fires nothing more.
        Assert.Equal(grant.GrantId, (await server.Ledger.GrantAsync(request)).GrantId);
        Assert.Equal(2, (await UnitAlertsAsync(server, deal.Unit)).Count);

        // Further on, only the threshold newly crossed fires; a refused grant fires nothing.
        var full = await server.GrantAsync(deal, 80_000);
        alerts = await UnitAlertsAsync(server, deal.Unit);
        Assert.Equal([8_000, 9_000, 10_000], alerts.Select(a => a.ThresholdBp));
        Assert.Equal(full.Receipt.EntryId, alerts[2].EntryId);
        await Refusal.AssertAsync(() => server.GrantAsync(deal, 1), StatusCode.FailedPrecondition, "UNIT_YEAR_CAP_EXCEEDED");
        Assert.Equal(3, (await UnitAlertsAsync(server, deal.Unit)).Count);
    }

    [Fact]
    public async Task A_gift_fires_the_residents_unit_year_alert_in_the_gifts_transaction_and_rearms_the_operators()
    {
        await using var server = fixture.StartServer(June(2090));
        await server.SetSmallYearAsync(2090, capFen: 100_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var provider = await server.NewProviderAsync();
        var opc = await server.NewConfirmedOperatorAsync(provider);
        var resident = await server.NewConfirmedResidentAsync(provider, opc);
        var deal = new Deal(provider, opc, await server.NewContractAsync(provider, opc));
        var source = await server.GrantAsync(deal, 85_000);
        Assert.Equal([8_000], (await UnitAlertsAsync(server, opc)).Select(a => a.ThresholdBp));

        var gift = await server.Ledger.GiftAsync(new GiftRequest
        {
            RequestId = Ids.New(), OperatorUscc = opc, GrantId = source.GrantId, ResidentUscc = resident, AmountFen = 80_000,
        });

        var residentAlert = Assert.Single(await UnitAlertsAsync(server, resident));
        Assert.Equal((8_000, 80_000L, gift.Receipt.EntryId), (residentAlert.ThresholdBp, residentAlert.FigureFen, residentAlert.EntryId));
        await server.GrantAsync(deal, 80_000);
        Assert.Equal([8_000, 8_000], (await UnitAlertsAsync(server, opc)).Select(a => a.ThresholdBp));
    }

    [Fact]
    public async Task A_unit_year_falling_back_below_a_threshold_by_release_or_expiry_rearms_it_and_crossing_again_fires_again()
    {
        await using var server = fixture.StartServer(June(2082));
        await server.SetSmallYearAsync(2082, capFen: 1_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var deal = await server.NewDealAsync(contractAmountFen: 10_000_000);

        var first = await server.GrantAsync(deal, 850_000);
        await server.Ledger.ReleaseAsync(new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = deal.Provider, GrantId = first.GrantId, StatementRef = "JS-1" });
        var second = await server.GrantAsync(deal, 820_000);
        Assert.Equal([first.Receipt.EntryId, second.Receipt.EntryId], (await UnitAlertsAsync(server, deal.Unit)).Select(a => a.EntryId));

        // Still above: another grant fires nothing. Expired by the pass: re-armed, and the next crossing fires.
        await server.GrantAsync(deal, 10_000);
        Assert.Equal(2, (await UnitAlertsAsync(server, deal.Unit)).Count);
        server.Clock.Advance(TimeSpan.FromDays(32));
        await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        var third = await server.GrantAsync(deal, 810_000);
        var alerts = await UnitAlertsAsync(server, deal.Unit);
        Assert.Equal([first.Receipt.EntryId, second.Receipt.EntryId, third.Receipt.EntryId], alerts.Select(a => a.EntryId));
        Assert.All(alerts, a => Assert.Equal(8_000, a.ThresholdBp));
    }

    [Fact]
    public async Task The_pool_falling_below_10_percent_of_funding_fires_and_funding_more_rearms_it()
    {
        await using var server = fixture.StartServer(June(2083));
        await server.SetSmallYearAsync(2083, capFen: 100_000_000, totalFen: 100_000_000, fundFen: 1_000_000);
        var deal = await server.NewDealAsync(contractAmountFen: 100_000_000);
        var pool = new ListAlertsRequest { Year = 2083, Kind = AlertKind.PoolLow };

        await server.GrantAsync(deal, 900_000);
        Assert.Empty(await ListAsync(AlertsOf(server), pool));
        var low = await server.GrantAsync(deal, 50_000);
        var alert = Assert.Single(await ListAsync(AlertsOf(server), pool));
        Assert.Equal((low.Receipt.EntryId, 1_000, 50_000L, 100_000L, 1_000_000L), (alert.EntryId, alert.ThresholdBp, alert.FigureFen, alert.LimitFen, alert.BaseFen));

        await server.GrantAsync(deal, 10_000);
        Assert.Single(await ListAsync(AlertsOf(server), pool));

        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2083, AmountFen = 1_000_000 });
        Assert.Single(await ListAsync(AlertsOf(server), pool));
        var again = await server.GrantAsync(deal, 900_000);
        var alerts = await ListAsync(AlertsOf(server), pool);
        Assert.Equal([low.Receipt.EntryId, again.Receipt.EntryId], alerts.Select(a => a.EntryId));
        Assert.Equal((140_000L, 200_000L), (alerts[1].FigureFen, alerts[1].LimitFen));
    }

    [Fact]
    public async Task A_grant_expiring_within_7_days_with_unused_quota_fires_once_from_time_and_is_not_lost_across_restarts()
    {
        var server = fixture.StartServer(June(2084));
        await server.SetSmallYearAsync(2084, capFen: 100_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var deal = await server.NewDealAsync(contractAmountFen: 100_000_000);
        var unused = await server.GrantAsync(deal, 500_000);
        var small = await server.GrantAsync(deal, 100_000);   // not above the 100,000 fen default
        var later = fixture.StartServer(June(2084, 10));
        var pending = await later.GrantAsync(deal, 300_000);  // expires 2084-07-10
        var expiring = new ListAlertsRequest { Year = 2084, Kind = AlertKind.GrantExpiring, UnitUscc = deal.Unit };

        await AlertsOf(server).RunAlertPassAsync(new RunAlertPassRequest { RequestId = Ids.New() });
        Assert.Empty(await ListAsync(AlertsOf(server), expiring));

        server.Clock.Advance(TimeSpan.FromDays(24));   // 6 days before the first two expire
        await AlertsOf(server).RunAlertPassAsync(new RunAlertPassRequest { RequestId = Ids.New() });
        await AlertsOf(server).RunAlertPassAsync(new RunAlertPassRequest { RequestId = Ids.New() });
        var alert = Assert.Single(await ListAsync(AlertsOf(server), expiring));
        Assert.Equal((unused.GrantId, deal.Provider, 7, 500_000L, 100_000L, 0L),
            (alert.GrantId, alert.ProviderUscc, alert.ThresholdDays, alert.FigureFen, alert.LimitFen, alert.EntryId));
        Assert.NotEqual(small.GrantId, alert.GrantId);

        // Every server stops before the third grant falls due; one started later catches up at start.
        await server.DisposeAsync();
        await later.DisposeAsync();
        await using var restarted = fixture.StartServer(new DateTimeOffset(2084, 7, 5, 1, 0, 0, TimeSpan.Zero), settings: new Dictionary<string, string?>
        {
            ["Alerts:Enabled"] = "true",
            ["Alerts:Interval"] = "01:00:00",
        });
        List<Alert> alerts = [];
        for (var attempt = 0; attempt < 200 && alerts.Count < 2; attempt++)
        {
            alerts = await ListAsync(AlertsOf(restarted), expiring);
            if (alerts.Count < 2)
            {
                await Task.Delay(50);
            }
        }

        Assert.Equal([unused.GrantId, pending.GrantId], alerts.Select(a => a.GrantId));
        Assert.Equal(300_000, alerts[1].FigureFen);
    }

    [Fact]
    public async Task A_redemption_pending_longer_than_30_days_fires_once()
    {
        await using var server = fixture.StartServer(June(2085));
        await server.SetSmallYearAsync(2085, capFen: 100_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var deal = await server.NewDealAsync(contractAmountFen: 100_000_000);
        var grant = await server.GrantAsync(deal, 100_000);
        await server.DeductAsync(deal, grant.GrantId, 20_000);
        var batch = await server.Redemption.OpenBatchAsync(new OpenBatchRequest
        {
            RequestId = Ids.New(), Year = 2085, ClosesAt = Timestamp.FromDateTimeOffset(server.Clock.GetUtcNow().AddDays(10)),
        });
        var redemption = await server.Redemption.SubmitAsync(new SubmitRequest
        {
            RequestId = Ids.New(), BatchId = batch.BatchId, UnitUscc = deal.Unit, AmountFen = 5_000,
            Evidence =
            {
                new[] { EvidenceKind.ApplicationForm, EvidenceKind.Qualification, EvidenceKind.Contract, EvidenceKind.RdProof, EvidenceKind.Invoice, EvidenceKind.PaymentProof, EvidenceKind.UsageLog }
                    .Select(k => new Evidence { Kind = k, Reference = $"doc-{k}", Sha256 = new string('a', 64) }),
            },
        });
        var pending = new ListAlertsRequest { Year = 2085, Kind = AlertKind.RedemptionPending, UnitUscc = deal.Unit };

        server.Clock.Advance(TimeSpan.FromDays(29));
        await AlertsOf(server).RunAlertPassAsync(new RunAlertPassRequest { RequestId = Ids.New() });
        Assert.Empty(await ListAsync(AlertsOf(server), pending));

        server.Clock.Advance(TimeSpan.FromDays(2));
        await AlertsOf(server).RunAlertPassAsync(new RunAlertPassRequest { RequestId = Ids.New() });
        await AlertsOf(server).RunAlertPassAsync(new RunAlertPassRequest { RequestId = Ids.New() });
        var alert = Assert.Single(await ListAsync(AlertsOf(server), pending));
        Assert.Equal((redemption.RedemptionId, 30, 5_000L), (alert.RedemptionId, alert.ThresholdDays, alert.FigureFen));
    }

    [Fact]
    public async Task ListAlerts_filters_pages_and_shows_each_caller_only_its_own()
    {
        await using var setup = fixture.StartServer(June(2086));
        await setup.SetSmallYearAsync(2086, capFen: 1_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var a = await setup.NewDealAsync(contractAmountFen: 10_000_000);
        var b = await setup.NewDealAsync(contractAmountFen: 10_000_000);
        await setup.GrantAsync(a, 850_000);
        await setup.GrantAsync(b, 950_000);

        await using var server = await SecureServer.StartAsync(fixture.Database, June(2086));
        AlertService.AlertServiceClient As(string uscc, Role role) => new(server.Channel(bearerToken: server.Token(uscc, role)));
        var bureau = As(TestUscc.New(), Role.Bureau);
        var year = new ListAlertsRequest { Year = 2086, Kind = AlertKind.UnitYearCap };

        var all = await ListAsync(bureau, year);
        Assert.Equal(3, all.Count);
        Assert.Equal(all.OrderBy(x => x.AlertId), all);
        Assert.Equal(2, (await ListAsync(bureau, new ListAlertsRequest { Year = 2086, UnitUscc = b.Unit })).Count);
        Assert.Equal(2, (await ListAsync(bureau, new ListAlertsRequest { ProviderUscc = b.Provider })).Count);
        Assert.Single(await ListAsync(bureau, new ListAlertsRequest { Kind = AlertKind.UnitYearCap, ProviderUscc = a.Provider }));

        var first = await bureau.ListAlertsAsync(new ListAlertsRequest { Year = 2086, Kind = AlertKind.UnitYearCap, PageSize = 2 });
        Assert.Equal(2, first.Alerts.Count);
        var second = await bureau.ListAlertsAsync(new ListAlertsRequest { Year = 2086, Kind = AlertKind.UnitYearCap, PageSize = 2, PageToken = first.NextPageToken });
        Assert.Equal(all, first.Alerts.Concat(second.Alerts));
        Assert.Equal("", second.NextPageToken);
        await Refusal.AssertAsync(() => bureau.ListAlertsAsync(new ListAlertsRequest { Year = 2085, PageToken = first.NextPageToken }).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");

        var providerA = await ListAsync(As(a.Provider, Role.Provider), year);
        Assert.Equal([a.Unit], providerA.Select(x => x.UnitUscc));
        Assert.Empty(await ListAsync(As(a.Provider, Role.Provider), new ListAlertsRequest { UnitUscc = b.Unit }));
        Assert.Equal(2, (await ListAsync(As(b.Provider, Role.Provider), year)).Count);
        Assert.Equal([a.Unit], (await ListAsync(As(a.Unit, Role.Unit), new ListAlertsRequest())).Select(x => x.UnitUscc));
        Assert.Empty(await ListAsync(As(TestUscc.New(), Role.Provider), year));
        await Refusal.AssertAsync(() => As(a.Provider, Role.Provider).SetAlertRulesAsync(new SetAlertRulesRequest
        {
            RequestId = Ids.New(), Rules = new AlertRules { Year = 2086 },
        }).ResponseAsync, StatusCode.PermissionDenied, "ROLE_REQUIRED");
    }

    [Fact]
    public async Task SetAlertRules_changes_the_thresholds_of_its_year_only_and_refuses_invalid_rules()
    {
        await using var server = fixture.StartServer(June(2087));
        var alerts = AlertsOf(server);
        await server.SetSmallYearAsync(2087, capFen: 1_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var set = await alerts.SetAlertRulesAsync(new SetAlertRulesRequest
        {
            RequestId = Ids.New(),
            Rules = new AlertRules { Year = 2087, UnitYearCapBp = { 5_000 }, PoolLowBp = 500, GrantExpiryDays = 3, GrantUnusedFen = 1, RedemptionPendingDays = 10 },
        });
        Assert.False(set.Defaults);
        Assert.Equal([5_000], (await alerts.GetAlertRulesAsync(new GetAlertRulesRequest { Year = 2087 })).UnitYearCapBp);
        var defaults = await alerts.GetAlertRulesAsync(new GetAlertRulesRequest { Year = 2088 });
        Assert.True(defaults.Defaults);
        Assert.Equal([8_000, 9_000, 10_000], defaults.UnitYearCapBp);
        Assert.Equal((1_000, 7, 100_000L, 30), (defaults.PoolLowBp, defaults.GrantExpiryDays, defaults.GrantUnusedFen, defaults.RedemptionPendingDays));

        var deal = await server.NewDealAsync(contractAmountFen: 10_000_000);
        var grant = await server.GrantAsync(deal, 600_000);
        var fired = Assert.Single(await UnitAlertsAsync(server, deal.Unit));
        Assert.Equal((5_000, 500_000L, grant.Receipt.EntryId), (fired.ThresholdBp, fired.LimitFen, fired.EntryId));

        await using var other = fixture.StartServer(June(2088));
        await other.SetSmallYearAsync(2088, capFen: 1_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var otherDeal = await other.NewDealAsync(contractAmountFen: 10_000_000);
        await other.GrantAsync(otherDeal, 600_000);
        Assert.Empty(await UnitAlertsAsync(other, otherDeal.Unit));

        foreach (var bad in new[]
        {
            new AlertRules { Year = 2087, UnitYearCapBp = { 9_000, 8_000 } },
            new AlertRules { Year = 2087, UnitYearCapBp = { 8_000, 8_000 } },
            new AlertRules { Year = 2087, UnitYearCapBp = { 0 } },
            new AlertRules { Year = 2087, UnitYearCapBp = { 10_001 } },
            new AlertRules { Year = 2087, PoolLowBp = -1 },
            new AlertRules { Year = 2087, PoolLowBp = 10_001 },
            new AlertRules { Year = 2087, GrantExpiryDays = 32 },
            new AlertRules { Year = 2087, GrantUnusedFen = -1 },
            new AlertRules { Year = 2087, RedemptionPendingDays = -1 },
            new AlertRules { Year = 1999 },
            null,
        })
        {
            await Refusal.AssertAsync(() => alerts.SetAlertRulesAsync(new SetAlertRulesRequest { RequestId = Ids.New(), Rules = bad }).ResponseAsync,
                StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        }

        Assert.Equal([5_000], (await alerts.GetAlertRulesAsync(new GetAlertRulesRequest { Year = 2087 })).UnitYearCapBp);
    }
}
