using System.Collections.Concurrent;
using System.Diagnostics;
using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>The SDK given two real server processes on one database (<see cref="QuotaLedgerClientOptions.Addresses"/>):
/// which server carried each attempt, as its span names it. Slow: process-level.</summary>
[Collection(SlowTests.Collection), Trait("Category", "Slow")]
public sealed class SdkRoutingProcessTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly UnitMaterial[] s_materials =
    [
        new(MaterialKind.ApplicationForm, "form.pdf"), new(MaterialKind.RegistrationCertificate, "licence.pdf"),
        new(MaterialKind.IntegrityPledge, "pledge.pdf"), new(MaterialKind.CreditReport, "credit.pdf"),
    ];

    /// <summary>The ledger's day (China Standard Time) by the real clock, which the server processes run on.</summary>
    private static DateOnly Today => DateOnly.FromDateTime(DateTime.UtcNow.AddHours(8));

    [Fact]
    public async Task A_unit_years_deductions_go_to_one_of_two_servers_and_to_the_other_once_it_is_killed()
    {
        await using var one = await ServerProcess.StartAsync(fixture.Database);
        await using var two = await ServerProcess.StartAsync(fixture.Database);
        var servers = new Dictionary<int, ServerProcess> { [one.Port] = one, [two.Port] = two };
        var deductions = new ConcurrentQueue<int>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == QuotaLedgerTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            // The attempts of this test's deductions (its servers' ports) that the ledger answered.
            ActivityStopped = span =>
            {
                if (span.Kind == ActivityKind.Client && span.OperationName.EndsWith("/Deduct", StringComparison.Ordinal)
                    && span.GetTagItem("server.port") is int port && servers.ContainsKey(port) && span.GetTagItem("rpc.grpc.status_code") is 0)
                {
                    deductions.Enqueue(port);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);
        using var ledger = new QuotaLedgerClient(new QuotaLedgerClientOptions { Addresses = { one.Address, two.Address } });
        var (provider, grantId) = await NewGrantAsync(ledger);

        var applied = 0L;
        for (var n = 0; n < 4; n++)
        {
            applied += (await ledger.DeductAsync(provider, grantId, Invoice(), new Fen(1_000), Today)).Applied.Value;
        }

        var first = Assert.Single(deductions.Distinct());
        Assert.Equal(4, deductions.Count);
        await servers[first].KillAsync();
        deductions.Clear();
        for (var n = 0; n < 3; n++)
        {
            applied += (await ledger.DeductAsync(provider, grantId, Invoice(), new Fen(1_000), Today)).Applied.Value;
        }

        Assert.Equal(servers.Keys.Single(port => port != first), Assert.Single(deductions.Distinct()));
        // Each deduction applied once, the one whose server was killed under it included (retried with its request id).
        Assert.Equal(applied, (await ledger.GetGrantAsync(grantId)).Deducted.Value);
    }

    private static async Task<(string Provider, long GrantId)> NewGrantAsync(IQuotaLedgerClient ledger)
    {
        string provider = TestUscc.New(), unit = TestUscc.New();
        await ledger.RegisterProviderAsync(provider, "Routing test provider", ["IDC-B1-20260001"]);
        await ledger.RegisterUnitAsync(new UnitRegistration(unit, "Routing test unit", UnitKind.Enterprise, Materials: s_materials));
        await ledger.ReviewUnitAsync(provider, unit, approve: true);
        var terms = new ContractTerms("ROUTING-" + Ids.New()[..10], provider, unit, "Ascend 910B", SelfControllable: true, ServiceMode.CloudInstance,
            Fen.FromYuan(20), Fen.FromYuan(100_000), "model training", UsesInnovationVoucher: false, SignedOn: Today);
        await ledger.RegisterContractAsync(terms);
        return (provider, (await ledger.GrantAsync(provider, terms.ContractNo, Fen.FromYuan(10_000))).GrantId);
    }

    private static string Invoice() => "ROUTING-" + Ids.New()[..12];
}
