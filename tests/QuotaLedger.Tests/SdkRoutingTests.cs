using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Microsoft.Extensions.Time.Testing;
using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>The SDK over several servers on one database (<see cref="QuotaLedgerClientOptions.Addresses"/>): the affinity
/// of each write, the order of the servers for a key (the same in every client), and a server that cannot be reached
/// passed over. The routing is checked through two in-memory servers on the class's database, each call recorded by the
/// server that carried it; the options' own channels to real ports, in <see cref="SdkRoutingProcessTests"/>.</summary>
public sealed class SdkRoutingTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly DateOnly s_invoiceDate = new(2026, 6, 1);

    private static readonly Uri s_a = new("http://ledger-a.test/");

    private static readonly Uri s_b = new("http://ledger-b.test/");

    [Fact]
    public async Task A_unit_years_writes_go_to_one_server_the_years_grants_to_one_and_the_unit_years_spread_over_both()
    {
        await using var second = fixture.StartServer(LedgerFixture.Now);
        var served = new ConcurrentQueue<(Uri Server, string Method, object Request)>();
        var router = new RoutingCallInvoker([(s_a, Recorded(fixture.Server.Channel, s_a, served)), (s_b, Recorded(second.Channel, s_b, served))],
            TimeProvider.System, new GrantPlaces(1_000));
        using var ledger = new QuotaLedgerClient(router, new QuotaLedgerClientOptions());

        var grants = new List<(Deal Deal, long GrantId)>();
        for (var i = 0; i < 16; i++)
        {
            var deal = await fixture.Server.NewDealAsync();
            grants.Add((deal, (await ledger.GrantAsync(deal.Provider, deal.ContractNo, new Fen(100_000))).GrantId));
        }

        foreach (var (deal, grantId) in grants)
        {
            for (var n = 0; n < 3; n++)
            {
                await ledger.DeductAsync(deal.Provider, grantId, "INV-" + Ids.New()[..16], new Fen(1_000), s_invoiceDate);
            }

            await ledger.GetUnitYearAsync(deal.Unit, 2026);
        }

        var grantServers = served.Where(c => c.Method == "Grant").Select(c => c.Server).Distinct().ToList();
        Assert.Equal(new[] { Expected(Affinity.YearKey(DateTimeOffset.UtcNow.ToOffset(TimeSpan.FromHours(8)).Year)) }, grantServers);
        var deductionServers = served.Where(c => c.Method == "Deduct").GroupBy(c => ((V1.DeductRequest)c.Request).GrantId)
            .ToDictionary(g => g.Key, g => g.Select(c => c.Server).Distinct().ToList());
        foreach (var (deal, grantId) in grants)
        {
            Assert.Equal(new[] { Expected(Affinity.UnitYearKey(deal.Unit, 2026)) }, deductionServers[grantId]);
        }

        Assert.Equal(2, deductionServers.Values.Select(s => s[0]).Distinct().Count());
        Assert.Equal(2, served.Where(c => c.Method == "GetUnitYear").Select(c => c.Server).Distinct().Count());
    }

    [Fact]
    public async Task A_server_that_cannot_be_reached_is_passed_over_its_keys_go_to_the_next_and_it_is_tried_again_later()
    {
        var dead = new Uri($"http://127.0.0.1:{TestPorts.Free()}/");
        using var deadChannel = GrpcChannel.ForAddress(dead);
        var served = new ConcurrentQueue<(Uri Server, string Method, object Request)>();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var router = new RoutingCallInvoker([(s_a, Recorded(fixture.Server.Channel, s_a, served)), (dead, Recorded(deadChannel, dead, served))],
            clock, new GrantPlaces(1_000));
        using var ledger = new QuotaLedgerClient(router, new QuotaLedgerClientOptions());
        // A unit-year whose key prefers the server that is down.
        Deal deal;
        do
        {
            deal = await fixture.Server.NewDealAsync();
        }
        while (Affinity.Rank(Affinity.UnitYearKey(deal.Unit, 2026), [s_a.AbsoluteUri, dead.AbsoluteUri])[0] != 1);

        // The grant teaches the client its unit-year (the year's key may prefer the dead server too: then it is passed
        // over already, until the clock moves on).
        var grantId = (await ledger.GrantAsync(deal.Provider, deal.ContractNo, new Fen(100_000))).GrantId;
        clock.Advance(RoutingCallInvoker.PassOver + TimeSpan.FromSeconds(1));
        served.Clear();
        var applied = 0L;
        for (var n = 0; n < 3; n++)
        {
            applied += (await ledger.DeductAsync(deal.Provider, grantId, "INV-" + Ids.New()[..16], new Fen(1_000), s_invoiceDate)).Applied.Value;
        }

        // The first deduction tried the dead server, found nothing listening, and went on to the live one within the
        // same call; the next ones went straight there.
        Assert.Equal(new[] { dead, s_a, s_a, s_a }, served.Select(c => c.Server));
        Assert.Equal(applied, (await ledger.GetGrantAsync(grantId)).Deducted.Value);

        clock.Advance(RoutingCallInvoker.PassOver + TimeSpan.FromSeconds(1));
        served.Clear();
        await ledger.DeductAsync(deal.Provider, grantId, "INV-" + Ids.New()[..16], new Fen(1_000), s_invoiceDate);
        Assert.Equal(new[] { dead, s_a }, served.Select(c => c.Server));
    }

    [Fact]
    public void Every_client_ranks_a_keys_servers_alike_in_any_order_and_in_any_process()
    {
        string[] servers = ["https://ledger-1.example:5443/", "https://ledger-2.example:5443/", "https://ledger-3.example:5443/"];
        // Fixed values: a client of another version or process must compute the same (string.GetHashCode would not).
        Assert.Equal(16_674_491_755_028_984_297UL, Affinity.Score("year/2026", servers[0]));
        for (var i = 0; i < 200; i++)
        {
            var key = Affinity.UnitYearKey(TestUscc.New(), 2026);
            var first = servers[Affinity.Rank(key, servers)[0]];
            string[] shuffled = [servers[2], servers[0], servers[1]];
            Assert.Equal(first, shuffled[Affinity.Rank(key, shuffled)[0]]);
        }
    }

    [Fact]
    public void Keys_spread_evenly_and_a_server_removed_moves_only_its_own_keys()
    {
        string[] three = ["http://a.test/", "http://b.test/", "http://c.test/"];
        string[] two = [three[0], three[1]];
        var keys = Enumerable.Range(0, 3_000).Select(i => Affinity.UnitYearKey($"91110000MA{i:D7}X", 2026)).ToList();
        var onThree = keys.ToDictionary(k => k, k => three[Affinity.Rank(k, three)[0]]);

        Assert.All(onThree.Values.GroupBy(s => s), g => Assert.InRange(g.Count(), 850, 1_150));
        Assert.All(keys.Where(k => onThree[k] != three[2]), k => Assert.Equal(onThree[k], two[Affinity.Rank(k, two)[0]]));
    }

    [Fact]
    public void Writes_have_a_key_reads_and_dry_runs_none()
    {
        var places = new GrantPlaces(100);
        places.Learn(7, "91110000MA0000001X", 2026);

        Assert.Equal("year/2026", Affinity.KeyOf(new V1.GrantRequest { ContractNo = "C-1" }, places, 2026));
        Assert.Equal("year/2027", Affinity.KeyOf(new V1.FundBudgetRequest { Year = 2027 }, places, 2026));
        Assert.Equal("unit-year/91110000MA0000001X/2026", Affinity.KeyOf(new V1.DeductRequest { GrantId = 7 }, places, 2026));
        Assert.Equal("unit-year/91110000MA0000001X/2026", Affinity.KeyOf(new V1.ReleaseRequest { GrantId = 7 }, places, 2026));
        Assert.Equal("grant/8", Affinity.KeyOf(new V1.DeductRequest { GrantId = 8 }, places, 2026));
        Assert.Null(Affinity.KeyOf(new V1.GrantRequest { DryRun = true }, places, 2026));
        Assert.Null(Affinity.KeyOf(new V1.DeductRequest { GrantId = 7, DryRun = true }, places, 2026));
        Assert.Null(Affinity.KeyOf(new V1.GetUnitYearRequest(), places, 2026));
    }

    [Fact]
    public void The_grants_remembered_are_bounded_and_a_forgotten_one_is_learnt_again_from_an_answer()
    {
        var places = new GrantPlaces(10);
        for (var id = 1; id <= 100; id++)
        {
            places.Learn(id, $"U{id}", 2026);
        }

        Assert.False(places.TryGet(1, out _));
        Assert.True(places.TryGet(100, out var last));
        Assert.Equal(("U100", 2026), last);
        Assert.True(Enumerable.Range(1, 100).Count(id => places.TryGet(id, out _)) <= 12);

        places.LearnFrom(new V1.DeductRequest { GrantId = 1 }, new V1.DeductResponse { UnitYear = new V1.UnitYear { UnitUscc = "U1", Year = 2026 } });
        Assert.True(places.TryGet(1, out var again));
        Assert.Equal(("U1", 2026), again);
    }

    [Fact]
    public void Several_addresses_need_no_Address_and_each_is_checked()
    {
        Assert.Empty(new QuotaLedgerClientOptions { Addresses = { new Uri("http://127.0.0.1:5080"), new Uri("http://127.0.0.1:5081") } }.Problems());
        Assert.Contains(new QuotaLedgerClientOptions { Addresses = { new Uri("http://127.0.0.1:5080"), new Uri("http://ledger.example:5081") } }.Problems(),
            p => p.Contains("ledger.example", StringComparison.Ordinal));
        Assert.Contains(new QuotaLedgerClientOptions { Addresses = { new Uri("http://127.0.0.1:5080"), new Uri("http://127.0.0.1:5081") }, HttpHandler = new HttpClientHandler() }.Problems(),
            p => p.Contains("HttpHandler", StringComparison.Ordinal));
        Assert.Single(new QuotaLedgerClientOptions().Problems(), p => p.StartsWith("Address is required", StringComparison.Ordinal));
    }

    private static Uri Expected(string key) => new[] { s_a, s_b }[Affinity.Rank(key, [s_a.AbsoluteUri, s_b.AbsoluteUri])[0]];

    private static CallInvoker Recorded(GrpcChannel channel, Uri server, ConcurrentQueue<(Uri, string, object)> served) =>
        channel.Intercept(new Recording(server, served));

    /// <summary>Records which server each call went to.</summary>
    private sealed class Recording(Uri server, ConcurrentQueue<(Uri, string, object)> served) : Interceptor
    {
        public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context,
            AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
        {
            served.Enqueue((server, context.Method.Name, request));
            return continuation(request, context);
        }
    }
}
