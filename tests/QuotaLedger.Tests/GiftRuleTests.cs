using Grpc.Core;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Rules;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;
using Fen = QuotaLedger.Server.Rules.Fen;
using GrantState = QuotaLedger.Server.Storage.GrantState;
using ResidencyStatus = QuotaLedger.Server.Storage.ResidencyStatus;
using StorageUnitKind = QuotaLedger.Server.Storage.UnitKind;

namespace QuotaLedger.Tests;

/// <summary>The gift rules (Art 15): one pure function (<see cref="Gifts.Decide"/>), checked on its own with no database,
/// and through both paths of the write engine that call it (the coalesced queue and one transaction per write), which
/// must answer every case alike.</summary>
public sealed class GiftRuleTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly DateTimeOffset s_now = new(2026, 6, 10, 2, 0, 0, TimeSpan.Zero);

    [Fact]
    public void The_rule_function_decides_each_case_in_its_fixed_order_without_a_database()
    {
        var cases = new (string Case, Func<GiftFacts> Facts, long Amount, string Expected)[]
        {
            ("applied", () => Facts(), 1_000, "given"),
            ("no such operator", () => Facts() with { OperatorKind = null }, 1_000, "UNKNOWN_UNIT"),
            ("no such resident", () => Facts() with { ResidentKnown = false }, 1_000, "UNKNOWN_UNIT"),
            ("an enterprise gives", () => Facts() with { OperatorKind = StorageUnitKind.Enterprise }, 1_000, "NOT_TRANSFERABLE"),
            ("the operator not confirmed", () => Facts() with { OperatorConfirmed = false }, 1_000, "NOT_TRANSFERABLE"),
            ("the resident only declared", () => Facts() with { Residency = ResidencyStatus.Declared }, 1_000, "NOT_RESIDENT"),
            ("the resident never listed", () => Facts() with { Residency = null }, 1_000, "NOT_RESIDENT"),
            ("no such grant", () => Facts() with { Source = null }, 1_000, "UNKNOWN_GRANT"),
            ("another unit's grant", () => Facts() with { Source = Source(unit: "OTHER") }, 1_000, "UNKNOWN_GRANT"),
            ("the grant released", () => Facts() with { Source = Source(state: GrantState.Released) }, 1_000, "GRANT_CLOSED"),
            ("the grant past its expiry", () => Facts() with { Source = Source(expiresAt: s_now) }, 1_000, "GRANT_EXPIRED"),
            ("the operator suspended", () => Facts() with { OperatorDealing = Good("OPC") with { UnitGood = false } }, 1_000, "PARTY_SUSPENDED"),
            ("the resident related to the provider", () => Facts() with { ResidentDealing = Good("RESIDENT") with { Related = true } }, 1_000, "RELATED_PARTIES"),
            ("the resident not approved", () => Facts() with { ResidentDealing = Good("RESIDENT") with { Approved = false } }, 1_000, "UNIT_NOT_APPROVED"),
            ("all the grant holds", () => Facts(), 5_000, "given"),
            ("more than the grant holds", () => Facts(), 5_001, "GRANT_EMPTY"),
            ("up to the resident's cap", () => Facts(residentCommitted: 9_000), 1_000, "given"),
            ("past the resident's cap", () => Facts(residentCommitted: 9_001), 1_000, "UNIT_YEAR_CAP_EXCEEDED"),

            // Several rules broken at once: the first in the order answers.
            ("not confirmed and not resident", () => Facts() with { OperatorConfirmed = false, Residency = null }, 1_000, "NOT_TRANSFERABLE"),
            ("not resident and no such grant", () => Facts() with { Residency = null, Source = null }, 1_000, "NOT_RESIDENT"),
            ("released, suspended, past the cap", () => Facts(residentCommitted: 10_000) with
                { Source = Source(state: GrantState.Released), OperatorDealing = Good("OPC") with { ProviderGood = false } }, 1_000, "GRANT_CLOSED"),
            ("not approved and past what it holds", () => Facts() with { ResidentDealing = Good("RESIDENT") with { Approved = false } }, 9_000, "UNIT_NOT_APPROVED"),
            ("past what it holds and the cap", () => Facts(residentCommitted: 10_000), 9_000, "GRANT_EMPTY"),
        };

        foreach (var (name, facts, amount, expected) in cases)
        {
            var refusal = Gifts.Decide(new GiftCall("OPC", 7, "RESIDENT", new Fen(amount), "R-1", "OPC"), facts(), s_now);
            var answer = refusal?.Reason.Word() ?? "given";
            Assert.True(expected == answer, $"{name}: expected {expected}, got {answer}");
        }
    }

    [Fact]
    public async Task Both_gift_paths_answer_the_table_of_cases_alike()
    {
        await using var coalesced = fixture.StartServer(s_now);
        await using var oneByOne = fixture.StartServer(s_now, settings: new Dictionary<string, string?> { ["Deductions:Coalesce"] = "false" });
        var expected = new List<(string, string)>
        {
            ("applied", "given 1000"),
            ("replayed", "given 1000"),
            ("request id reused", "REQUEST_ID_REUSED"),
            ("no such operator", "UNKNOWN_UNIT"),
            ("no such resident", "UNKNOWN_UNIT"),
            ("an enterprise gives", "NOT_TRANSFERABLE"),
            ("the operator not confirmed", "NOT_TRANSFERABLE"),
            ("the resident only declared", "NOT_RESIDENT"),
            ("no such grant", "UNKNOWN_GRANT"),
            ("another unit's grant", "UNKNOWN_GRANT"),
            ("the resident related to the provider", "RELATED_PARTIES"),
            ("the resident not approved", "UNIT_NOT_APPROVED"),
            ("the operator suspended", "PARTY_SUSPENDED"),
            ("more than the grant holds", "GRANT_EMPTY"),
            ("all the grant holds", "given 4000"),
            ("the grant released", "GRANT_CLOSED"),
            ("up to the resident's cap", "given 10000"),
            ("past the resident's cap", "UNIT_YEAR_CAP_EXCEEDED"),
            ("the grant past its expiry", "GRANT_EXPIRED"),
        };
        Assert.Equal(expected, await RunTableAsync(coalesced, 2041));
        Assert.Equal(expected, await RunTableAsync(oneByOne, 2042));
        await Books.AssertHoldAsync(coalesced);
    }

    /// <summary>The table on one server: in 2026 (the fixture's funded year), then the cap and expiry cases in a year of
    /// the run's own, whose cap is 10,000 fen.</summary>
    private static async Task<List<(string, string)>> RunTableAsync(LedgerServer server, int year)
    {
        var answers = new List<(string, string)>();
        async Task<GiftResponse?> Record(string name, Func<Task<GiftResponse>> call)
        {
            try
            {
                var response = await call();
                answers.Add((name, $"given {response.Grant.AmountFen}"));
                return response;
            }
            catch (RpcException e)
            {
                answers.Add((name, Refusal.ReasonOf(e)));
                return null;
            }
        }

        Task<GiftResponse> Send(GiftRequest request) => server.Ledger.GiftAsync(request).ResponseAsync;
        GiftRequest Gift(string opc, long grantId, string resident, long amountFen) =>
            new() { RequestId = Ids.New(), OperatorUscc = opc, GrantId = grantId, ResidentUscc = resident, AmountFen = amountFen };

        var provider = await server.NewProviderAsync();
        var opc = await server.NewConfirmedOperatorAsync(provider);
        var resident = await server.NewConfirmedResidentAsync(provider, opc);
        var grant = await server.GrantAsync(new Deal(provider, opc, await server.NewContractAsync(provider, opc)), 5_000);

        var first = Gift(opc, grant.GrantId, resident, 1_000);
        var applied = await Record("applied", () => Send(first));
        // What the gift answers is what the ledger then reads: the new grant, both unit-years, and the entry.
        Assert.NotNull(applied);
        Assert.Equal((grant.GrantId, 4_000L), (applied.SourceGrantId, applied.SourceRemainingFen));
        Assert.Equal((resident, grant.GrantId, 1_000L, GrantStatus.Open), (applied.Grant.UnitUscc, applied.Grant.GiftedFromGrantId, applied.Grant.RemainingFen, applied.Grant.Status));
        Assert.Equal(applied.Grant, await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = applied.Grant.GrantId }));
        Assert.Equal(applied.OperatorUnitYear, await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = opc, Year = 2026 }));
        Assert.Equal(applied.ResidentUnitYear, await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = resident, Year = 2026 }));
        var entry = Assert.Single(await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = grant.GrantId }), e => e.Kind == V1.EntryKind.Gift);
        Assert.Equal((resident, applied.Grant.GrantId, applied.Receipt.EntryId), (entry.CounterpartyUscc, entry.CounterpartyGrantId, entry.EntryId));
        var replayed = await Record("replayed", () => Send(first));
        Assert.Equal(applied, replayed);
        var reused = Gift(opc, grant.GrantId, resident, 2_000);
        reused.RequestId = first.RequestId;
        await Record("request id reused", () => Send(reused));

        await Record("no such operator", () => Send(Gift(TestUscc.New(), grant.GrantId, resident, 1_000)));
        await Record("no such resident", () => Send(Gift(opc, grant.GrantId, TestUscc.New(), 1_000)));
        var enterprise = await server.NewUnitAsync();
        await Record("an enterprise gives", () => Send(Gift(enterprise, grant.GrantId, resident, 1_000)));
        var unconfirmed = await server.NewUnitAsync(kind: UnitKind.OpcOperator);
        await Record("the operator not confirmed", () => Send(Gift(unconfirmed, grant.GrantId, resident, 1_000)));
        var declared = await server.NewUnitAsync();
        await server.ApproveAsync(provider, declared);
        await server.Registry.AddResidentOpcAsync(new AddResidentOpcRequest { RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = declared });
        await Record("the resident only declared", () => Send(Gift(opc, grant.GrantId, declared, 1_000)));
        await Record("no such grant", () => Send(Gift(opc, grant.GrantId + 1_000_000, resident, 1_000)));
        var elsewhere = await server.GrantAsync(await server.NewDealAsync(), 1_000);
        await Record("another unit's grant", () => Send(Gift(opc, elsewhere.GrantId, resident, 1_000)));

        var related = await server.NewConfirmedResidentAsync(provider, opc);
        await server.Registry.DeclareRelatedPartyAsync(new DeclareRelatedPartyRequest { RequestId = Ids.New(), ProviderUscc = provider, UnitUscc = related, Reason = "same owner" });
        await Record("the resident related to the provider", () => Send(Gift(opc, grant.GrantId, related, 1_000)));
        var withdrawn = await server.NewConfirmedResidentAsync(provider, opc);
        await server.ApproveAsync(provider, withdrawn, approve: false);
        await Record("the resident not approved", () => Send(Gift(opc, grant.GrantId, withdrawn, 1_000)));
        var suspendedOpc = await server.NewConfirmedOperatorAsync(provider);
        var suspendedsResident = await server.NewConfirmedResidentAsync(provider, suspendedOpc);
        var suspendedGrant = await server.GrantAsync(new Deal(provider, suspendedOpc, await server.NewContractAsync(provider, suspendedOpc)), 5_000);
        await server.Admin.SetStandingAsync(new SetStandingRequest { RequestId = Ids.New(), Uscc = suspendedOpc, Standing = Standing.Suspended, Reason = "inspection" });
        await Record("the operator suspended", () => Send(Gift(suspendedOpc, suspendedGrant.GrantId, suspendedsResident, 1_000)));

        await Record("more than the grant holds", () => Send(Gift(opc, grant.GrantId, resident, 4_001)));
        await Record("all the grant holds", () => Send(Gift(opc, grant.GrantId, resident, 4_000)));
        var released = await server.GrantAsync(new Deal(provider, opc, await server.NewContractAsync(provider, opc)), 5_000);
        await server.Ledger.ReleaseAsync(new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = provider, GrantId = released.GrantId, StatementRef = "JS-1" });
        await Record("the grant released", () => Send(Gift(opc, released.GrantId, resident, 1_000)));

        // The run's own year, with a unit-year cap of 10,000 fen.
        server.Clock.SetUtcNow(new DateTimeOffset(year, 3, 2, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(year, capFen: 10_000, totalFen: 1_000_000, fundFen: 100_000);
        var contract = await server.NewContractAsync(provider, opc);
        var big = await server.GrantAsync(new Deal(provider, opc, contract), 10_000);
        await Record("up to the resident's cap", () => Send(Gift(opc, big.GrantId, resident, 10_000)));
        var second = await server.GrantAsync(new Deal(provider, opc, contract), 1);
        await Record("past the resident's cap", () => Send(Gift(opc, second.GrantId, resident, 1)));
        server.Clock.Advance(TimeSpan.FromDays(40));
        await Record("the grant past its expiry", () => Send(Gift(opc, second.GrantId, resident, 1)));
        return answers;
    }

    private static GiftFacts Facts(long residentCommitted = 0) => new()
    {
        OperatorKind = StorageUnitKind.OpcOperator,
        ResidentKnown = true,
        OperatorConfirmed = true,
        Residency = ResidencyStatus.Confirmed,
        Source = Source(),
        OperatorDealing = Good("OPC"),
        ResidentDealing = Good("RESIDENT"),
        Resident = new UnitYearFigures("RESIDENT", 2026, new Fen(10_000), new Fen(residentCommitted), Fen.Zero, Fen.Zero),
    };

    private static Dealing Good(string unit) => new("PROVIDER", unit, ProviderGood: true, UnitGood: true, Related: false, Approved: true);

    private static GrantFacts Source(string unit = "OPC", GrantState state = GrantState.Open, DateTimeOffset? expiresAt = null) => new()
    {
        Id = 7,
        ContractId = 1,
        Provider = "PROVIDER",
        Unit = unit,
        Year = 2026,
        UnitYearId = 1,
        AccountId = 1,
        RatioBp = 5_000,
        State = state,
        ExpiresAt = expiresAt ?? s_now.AddMonths(1),
        BalanceFen = 5_000,
        EffectiveFrom = new DateOnly(2026, 1, 1),
        Dealing = Good(unit),
    };
}
