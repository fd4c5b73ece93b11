using Grpc.Core;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;
using Fen = QuotaLedger.Server.Rules.Fen;

namespace QuotaLedger.Tests;

/// <summary>The grant rules: one pure function (<see cref="GrantRules.Decide"/>), checked on its own with no database,
/// and through both paths of the write engine that call it (the coalesced queue and one transaction per write), which
/// must answer every case alike.</summary>
public sealed class GrantRuleTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    /// <summary>01:00 on 2 June in Chengdu, still 1 June in UTC: the policy's date is a China date.</summary>
    private static readonly DateTimeOffset s_now = new(2026, 6, 1, 17, 0, 0, TimeSpan.Zero);

    [Fact]
    public void The_rule_function_decides_each_case_in_its_fixed_order_without_a_database()
    {
        var cases = new (string Case, Func<GrantingFacts> Facts, long Amount, string Expected)[]
        {
            ("applied", () => Facts(), 3_000, "granted 3000 at 5000 bp"),
            ("unknown provider", () => Facts() with { ProviderKnown = false, Contract = null }, 3_000, "UNKNOWN_PROVIDER"),
            ("unknown contract", () => Facts() with { Contract = null }, 3_000, "UNKNOWN_CONTRACT"),
            ("no policy for the year", () => Facts() with { Policy = null }, 3_000, "YEAR_NOT_OPEN"),
            ("the policy in force from today, China time", () => Facts() with { Policy = s_policy with { EffectiveFrom = new DateOnly(2026, 6, 2) } }, 3_000, "granted 3000 at 5000 bp"),
            ("before the policy takes effect", () => Facts() with { Policy = s_policy with { EffectiveFrom = new DateOnly(2026, 6, 3) } }, 3_000, "YEAR_NOT_OPEN"),
            ("innovation voucher", () => Facts() with { Contract = Contract(innovationVoucher: true) }, 3_000, "INNOVATION_VOUCHER_CONFLICT"),
            ("provider suspended", () => Facts() with { Dealing = s_good with { ProviderGood = false } }, 3_000, "PARTY_SUSPENDED"),
            ("unit suspended", () => Facts() with { Dealing = s_good with { UnitGood = false } }, 3_000, "PARTY_SUSPENDED"),
            ("related parties", () => Facts() with { Dealing = s_good with { Related = true } }, 3_000, "RELATED_PARTIES"),
            ("not approved", () => Facts() with { Dealing = s_good with { Approved = false } }, 3_000, "UNIT_NOT_APPROVED"),

            // The ratio rule: self-controllable or other, plus the SME bonus; the contract's quota is its amount times it.
            ("other than self-controllable", () => Facts() with { Contract = Contract(selfControllable: false) }, 3_000, "granted 3000 at 3000 bp"),
            ("self-controllable for an SME", () => Facts() with { Sme = true }, 3_000, "granted 3000 at 6000 bp"),
            ("other for an SME", () => Facts() with { Contract = Contract(selfControllable: false), Sme = true }, 3_000, "granted 3000 at 4000 bp"),

            // The contract's quota: 100,000 fen at 50% is 50,000; at 30%, 30,000.
            ("up to the contract's quota", () => Facts(committed: 47_000), 3_000, "granted 3000 at 5000 bp"),
            ("past the contract's quota", () => Facts(committed: 47_001), 3_000, "CONTRACT_QUOTA_EXCEEDED"),
            ("past the quota at the other ratio", () => Facts(committed: 27_001) with { Contract = Contract(selfControllable: false) }, 3_000, "CONTRACT_QUOTA_EXCEEDED"),

            // The unit-year cap counts open grants plus what is deducted.
            ("up to the unit-year cap", () => Facts(grantedOpen: 6_000, deducted: 1_000), 3_000, "granted 3000 at 5000 bp"),
            ("past the unit-year cap", () => Facts(grantedOpen: 6_000, deducted: 1_001), 3_000, "UNIT_YEAR_CAP_EXCEEDED"),

            ("pool never funded", () => Facts() with { Pool = null }, 3_000, "BUDGET_EXHAUSTED"),
            ("pool short", () => Facts(pool: 2_999), 3_000, "BUDGET_EXHAUSTED"),
            ("all the pool holds", () => Facts(pool: 3_000), 3_000, "granted 3000 at 5000 bp"),

            // A due grant's quota counts as returned: the facts give the contract's commitment and the pool net of it,
            // and the rules read those, not the contract row's granted figure.
            ("a due grant's quota back to the contract and the pool",
                () => Facts(committed: 50_000 - 50_000, pool: 0 + 50_000) with { Contract = Contract(granted: 50_000) }, 3_000, "granted 3000 at 5000 bp"),

            // Several rules broken at once: the first in the order answers.
            ("unknown contract, nothing else read", () => Facts(committed: 50_000, pool: 0) with { Contract = null, Policy = null }, 3_000, "UNKNOWN_CONTRACT"),
            ("no policy and not approved", () => Facts() with { Policy = null, Dealing = s_good with { Approved = false } }, 3_000, "YEAR_NOT_OPEN"),
            ("before the policy and an innovation voucher",
                () => Facts() with { Policy = s_policy with { EffectiveFrom = new DateOnly(2026, 6, 3) }, Contract = Contract(innovationVoucher: true) }, 3_000, "YEAR_NOT_OPEN"),
            ("innovation voucher and suspended", () => Facts() with { Contract = Contract(innovationVoucher: true), Dealing = s_good with { UnitGood = false } }, 3_000, "INNOVATION_VOUCHER_CONFLICT"),
            ("provider and unit suspended, related, not approved",
                () => Facts() with { Dealing = s_good with { ProviderGood = false, UnitGood = false, Related = true, Approved = false } }, 3_000, "PARTY_SUSPENDED"),
            ("related and not approved", () => Facts() with { Dealing = s_good with { Related = true, Approved = false } }, 3_000, "RELATED_PARTIES"),
            ("not approved and past every figure", () => Facts(committed: 50_000, grantedOpen: 10_000, pool: 0) with { Dealing = s_good with { Approved = false } }, 3_000, "UNIT_NOT_APPROVED"),
            ("past the contract's quota, the cap and the pool", () => Facts(committed: 50_000, grantedOpen: 10_000, pool: 0), 3_000, "CONTRACT_QUOTA_EXCEEDED"),
            ("past the cap, the pool never funded", () => Facts(grantedOpen: 10_000) with { Pool = null }, 3_000, "UNIT_YEAR_CAP_EXCEEDED"),
        };

        foreach (var (name, facts, amount, expected) in cases)
        {
            var decision = GrantRules.Decide(new GrantCall("PROVIDER", "C-1", new Fen(amount), "R-1", "PROVIDER"), facts(), s_now);
            var answer = decision.Refusal is { } refusal ? refusal.Reason.Word() : $"granted {amount} at {decision.Ratio.Value} bp";
            Assert.True(expected == answer, $"{name}: expected {expected}, got {answer}");
            if (decision.Refusal is null)
            {
                // One calendar month later, China time (the validity rule), and the quota the ratio gives the contract.
                Assert.True(new DateTimeOffset(2026, 7, 1, 17, 0, 0, TimeSpan.Zero) == decision.ExpiresAt, $"{name}: expires at {decision.ExpiresAt:u}");
                Assert.True(new Fen(100_000).ShareAt(decision.Ratio) == decision.ContractQuota, $"{name}: quota {decision.ContractQuota}");
            }
        }
    }

    [Fact]
    public async Task Both_grant_paths_answer_the_table_of_cases_alike()
    {
        var start = new DateTimeOffset(2026, 6, 5, 2, 0, 0, TimeSpan.Zero);
        await using var coalesced = fixture.StartServer(start);
        await using var oneByOne = fixture.StartServer(start, settings: new Dictionary<string, string?> { ["Deductions:Coalesce"] = "false" });

        var expected = new List<(string, string)>
        {
            ("applied", "granted 3000 at 5000 bp"),
            ("replayed", "granted 3000 at 5000 bp"),
            ("request id reused", "REQUEST_ID_REUSED"),
            ("up to the contract's quota", "granted 7000 at 5000 bp"),
            ("past the contract's quota", "CONTRACT_QUOTA_EXCEEDED"),
            ("other than self-controllable", "granted 1000 at 3000 bp"),
            ("self-controllable for an SME", "granted 1000 at 6000 bp"),
            ("other for an SME", "granted 1000 at 4000 bp"),
            ("unknown provider", "UNKNOWN_PROVIDER"),
            ("unknown contract", "UNKNOWN_CONTRACT"),
            ("innovation voucher", "INNOVATION_VOUCHER_CONFLICT"),
            ("unit suspended", "PARTY_SUSPENDED"),
            ("provider blacklisted", "PARTY_SUSPENDED"),
            ("related parties", "RELATED_PARTIES"),
            ("approval withdrawn", "UNIT_NOT_APPROVED"),
            ("no policy for the year", "YEAR_NOT_OPEN"),
            ("before the policy takes effect", "YEAR_NOT_OPEN"),
            ("pool never funded", "BUDGET_EXHAUSTED"),
            ("up to the unit-year cap", "granted 10000 at 5000 bp"),
            ("past the unit-year cap", "UNIT_YEAR_CAP_EXCEEDED"),
            ("more than the pool holds", "BUDGET_EXHAUSTED"),
            ("all the pool holds", "granted 5000 at 5000 bp"),
            ("pool empty", "BUDGET_EXHAUSTED"),
            ("the contract's quota used up", "CONTRACT_QUOTA_EXCEEDED"),
            ("the pool back from due grants", "granted 5000 at 5000 bp"),
            ("the contract's quota and the cap back from a due grant", "granted 10000 at 5000 bp"),
        };
        Assert.Equal(expected, await RunTableAsync(coalesced, 2031));
        Assert.Equal(expected, await RunTableAsync(oneByOne, 2032));
        await Books.AssertHoldAsync(coalesced);
    }

    /// <summary>The table on one server: first in 2026 (the fixture's funded year), then in a year of the run's own,
    /// whose policy, pool and cap it sets small enough to exhaust.</summary>
    private static async Task<List<(string, string)>> RunTableAsync(LedgerServer server, int year)
    {
        var answers = new List<(string, string)>();
        async Task<GrantResponse?> Record(string name, Func<Task<GrantResponse>> call)
        {
            try
            {
                var response = await call();
                answers.Add((name, $"granted {response.AmountFen} at {response.RatioBp} bp"));
                return response;
            }
            catch (RpcException e)
            {
                answers.Add((name, Refusal.ReasonOf(e)));
                return null;
            }
        }

        Task<GrantResponse> Send(GrantRequest request) => server.Ledger.GrantAsync(request).ResponseAsync;

        // 20,000 fen at 50%: a quota of 10,000.
        var deal = await server.NewDealAsync(contractAmountFen: 20_000);
        var first = deal.GrantRequest(3_000);
        var applied = await Record("applied", () => Send(first));
        var replayed = await Record("replayed", () => Send(first));
        Assert.Equal(applied?.GrantId, replayed?.GrantId);
        var reused = deal.GrantRequest(4_000);
        reused.RequestId = first.RequestId;
        await Record("request id reused", () => Send(reused));
        await Record("up to the contract's quota", () => server.GrantAsync(deal, 7_000));
        await Record("past the contract's quota", () => server.GrantAsync(deal, 1));

        var other = await server.NewDealAsync(contractAmountFen: 20_000, selfControllable: false);
        await Record("other than self-controllable", () => server.GrantAsync(other, 1_000));
        var sme = await server.NewDealAsync(contractAmountFen: 20_000, sme: true);
        await Record("self-controllable for an SME", () => server.GrantAsync(sme, 1_000));
        var otherSme = await server.NewDealAsync(contractAmountFen: 20_000, selfControllable: false, sme: true);
        await Record("other for an SME", () => server.GrantAsync(otherSme, 1_000));

        await Record("unknown provider", () => server.GrantAsync(deal with { Provider = TestUscc.New() }, 1_000));
        await Record("unknown contract", () => server.GrantAsync(deal with { ContractNo = "C-missing" }, 1_000));
        var voucher = await server.NewContractAsync(deal.Provider, deal.Unit, usesInnovationVoucher: true);
        await Record("innovation voucher", () => server.GrantAsync(deal with { ContractNo = voucher }, 1_000));

        var suspendedUnit = await server.NewDealAsync();
        await server.Admin.SetStandingAsync(Standing(server, suspendedUnit.Unit, V1.Standing.Suspended));
        await Record("unit suspended", () => server.GrantAsync(suspendedUnit, 1_000));
        var blacklisted = await server.NewDealAsync();
        await server.Admin.SetStandingAsync(Standing(server, blacklisted.Provider, V1.Standing.Blacklisted));
        await Record("provider blacklisted", () => server.GrantAsync(blacklisted, 1_000));

        var related = await server.NewDealAsync();
        await server.Registry.DeclareRelatedPartyAsync(new DeclareRelatedPartyRequest { RequestId = Ids.New(), ProviderUscc = related.Provider, UnitUscc = related.Unit, Reason = "same owner" });
        await Record("related parties", () => server.GrantAsync(related, 1_000));

        var withdrawn = await server.NewDealAsync();
        await server.ApproveAsync(withdrawn.Provider, withdrawn.Unit, approve: false);
        await Record("approval withdrawn", () => server.GrantAsync(withdrawn, 1_000));

        // The run's own year: no policy yet, then one that takes effect on 1 March, then its pool funded with 15,000
        // and a unit-year cap of 10,000.
        server.Clock.SetUtcNow(new DateTimeOffset(year, 2, 1, 2, 0, 0, TimeSpan.Zero));
        var capped = await server.NewDealAsync(contractAmountFen: 20_000);
        await Record("no policy for the year", () => server.GrantAsync(capped, 1_000));
        await server.Admin.SetYearPolicyAsync(new SetYearPolicyRequest
        {
            RequestId = Ids.New(), Year = year, SelfControllableRatioBp = 5_000, OtherRatioBp = 3_000, SmeBonusBp = 1_000, UnitYearCapFen = 10_000,
            UnitYearFloorFen = 0, YearTotalFen = 1_000_000, ValidityMonths = 1, EffectiveFrom = $"{year}-03-01",
        });
        await Record("before the policy takes effect", () => server.GrantAsync(capped, 1_000));
        server.Clock.SetUtcNow(new DateTimeOffset(year, 3, 1, 2, 0, 0, TimeSpan.Zero));
        await Record("pool never funded", () => server.GrantAsync(capped, 1_000));
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = year, AmountFen = 15_000 });

        await Record("up to the unit-year cap", () => server.GrantAsync(capped, 10_000));
        var roomier = await server.NewContractAsync(capped.Provider, capped.Unit, amountFen: 1_000_000);
        await Record("past the unit-year cap", () => server.GrantAsync(capped with { ContractNo = roomier }, 1));
        var drawing = await server.NewDealAsync(contractAmountFen: 1_000_000);
        await Record("more than the pool holds", () => server.GrantAsync(drawing, 5_001));
        await Record("all the pool holds", () => server.GrantAsync(drawing, 5_000));
        await Record("pool empty", () => server.GrantAsync(drawing, 1));
        await Record("the contract's quota used up", () => server.GrantAsync(capped, 1));

        // Both grants are due a calendar month later; no expiry pass runs, and what they hold counts as returned.
        server.Clock.Advance(TimeSpan.FromDays(32));
        await Record("the pool back from due grants", () => server.GrantAsync(drawing, 5_000));
        await Record("the contract's quota and the cap back from a due grant", () => server.GrantAsync(capped, 10_000));
        return answers;
    }

    private static SetStandingRequest Standing(LedgerServer server, string uscc, Standing standing) =>
        new() { RequestId = Ids.New(), Uscc = uscc, Standing = standing, Reason = $"inspection at {server.Clock.GetUtcNow():u}" };

    private static readonly Dealing s_good = new("PROVIDER", "UNIT", ProviderGood: true, UnitGood: true, Related: false, Approved: true);

    private static readonly VoucherPolicy s_policy = VoucherPolicy.Chengdu2026 with { UnitYearCap = new Fen(10_000) };

    /// <summary>The facts of a grant that every rule lets through: a 100,000 fen self-controllable contract of a
    /// non-SME unit (a quota of 50,000 at 50%), a cap of 10,000 and a pool of 20,000.</summary>
    private static GrantingFacts Facts(long committed = 0, long grantedOpen = 0, long deducted = 0, long pool = 20_000) => new()
    {
        Year = 2026,
        ProviderKnown = true,
        Contract = Contract(granted: committed),
        Policy = s_policy,
        UnitYearId = 5,
        Dealing = s_good,
        Sme = false,
        ContractCommitted = new Fen(committed),
        Figures = new UnitYearFigures("UNIT", 2026, s_policy.UnitYearCap, new Fen(grantedOpen), new Fen(deducted), Fen.Zero),
        Pool = new Fen(pool),
    };

    private static ContractRow Contract(bool selfControllable = true, bool innovationVoucher = false, long granted = 0) => new()
    {
        Id = 3,
        ContractNo = "C-1",
        ProviderUscc = "PROVIDER",
        UnitUscc = "UNIT",
        AmountFen = 100_000,
        SelfControllable = selfControllable,
        UsesInnovationVoucher = innovationVoucher,
        GrantedFen = granted,
    };
}
