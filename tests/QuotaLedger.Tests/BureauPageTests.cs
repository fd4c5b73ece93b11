using System.Globalization;
using System.Net;
using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using PuppeteerSharp;
using QuotaLedger.Server.Security;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The bureau's page: in a real browser (headless Chromium) on a real development server, it shows the figures
/// the API answers and draws the deductions chart; in secured mode it serves only an authenticated bureau caller.</summary>
[Collection(SlowTests.Collection), Trait("Category", "Slow")]
public sealed class BureauPageTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private const int Year = 2095;

    /// <summary>Where the test leaves its screenshot: TestResults/bureau-page.png at the repository's root (ignored by git).</summary>
    public static readonly string ScreenshotPath = Path.Combine(RepositoryRoot(), "TestResults", "bureau-page.png");

    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web);

    [Fact]
    public async Task The_page_shows_in_chromium_the_figures_the_api_answers_and_charts_the_deductions()
    {
        var scene = await MakeYearAsync();
        await using var server = await DevelopmentServer.StartAsync(fixture.Database, scene.Now);

        // No ?year=: the page shows the current programme year on the server's clock.
        var shown = await OpenAsync(server, year: null, ScreenshotPath);
        await AssertShownAsync(server, scene, shown);
        Assert.All(shown.UnitNames, name => Assert.Equal("Test AI company", name));
        Assert.Equal(shown.UnitYears.Count, shown.UnitNames.Count);
        Assert.Equal(shown.UnitYears.Select(u => u.Cap > 0 ? $"{100.0 * (u.GrantedOpen + u.Deducted) / u.Cap:0.0}%" : "no cap"), shown.Percents);
        Assert.Empty(shown.Empty);
    }

    [Fact]
    public async Task The_page_shows_every_section_empty_for_a_year_with_nothing_in_it()
    {
        const int empty = Year + 1;
        await using (var api = fixture.StartServer(new DateTimeOffset(empty, 6, 2, 2, 0, 0, TimeSpan.Zero)))
        {
            await api.SetSmallYearAsync(empty, capFen: 1_000_000, totalFen: 100_000_000, fundFen: 0);
        }

        await using var server = await DevelopmentServer.StartAsync(fixture.Database, new DateTimeOffset(empty, 6, 2, 2, 0, 0, TimeSpan.Zero));
        var shown = await OpenAsync(server, empty, ScreenshotPath.Replace(".png", "-empty.png", StringComparison.Ordinal));
        Assert.Equal(empty.ToString(CultureInfo.InvariantCulture), shown.Year);
        Assert.Empty(shown.UnitYears);
        Assert.Empty(shown.Grants);
        Assert.Empty(shown.Redemptions);
        Assert.Equal(
            ["No deduction has been applied this year.", "No unit has been granted anything this year.", "No grant with quota left expires within 7 days.",
                "No redemption application this year."],
            shown.Empty);
        Assert.Equal(100_000_000, shown.Figures["year-total"].Fen); // The policy's; nothing else has happened.
        Assert.All(shown.Figures.Where(f => f.Key != "year-total"), figure => Assert.Equal(0, figure.Value.Fen));
        Assert.Empty(shown.Chart!.Labels);
        Assert.Equal([.. Enumerable.Range(1, 12).Select(m => $"{empty}-{m:D2}"), $"{empty}"], shown.Closings.Select(c => c.Period));
        Assert.All(shown.Closings, c => Assert.False(c.Closed));
    }

    [Fact]
    public async Task The_page_shows_a_year_whose_grants_expire_later_than_the_window_with_the_expiring_table_empty()
    {
        const int later = Year + 2;
        var now = new DateTimeOffset(later, 6, 2, 2, 0, 0, TimeSpan.Zero);
        string unit;
        await using (var api = fixture.StartServer(now))
        {
            await api.SetSmallYearAsync(later, capFen: 1_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
            var deal = await api.NewDealAsync(contractAmountFen: 10_000_000);
            var grant = await api.GrantAsync(deal, 250_000); // Valid for a month: nothing expires within the week.
            await api.DeductAsync(deal, grant.GrantId, 100_000);
            unit = deal.Unit;
        }

        await using var server = await DevelopmentServer.StartAsync(fixture.Database, now);
        var shown = await OpenAsync(server, later, ScreenshotPath.Replace(".png", "-no-expiring.png", StringComparison.Ordinal));
        Assert.Equal([unit], shown.UnitYears.Select(u => u.Unit));
        Assert.Equal(["Test AI company"], shown.UnitNames);
        Assert.Equal(["25.0%"], shown.Percents); // 200,000 open + 50,000 deducted of a 1,000,000 cap.
        Assert.Empty(shown.Grants);
        Assert.Equal(["No grant with quota left expires within 7 days.", "No redemption application this year."], shown.Empty);
        Assert.Single(shown.Chart!.Labels);
    }

    [Fact]
    public async Task The_page_shows_a_closed_month_with_the_figures_its_closing_sealed()
    {
        var july = new DateTimeOffset(2026, 7, 2, 2, 0, 0, TimeSpan.Zero);
        Closing june;
        await using (var api = fixture.StartServer(new DateTimeOffset(2026, 6, 10, 2, 0, 0, TimeSpan.Zero)))
        {
            var deal = await api.NewDealAsync(contractAmountFen: 10_000_000);
            var grant = await api.GrantAsync(deal, 100_000);
            await api.DeductAsync(deal, grant.GrantId, 10_000);
            api.Clock.SetUtcNow(july);
            june = await api.Admin.ClosePeriodAsync(new ClosePeriodRequest { RequestId = Ids.New(), Year = 2026, Month = 6 });
        }

        await using var server = await DevelopmentServer.StartAsync(fixture.Database, july);
        var shown = await OpenAsync(server, 2026, ScreenshotPath.Replace(".png", "-closings.png", StringComparison.Ordinal));
        var row = Assert.Single(shown.Closings, c => c.Closed);
        Assert.Equal("2026-06", row.Period);
        Assert.Equal((june.Decoded.ProgramYears.Single(p => p.Year == 2026).PoolFen, june.Decoded.Entries, 0), (row.Pool, row.Entries, row.Corrections));
    }

    /// <summary>Opens the page in headless Chromium, waits until it has drawn or failed, saves a screenshot, and reads what
    /// it shows. Fails on any console error or uncaught exception, and when the page did not reach its ready state.</summary>
    private static async Task<Shown> OpenAsync(DevelopmentServer server, int? year, string screenshot)
    {
        var (browser, profile) = await HeadlessChromium.LaunchAsync();
        try
        {
            var page = await browser.NewPageAsync();
            await page.SetViewportAsync(new ViewPortOptions { Width = 1400, Height = 1000 });
            var errors = new List<string>();
            page.Console += (_, e) => { if (e.Message.Type == ConsoleType.Error) { errors.Add($"{e.Message.Text} ({e.Message.Location?.URL})"); } };
            page.PageError += (_, e) => errors.Add(e.Message);

            var path = year is { } y ? $"/bureau/?year={y}" : "/bureau/";
            var response = await page.GoToAsync(new Uri(server.WebAddress, path).ToString(), WaitUntilNavigation.Load);
            Assert.Equal(HttpStatusCode.OK, response.Status);
            await page.WaitForFunctionAsync("() => document.body.dataset.state !== 'loading'", new WaitForFunctionOptions { Timeout = 30_000 });
            Directory.CreateDirectory(Path.GetDirectoryName(screenshot)!);
            await page.ScreenshotAsync(screenshot, new ScreenshotOptions { FullPage = true });
            var state = await page.EvaluateExpressionAsync<string>("document.body.dataset.state");
            Assert.True(state == "ready", $"The page did not render: {await page.EvaluateExpressionAsync<string>("document.getElementById('error').textContent")} {string.Join("; ", errors)}");
            Assert.Empty(errors);
            return JsonSerializer.Deserialize<Shown>(await page.EvaluateExpressionAsync<string>(ReadPage), s_json)!;
        }
        finally
        {
            await browser.CloseAsync();
            await browser.DisposeAsync();
            Directory.Delete(profile, recursive: true);
        }
    }

    [Fact]
    public async Task In_development_a_year_without_a_policy_is_refused_with_its_reason()
    {
        await using var server = await DevelopmentServer.StartAsync(fixture.Database, LedgerFixture.Now);
        using var http = new HttpClient { BaseAddress = server.WebAddress };

        var refused = await http.GetAsync(new Uri("/bureau/api/summary?year=2099", UriKind.Relative));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal("YEAR_NOT_OPEN", await ReasonOfAsync(refused));
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri("/bureau/nothing.js", UriKind.Relative))).StatusCode);
        var library = await http.GetAsync(new Uri("/bureau/vendor/chart.umd.min.js", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, library.StatusCode);
        Assert.Equal("text/javascript", library.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task In_secured_mode_the_page_serves_only_an_authenticated_bureau_caller()
    {
        // One TLS endpoint for gRPC (HTTP/2) and the browser (HTTP/1.1).
        await using var server = await SecureServer.StartAsync(fixture.Database, LedgerFixture.Now,
            new Dictionary<string, string?> { ["Kestrel:Endpoints:Grpc:Protocols"] = "Http1AndHttp2" });
        string[] paths = ["/bureau/", "/bureau/app.js", "/bureau/api/summary"];

        using var anonymous = server.Http();
        foreach (var path in paths)
        {
            var response = await anonymous.GetAsync(new Uri(path, UriKind.Relative));
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("UNAUTHENTICATED", await ReasonOfAsync(response));
        }

        var provider = TestUscc.New();
        using var providerByCertificate = server.Http(server.Certificate(provider, Role.Provider));
        using var providerByToken = server.Http(bearerToken: server.Token(provider, Role.Provider));
        foreach (var client in new[] { providerByCertificate, providerByToken })
        {
            foreach (var path in paths)
            {
                var response = await client.GetAsync(new Uri(path, UriKind.Relative));
                Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
                Assert.Equal("ROLE_REQUIRED", await ReasonOfAsync(response));
            }
        }

        var bureau = server.Certificate(TestUscc.New(), Role.Bureau);
        using var bureauByCertificate = server.Http(bureau);
        var pageResponse = await bureauByCertificate.GetAsync(new Uri("/bureau/", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, pageResponse.StatusCode);
        Assert.Equal("text/html", pageResponse.Content.Headers.ContentType?.MediaType);
        Assert.Contains("deductions-chart", await pageResponse.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var bureauByToken = server.Http(bearerToken: server.Token(TestUscc.New(), Role.Bureau));
        var summary = await bureauByToken.GetAsync(new Uri("/bureau/api/summary", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, summary.StatusCode);
        using var json = JsonDocument.Parse(await summary.Content.ReadAsStringAsync());
        Assert.Equal(2026, json.RootElement.GetProperty("year").GetInt32());
        var api = await server.As(bureau).Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 });
        Assert.Equal(api.FundedFen, json.RootElement.GetProperty("programYear").GetProperty("fundedFen").GetInt64());
    }

    /// <summary>What the test made of its year through the API: the units, the grants, and what the deductions applied
    /// per day (China time), as the Deduct answers said.</summary>
    private sealed record Scene(DateTimeOffset Now, string[] Units, long[] Grants, SortedDictionary<string, long> AppliedPerDay);

    /// <summary>A programme year with real data, made through the gRPC API over days: funding, three providers' units
    /// with grants, deductions on four days, applications for redemption (one reviewed). At the end two grants expire
    /// within the week and one does not.</summary>
    private async Task<Scene> MakeYearAsync()
    {
        await using var api = fixture.StartServer(new DateTimeOffset(Year, 3, 2, 2, 0, 0, TimeSpan.Zero));
        await api.SetSmallYearAsync(Year, capFen: 1_000_000, totalFen: 100_000_000, fundFen: 50_000_000);
        var a = await api.NewDealAsync(contractAmountFen: 10_000_000);
        var b = await api.NewDealAsync(contractAmountFen: 10_000_000);
        var c = await api.NewDealAsync(contractAmountFen: 10_000_000);
        var applied = new SortedDictionary<string, long>(StringComparer.Ordinal);
        async Task DeductAsync(Deal deal, long grantId, long invoiceFen)
        {
            var deduction = await api.DeductAsync(deal, grantId, invoiceFen);
            applied[api.Today()] = applied.GetValueOrDefault(api.Today()) + deduction.AppliedFen;
        }

        var grantA = (await api.GrantAsync(a, 600_000)).GrantId;
        var grantB = (await api.GrantAsync(b, 300_000)).GrantId;
        await DeductAsync(a, grantA, 200_000);
        api.Clock.Advance(TimeSpan.FromDays(1));
        await DeductAsync(b, grantB, 100_000);
        await DeductAsync(a, grantA, 50_000);
        api.Clock.Advance(TimeSpan.FromDays(2));
        var grantC = (await api.GrantAsync(c, 200_000)).GrantId;
        await DeductAsync(c, grantC, 80_000);

        var batch = await api.Redemption.OpenBatchAsync(new OpenBatchRequest
        {
            RequestId = Ids.New(), Year = Year, ClosesAt = Timestamp.FromDateTimeOffset(api.Clock.GetUtcNow().AddDays(60)),
        });
        await SubmitAsync(api, batch.BatchId, a.Unit, 100_000);
        var second = await SubmitAsync(api, batch.BatchId, b.Unit, 40_000);
        await api.Redemption.ReviewAsync(new ReviewRequest
        {
            RequestId = Ids.New(), RedemptionId = second.RedemptionId, ApprovedFen = 30_000, Reviewer = "Expert Li", Reason = "one invoice lacks a payment proof",
        });

        // Day 26: A's and B's grants (made on day 0) expire within 7 days; C's (day 3) a day later.
        api.Clock.Advance(TimeSpan.FromDays(23));
        await DeductAsync(a, grantA, 40_000);
        return new Scene(api.Clock.GetUtcNow(), [a.Unit, b.Unit, c.Unit], [grantA, grantB, grantC], applied);
    }

    private static Task<Redemption> SubmitAsync(LedgerServer server, long batchId, string unit, long amountFen) =>
        server.Redemption.SubmitAsync(new SubmitRequest
        {
            RequestId = Ids.New(), BatchId = batchId, UnitUscc = unit, AmountFen = amountFen,
            Evidence =
            {
                new[] { EvidenceKind.ApplicationForm, EvidenceKind.Qualification, EvidenceKind.Contract, EvidenceKind.RdProof, EvidenceKind.Invoice, EvidenceKind.PaymentProof, EvidenceKind.UsageLog }
                    .Select(k => new Evidence { Kind = k, Reference = $"doc-{k}", Sha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(k.ToString()))) }),
            },
        }).ResponseAsync;

    /// <summary>Every figure the page shows is the API's, asked of the same server.</summary>
    private static async Task AssertShownAsync(DevelopmentServer server, Scene scene, Shown shown)
    {
        Assert.Equal(Year.ToString(CultureInfo.InvariantCulture), shown.Year);

        var year = await server.Api.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = Year });
        var expected = new Dictionary<string, long>
        {
            ["year-total"] = year.YearTotalFen, ["funded"] = year.FundedFen, ["pool"] = year.PoolFen, ["granted"] = year.GrantedOpenFen,
            ["deducted"] = year.DeductedFen, ["redeemed"] = year.RedeemedFen, ["disbursed"] = year.DisbursedFen, ["reclaimed"] = year.ReclaimedFen,
            ["clawed-back"] = year.ClawedBackFen, ["receivable"] = year.ReceivableFen,
        };
        Assert.Equal(expected, shown.Figures.ToDictionary(f => f.Key, f => f.Value.Fen));
        foreach (var (figure, fen) in expected)
        {
            Assert.Equal(Yuan(fen), shown.Figures[figure].Text);
        }

        Assert.Equal(50_000_000, year.FundedFen);
        Assert.Equal("¥500,000.00", shown.Figures["funded"].Text);

        var unitYears = new List<UnitYear>();
        foreach (var unit in scene.Units)
        {
            unitYears.Add(await server.Api.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = unit, Year = Year }));
        }

        Assert.Equal(
            unitYears.OrderByDescending(u => u.GrantedOpenFen + u.DeductedFen).Select(u => new ShownUnitYear(u.UnitUscc, u.CapFen, u.GrantedOpenFen, u.DeductedFen, u.HeadroomFen)),
            shown.UnitYears);

        var grants = new List<GrantInfo>();
        foreach (var id in scene.Grants)
        {
            grants.Add(await server.Api.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = id }));
        }

        var soon = grants
            .Where(g => g.Status == GrantStatus.Open && g.RemainingFen > 0 && g.ExpiresAt.ToDateTimeOffset() <= scene.Now.AddDays(7))
            .OrderBy(g => g.ExpiresAt.ToDateTimeOffset())
            .Select(g => new ShownGrant(g.GrantId, g.RemainingFen))
            .ToList();
        Assert.Equal([scene.Grants[0], scene.Grants[1]], soon.Select(g => g.Id));
        Assert.Equal(soon, shown.Grants);

        var redemptions = (await server.Api.Redemption.ListRedemptionsAsync(new ListRedemptionsRequest { Year = Year })).Redemptions;
        Assert.Equal(
            new[] { RedemptionState.Submitted, RedemptionState.Reviewed, RedemptionState.Disbursed }.Select(state =>
            {
                var these = redemptions.Where(r => r.State == state).ToList();
                return new ShownRedemptions(state.ToString().ToLowerInvariant(), these.Count, these.Sum(r => r.RequestedFen), these.Sum(r => r.ApprovedFen),
                    these.Sum(r => r.OutstandingFen), these.Sum(r => r.DisbursedFen));
            }),
            shown.Redemptions);
        Assert.Equal(2, shown.Redemptions.Sum(r => r.Count));

        var journal = await server.Api.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.Equal(journal.Ok ? "true" : "false", shown.JournalOk);
        Assert.Equal(journal.EntriesChecked, shown.EntriesChecked);

        Assert.NotNull(shown.Chart);
        Assert.Equal(scene.AppliedPerDay.Keys, shown.Chart.Labels);
        Assert.Equal(scene.AppliedPerDay.Values, shown.Chart.PerDay.Select(yuan => (long)Math.Round(yuan * 100)));
        Assert.Equal(year.DeductedFen, scene.AppliedPerDay.Values.Sum());
        Assert.True(shown.Painted > 5_000, $"The chart's canvas is next to blank ({shown.Painted} painted pixels).");
    }

    /// <summary>Fen as the page shows them: yuan with thousands separators and two decimals.</summary>
    private static string Yuan(long fen) =>
        $"{(fen < 0 ? "-" : "")}¥{(Math.Abs(fen) / 100).ToString("N0", CultureInfo.InvariantCulture)}.{Math.Abs(fen) % 100:00}";

    private static async Task<string> ReasonOfAsync(HttpResponseMessage response)
    {
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return body.RootElement.GetProperty("reason").GetString() ?? "";
    }

    /// <summary>Reads what the page shows from its DOM (the fen each figure carries beside its yuan text), the chart's
    /// data from its Chart.js instance, and how much of the chart's canvas is painted.</summary>
    private const string ReadPage =
        """
        (() => {
          const fen = (root, field) => Number(root.querySelector(`[data-field="${field}"]`).dataset.fen);
          const canvas = document.getElementById('deductions-chart');
          const chart = Chart.getChart(canvas);
          const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let painted = 0;
          for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) { painted++; } }
          return JSON.stringify({
            year: document.querySelector('[data-field="year"]').textContent,
            figures: Object.fromEntries([...document.querySelectorAll('[data-figure]')]
              .map(e => [e.dataset.figure, { fen: Number(e.dataset.fen), text: e.textContent }])),
            unitNames: [...document.querySelectorAll('tr[data-unit-year] .unit-name')].map(e => e.textContent),
            percents: [...document.querySelectorAll('tr[data-unit-year] [data-field="used"] .percent')].map(e => e.textContent),
            empty: [...document.querySelectorAll('[data-empty]')].filter(e => !e.hidden).map(e => e.textContent),
            unitYears: [...document.querySelectorAll('tr[data-unit-year]')].map(r => ({
              unit: r.dataset.unitYear, cap: fen(r, 'cap'), grantedOpen: fen(r, 'granted-open'), deducted: fen(r, 'deducted'), headroom: fen(r, 'headroom') })),
            grants: [...document.querySelectorAll('tr[data-grant]')].map(r => ({ id: Number(r.dataset.grant), remaining: fen(r, 'remaining') })),
            redemptions: [...document.querySelectorAll('tr[data-redemption-state]')].map(r => ({
              state: r.dataset.redemptionState, count: Number(r.querySelector('[data-field="count"]').dataset.value),
              requested: fen(r, 'requested'), approved: fen(r, 'approved'), outstanding: fen(r, 'outstanding'), disbursed: fen(r, 'disbursed') })),
            journalOk: document.getElementById('journal-badge').dataset.journalOk,
            entriesChecked: Number(document.querySelector('[data-journal="entries-checked"]').dataset.value),
            chart: chart ? { labels: chart.data.labels, perDay: chart.data.datasets[0].data } : null,
            painted,
            closings: [...document.querySelectorAll('tr[data-period]')].map(r => ({
              period: r.dataset.period, closed: r.dataset.closed === 'true', pool: r.dataset.closed === 'true' ? fen(r, 'pool') : 0,
              entries: r.dataset.closed === 'true' ? Number(r.querySelector('[data-field="entries"]').dataset.value) : 0,
              corrections: r.dataset.closed === 'true' ? Number(r.querySelector('[data-field="corrections"]').dataset.value) : 0 })),
          });
        })()
        """;

    private sealed record Shown(
        string Year, Dictionary<string, ShownFigure> Figures, List<string> UnitNames, List<string> Percents, List<string> Empty, List<ShownUnitYear> UnitYears, List<ShownGrant> Grants, List<ShownRedemptions> Redemptions,
        string JournalOk, long EntriesChecked, ShownChart? Chart, long Painted, List<ShownClosing> Closings);

    private sealed record ShownClosing(string Period, bool Closed, long Pool, long Entries, int Corrections);

    private sealed record ShownFigure(long Fen, string Text);

    private sealed record ShownUnitYear(string Unit, long Cap, long GrantedOpen, long Deducted, long Headroom);

    private sealed record ShownGrant(long Id, long Remaining);

    private sealed record ShownRedemptions(string State, int Count, long Requested, long Approved, long Outstanding, long Disbursed);

    private sealed record ShownChart(List<string> Labels, List<double> PerDay);

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "QuotaLedger.sln")))
            {
                return directory.FullName;
            }
        }

        return AppContext.BaseDirectory;
    }
}
