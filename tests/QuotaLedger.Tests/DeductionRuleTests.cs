using Grpc.Core;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;
using Fen = QuotaLedger.Server.Rules.Fen;

namespace QuotaLedger.Tests;

/// <summary>The deduction rules: one pure function, checked on its own with no database, and through both paths that
/// call it (the coalesced queue and one transaction per deduction), which must answer every case alike.</summary>
public sealed class DeductionRuleTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly DateTimeOffset s_now = new(2026, 6, 2, 1, 0, 0, TimeSpan.Zero);

    [Fact]
    public void The_rule_function_decides_each_case_in_its_fixed_order_without_a_database()
    {
        var cases = new (string Case, Func<(InvoiceClaim, GrantFacts?, ContractFacts?, bool)> Facts, string Expected)[]
        {
            ("applied", () => (Claim(4_000), Grant(), Contract(), false), "2000 of 2000"),
            ("capped at what the grant holds", () => (Claim(40_000), Grant(balance: 5_000), Contract(), false), "5000 of 20000"),
            ("unknown grant", () => (Claim(4_000), null, null, false), "UNKNOWN_GRANT"),
            ("another provider's grant", () => (Claim(4_000) with { Provider = "OTHER" }, Grant(), Contract(), false), "UNKNOWN_GRANT"),
            ("expired, before any pass", () => (Claim(4_000), Grant(expiresAt: s_now), Contract(), false), "GRANT_EXPIRED"),
            ("released", () => (Claim(4_000), Grant(state: GrantState.Released), Contract(), false), "GRANT_CLOSED"),
            ("provider suspended", () => (Claim(4_000), Grant(dealing: s_good with { ProviderGood = false }), Contract(), false), "PARTY_SUSPENDED"),
            ("unit blacklisted", () => (Claim(4_000), Grant(dealing: s_good with { UnitGood = false }), Contract(), false), "PARTY_SUSPENDED"),
            ("related parties", () => (Claim(4_000), Grant(dealing: s_good with { Related = true }), Contract(), false), "RELATED_PARTIES"),
            ("approval withdrawn", () => (Claim(4_000), Grant(dealing: s_good with { Approved = false }), Contract(), false), "UNIT_NOT_APPROVED"),
            ("invoice before the policy", () => (Claim(4_000) with { InvoiceDate = new DateOnly(2026, 5, 12) }, Grant(), Contract(), false), "YEAR_NOT_OPEN"),
            ("invoice seen", () => (Claim(4_000), Grant(), Contract(), true), "DUPLICATE_INVOICE"),
            ("share rounds to 0", () => (Claim(1), Grant(), Contract(), false), "INVALID_AMOUNT"),
            ("grant empty", () => (Claim(4_000), Grant(balance: 0), Contract(), false), "GRANT_EMPTY"),
            ("past the contract", () => (Claim(4_000), Grant(), Contract(invoiced: 97_000), false), "INVOICE_EXCEEDS_CONTRACT"),
            // Several rules broken at once: the first in the order answers.
            ("expired and suspended", () => (Claim(4_000), Grant(expiresAt: s_now, dealing: s_good with { UnitGood = false }), Contract(), true), "GRANT_EXPIRED"),
            ("suspended and a seen invoice", () => (Claim(4_000), Grant(dealing: s_good with { UnitGood = false }), Contract(), true), "PARTY_SUSPENDED"),
        };

        foreach (var (name, facts, expected) in cases)
        {
            var (claim, grant, contract, seen) = facts();
            var decision = Deductions.Decide(claim, grant, contract, seen ? new EarlierDeduction(41, 42) : null, s_now);
            var answer = decision.Refusal is { } refusal ? refusal.Reason.Word() : $"{decision.Applied.Value} of {decision.Requested.Value}";
            Assert.True(expected == answer, $"{name}: expected {expected}, got {answer}");
            if (answer == "DUPLICATE_INVOICE")
            {
                // The refusal names the deduction that took the invoice.
                Assert.Equal(new Dictionary<string, string> { ["deductionId"] = "41", ["grantId"] = "42", ["invoiceNo"] = claim.InvoiceNo },
                    decision.Refusal!.Metadata);
            }
        }
    }

    [Fact]
    public async Task Both_deduction_paths_answer_the_table_of_cases_alike()
    {
        var start = new DateTimeOffset(2026, 6, 5, 2, 0, 0, TimeSpan.Zero);
        await using var coalesced = fixture.StartServer(start);
        await using var oneByOne = fixture.StartServer(start, settings: new Dictionary<string, string?> { ["Deductions:Coalesce"] = "false" });

        var expected = new List<(string, string)>
        {
            ("applied", "2000 of 2000"),
            ("capped at what the grant holds", "8000 of 10000"),
            ("grant empty", "GRANT_EMPTY"),
            ("first of an invoice", "500 of 500"),
            ("the invoice again", "DUPLICATE_INVOICE"),
            ("share rounds to 0", "INVALID_AMOUNT"),
            ("past the contract", "INVOICE_EXCEEDS_CONTRACT"),
            ("another provider's grant", "UNKNOWN_GRANT"),
            ("unknown grant", "UNKNOWN_GRANT"),
            ("invoice before the policy", "YEAR_NOT_OPEN"),
            ("released", "GRANT_CLOSED"),
            ("unit suspended", "PARTY_SUSPENDED"),
            ("provider blacklisted", "PARTY_SUSPENDED"),
            ("related parties", "RELATED_PARTIES"),
            ("approval withdrawn", "UNIT_NOT_APPROVED"),
            ("request id reused", "REQUEST_ID_REUSED"),
            ("replayed", "500 of 500"),
            ("expired", "GRANT_EXPIRED"),
        };
        Assert.Equal(expected, await RunTableAsync(coalesced));
        Assert.Equal(expected, await RunTableAsync(oneByOne));
        await Books.AssertHoldAsync(coalesced);
    }

    private static async Task<List<(string, string)>> RunTableAsync(LedgerServer server)
    {
        var answers = new List<(string, string)>();
        async Task Record(string name, Func<Task<DeductResponse>> call)
        {
            try
            {
                var response = await call();
                answers.Add((name, $"{response.AppliedFen} of {response.RequestedFen}"));
            }
            catch (RpcException e)
            {
                answers.Add((name, Refusal.ReasonOf(e)));
            }
        }

        Task<DeductResponse> Send(DeductRequest request) => server.Ledger.DeductAsync(request).ResponseAsync;

        var deal = await server.NewDealAsync(contractAmountFen: 1_000_000);
        var grant = await server.GrantAsync(deal, 10_000);
        await Record("applied", () => server.DeductAsync(deal, grant.GrantId, 4_000));
        await Record("capped at what the grant holds", () => server.DeductAsync(deal, grant.GrantId, 20_000));
        await Record("grant empty", () => server.DeductAsync(deal, grant.GrantId, 1_000));

        var small = await server.NewDealAsync(contractAmountFen: 20_000);
        var smallGrant = await server.GrantAsync(small, 10_000);
        var invoice = "TBL-" + Ids.New()[..8];
        var first = small.DeductRequest(smallGrant.GrantId, 1_000, invoice, server.Today());
        await Record("first of an invoice", () => Send(first));
        await Record("the invoice again", () => server.DeductAsync(small, smallGrant.GrantId, 1_000, invoice));
        await Record("share rounds to 0", () => server.DeductAsync(small, smallGrant.GrantId, 1));
        await Record("past the contract", () => server.DeductAsync(small, smallGrant.GrantId, 19_001));
        await Record("another provider's grant", () => server.DeductAsync(small with { Provider = deal.Provider }, smallGrant.GrantId, 1_000));
        await Record("unknown grant", () => server.DeductAsync(small, 999_999_999, 1_000));
        await Record("invoice before the policy", () => Send(small.DeductRequest(smallGrant.GrantId, 1_000, invoiceDate: "2026-05-12")));

        var released = await server.NewDealAsync();
        var releasedGrant = await server.GrantAsync(released, 10_000);
        await server.Ledger.ReleaseAsync(new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = released.Provider, GrantId = releasedGrant.GrantId, StatementRef = "JS-T" });
        await Record("released", () => server.DeductAsync(released, releasedGrant.GrantId, 1_000));

        await Record("unit suspended", () => RefusedAfterAsync(server, s => s.Admin.SetStandingAsync(Standing(s, deal.Unit, V1.Standing.Suspended)).ResponseAsync,
            () => server.DeductAsync(deal, grant.GrantId, 1_000), s => s.Admin.SetStandingAsync(Standing(s, deal.Unit, V1.Standing.Good)).ResponseAsync));
        await Record("provider blacklisted", () => RefusedAfterAsync(server, s => s.Admin.SetStandingAsync(Standing(s, deal.Provider, V1.Standing.Blacklisted)).ResponseAsync,
            () => server.DeductAsync(deal, grant.GrantId, 1_000), s => s.Admin.SetStandingAsync(Standing(s, deal.Provider, V1.Standing.Good)).ResponseAsync));

        var related = await server.NewDealAsync();
        var relatedGrant = await server.GrantAsync(related, 10_000);
        await server.Registry.DeclareRelatedPartyAsync(new DeclareRelatedPartyRequest { RequestId = Ids.New(), ProviderUscc = related.Provider, UnitUscc = related.Unit, Reason = "same owner" });
        await Record("related parties", () => server.DeductAsync(related, relatedGrant.GrantId, 1_000));

        var withdrawn = await server.NewDealAsync();
        var withdrawnGrant = await server.GrantAsync(withdrawn, 10_000);
        await server.ApproveAsync(withdrawn.Provider, withdrawn.Unit, approve: false);
        await Record("approval withdrawn", () => server.DeductAsync(withdrawn, withdrawnGrant.GrantId, 1_000));

        var reused = small.DeductRequest(smallGrant.GrantId, 2_000, invoiceDate: server.Today());
        reused.RequestId = first.RequestId;
        await Record("request id reused", () => Send(reused));
        await Record("replayed", () => Send(first));

        server.Clock.Advance(TimeSpan.FromDays(31));
        await Record("expired", () => server.DeductAsync(small, smallGrant.GrantId, 1_000));
        return answers;
    }

    private static async Task<DeductResponse> RefusedAfterAsync(LedgerServer server, Func<LedgerServer, Task> before, Func<Task<DeductResponse>> call, Func<LedgerServer, Task> after)
    {
        await before(server);
        try
        {
            return await call();
        }
        finally
        {
            await after(server);
        }
    }

    private static SetStandingRequest Standing(LedgerServer server, string uscc, Standing standing) =>
        new() { RequestId = Ids.New(), Uscc = uscc, Standing = standing, Reason = $"inspection at {server.Clock.GetUtcNow():u}" };

    private static readonly Dealing s_good = new("PROVIDER", "UNIT", ProviderGood: true, UnitGood: true, Related: false, Approved: true);

    private static InvoiceClaim Claim(long amountFen) => new("PROVIDER", 7, "INV-1", new Fen(amountFen), new DateOnly(2026, 6, 1));

    private static GrantFacts Grant(long balance = 10_000, GrantState state = GrantState.Open, DateTimeOffset? expiresAt = null, Dealing? dealing = null) => new()
    {
        Id = 7,
        ContractId = 3,
        UnitYearId = 5,
        AccountId = 11,
        Provider = "PROVIDER",
        Unit = "UNIT",
        Year = 2026,
        RatioBp = 5_000,
        State = state,
        ExpiresAt = expiresAt ?? s_now.AddDays(10),
        Dealing = dealing ?? s_good,
        EffectiveFrom = new DateOnly(2026, 5, 13),
        BalanceFen = balance,
    };

    private static ContractFacts Contract(long invoiced = 0) => new() { Id = 3, AmountFen = 100_000, InvoicedFen = invoiced };
}
