using Grpc.Core;
using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The fast path: concurrent deductions of a unit-year applied together in one transaction, each with its
/// own outcome, and the row lock still what makes several server instances safe.</summary>
public sealed class CoalescingTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private readonly LedgerServer _server = fixture.Server;

    [Fact]
    public async Task A_coalesced_batch_answers_each_deduction_on_its_own()
    {
        // Grant A holds 10.5 shares of 500 fen once PRE is deducted; grant B (same unit-year, a small contract) has room.
        var deal = await _server.NewDealAsync();
        var grantA = await _server.GrantAsync(deal, (11 * 500) + 250);
        var smallContract = await _server.NewContractAsync(deal.Provider, deal.Unit, amountFen: 1_000_000);
        var grantB = await _server.Ledger.GrantAsync(new GrantRequest
        {
            RequestId = Ids.New(), ProviderUscc = deal.Provider, ContractNo = smallContract, AmountFen = 10_000,
        });
        var pre = deal.DeductRequest(grantA.GrantId, 1_000, "PRE-" + Ids.New()[..8]);
        var preResponse = await _server.Ledger.DeductAsync(pre);
        var otherProvider = await _server.NewProviderAsync();

        var valid = Enumerable.Range(0, 12).Select(_ => deal.DeductRequest(grantA.GrantId, 1_000)).ToList();
        var sameInvoice = "DUP-" + Ids.New()[..8];
        var calls = new List<(string Case, DeductRequest Request)>();
        calls.AddRange(valid.Select(r => ("valid", r)));
        calls.AddRange(valid.Take(3).Select(r => ("resent", r)));
        calls.Add(("replay of committed", pre));
        calls.Add(("id reused", Reusing(pre, deal.DeductRequest(grantA.GrantId, 1_000))));
        calls.Add(("invoice already deducted", deal.DeductRequest(grantB.GrantId, 1_000, pre.InvoiceNo)));
        calls.Add(("same invoice twice", deal.DeductRequest(grantB.GrantId, 1_000, sameInvoice)));
        calls.Add(("same invoice twice", deal.DeductRequest(grantB.GrantId, 1_000, sameInvoice)));
        calls.Add(("share rounds to zero", deal.DeductRequest(grantB.GrantId, 1)));
        calls.Add(("past the contract", deal.DeductRequest(grantB.GrantId, 2_000_000)));
        calls.Add(("not yours", WithProvider(deal.DeductRequest(grantA.GrantId, 1_000), otherProvider)));
        calls.Add(("unknown grant", deal.DeductRequest(999_999_999, 1_000)));

        // Hold the unit-year's lock, as another server's transaction would, while every call arrives and queues.
        var outcomes = await WhileUnitYearLockedAsync(grantA.GrantId, () => Task.WhenAll(calls.Select(c => OutcomeAsync(c.Request))));

        var byCase = calls.Zip(outcomes, (c, o) => (c.Case, c.Request, Outcome: o)).ToList();
        var applied = byCase.Where(c => c.Case == "valid").Select(c => c.Outcome).ToList();
        Assert.Equal(10, applied.Count(o => o.Response?.AppliedFen == 500));
        Assert.Equal(1, applied.Count(o => o.Response?.AppliedFen == 250));
        Assert.Equal(1, applied.Count(o => o.Reason == "GRANT_EMPTY"));
        foreach (var resent in byCase.Where(c => c.Case == "resent"))
        {
            Assert.Equal(byCase.First(c => c.Case == "valid" && c.Request == resent.Request).Outcome, resent.Outcome);
        }

        Assert.Equal(preResponse, Single(byCase, "replay of committed").Response);
        Assert.Equal("REQUEST_ID_REUSED", Single(byCase, "id reused").Reason);
        Assert.Equal("DUPLICATE_INVOICE", Single(byCase, "invoice already deducted").Reason);
        var twice = byCase.Where(c => c.Case == "same invoice twice").Select(c => c.Outcome).ToList();
        Assert.Equal(500, Assert.Single(twice, o => o.Response is not null).Response!.AppliedFen);
        Assert.Equal("DUPLICATE_INVOICE", Assert.Single(twice, o => o.Response is null).Reason);
        Assert.Equal("INVALID_AMOUNT", Single(byCase, "share rounds to zero").Reason);
        Assert.Equal("INVOICE_EXCEEDS_CONTRACT", Single(byCase, "past the contract").Reason);
        Assert.Equal("UNKNOWN_GRANT", Single(byCase, "not yours").Reason);
        Assert.Equal("UNKNOWN_GRANT", Single(byCase, "unknown grant").Reason);

        // Each answer is consistent with the order the batch applied them in: remaining balances are distinct, and the
        // unit-year figures in the last response are the ledger's.
        var remaining = applied.Where(o => o.Response is not null).Select(o => o.Response!.GrantRemainingFen).ToList();
        Assert.Equal(remaining.Count, remaining.Distinct().Count());
        Assert.Contains(0, remaining);
        var unitYear = await _server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = deal.Unit, Year = 2026 });
        Assert.Equal(500 + (10 * 500) + 250 + 500, unitYear.DeductedFen);
        Assert.Contains(outcomes, o => o.Response?.UnitYear.Equals(unitYear) == true);
        Assert.Equal(0, (await _server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantA.GrantId })).RemainingFen);

        // Applied together: the deductions that waited on the lock were written by at most a few transactions.
        var transactions = await TransactionsWritingAsync(grantA.GrantId, grantB.GrantId, exceptEntryOf: preResponse.DeductionId);
        Assert.InRange(transactions, 1, 3);

        // Every id answers the same again, refusals included.
        foreach (var (_, request, outcome) in byCase)
        {
            Assert.Equal(outcome, await OutcomeAsync(request));
        }

        var verdict = await _server.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.True(verdict.Ok, verdict.Problem);
        await Books.AssertBalancedAsync(_server);
    }

    [Fact]
    public async Task A_coalesced_batch_applies_every_eligibility_rule_to_each_of_its_deductions()
    {
        // One unit, five providers, every grant in the unit's one unit-year: one lock, one batch.
        var unit = await _server.NewUnitAsync();
        async Task<(Deal Deal, long GrantId)> DealAsync()
        {
            var provider = await _server.NewProviderAsync();
            await _server.ApproveAsync(provider, unit);
            var deal = new Deal(provider, unit, await _server.NewContractAsync(provider, unit));
            return (deal, (await _server.GrantAsync(deal, 10_000)).GrantId);
        }

        var good = await DealAsync();
        var related = await DealAsync();
        var suspended = await DealAsync();
        var withdrawn = await DealAsync();
        var alsoGood = await DealAsync();
        await _server.Registry.DeclareRelatedPartyAsync(new DeclareRelatedPartyRequest { RequestId = Ids.New(), ProviderUscc = related.Deal.Provider, UnitUscc = unit, Reason = "same owner" });
        await _server.Admin.SetStandingAsync(new SetStandingRequest { RequestId = Ids.New(), Uscc = suspended.Deal.Provider, Standing = Standing.Suspended, Reason = "inspection" });
        await _server.ApproveAsync(withdrawn.Deal.Provider, unit, approve: false);

        var calls = new List<(string Expected, DeductRequest Request)>
        {
            ("applied", good.Deal.DeductRequest(good.GrantId, 1_000)),
            ("RELATED_PARTIES", related.Deal.DeductRequest(related.GrantId, 1_000)),
            ("applied", good.Deal.DeductRequest(good.GrantId, 1_000)),
            ("PARTY_SUSPENDED", suspended.Deal.DeductRequest(suspended.GrantId, 1_000)),
            ("UNIT_NOT_APPROVED", withdrawn.Deal.DeductRequest(withdrawn.GrantId, 1_000)),
            ("YEAR_NOT_OPEN", good.Deal.DeductRequest(good.GrantId, 1_000, invoiceDate: "2026-05-12")),
            ("applied", alsoGood.Deal.DeductRequest(alsoGood.GrantId, 1_000)),
            ("applied", good.Deal.DeductRequest(good.GrantId, 1_000)),
        };

        var outcomes = await WhileUnitYearLockedAsync(good.GrantId, () => Task.WhenAll(calls.Select(c => OutcomeAsync(c.Request))));

        Assert.Equal(calls.Select(c => c.Expected), outcomes.Select(o => o.Response is null ? o.Reason : "applied"));
        var remaining = outcomes.Where((o, i) => o.Response is not null && calls[i].Request.GrantId == good.GrantId).Select(o => o.Response!.GrantRemainingFen).Order();
        Assert.Equal([8_500L, 9_000L, 9_500L], remaining);
        Assert.InRange(await TransactionsWritingAsync(good.GrantId, alsoGood.GrantId, exceptEntryOf: 0), 1, 2);
        await _server.Admin.SetStandingAsync(new SetStandingRequest { RequestId = Ids.New(), Uscc = suspended.Deal.Provider, Standing = Standing.Good, Reason = "cleared" });
        await Books.AssertHoldAsync(_server);
    }

    [Fact]
    public async Task Two_instances_coalescing_on_one_grant_never_overdraw_it()
    {
        await using var other = fixture.StartServer(LedgerFixture.Now);
        var deal = await _server.NewDealAsync();
        const long share = 500;
        var grant = await _server.GrantAsync(deal, 200 * share);

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 300).Select(i =>
            OutcomeAsync(deal.DeductRequest(grant.GrantId, 1_000), i % 2 == 0 ? _server : other)));

        var applied = outcomes.Where(o => o.Response is not null).Select(o => o.Response!).ToList();
        Assert.Equal(200, applied.Count);
        Assert.All(applied, r => Assert.Equal(share, r.AppliedFen));
        Assert.Equal(100, outcomes.Count(o => o.Reason == "GRANT_EMPTY"));
        Assert.Equal(Enumerable.Range(0, 200).Select(i => i * share).ToHashSet(), applied.Select(r => r.GrantRemainingFen).ToHashSet());
        Assert.Equal(200, applied.Select(r => r.DeductionId).Distinct().Count());
        var verdict = await _server.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.True(verdict.Ok, verdict.Problem);
        await Books.AssertBalancedAsync(_server);
    }

    [Fact]
    public async Task One_invoice_raced_into_two_unit_years_on_two_instances_is_deducted_once()
    {
        await using var other = fixture.StartServer(LedgerFixture.Now);
        var first = await _server.NewDealAsync();
        var secondUnit = await _server.NewUnitAsync();
        await _server.ApproveAsync(first.Provider, secondUnit);
        var second = first with { Unit = secondUnit, ContractNo = await _server.NewContractAsync(first.Provider, secondUnit) };
        var grantOne = await _server.GrantAsync(first, 100_000);
        var grantTwo = await _server.GrantAsync(second, 100_000);

        var invoices = Enumerable.Range(0, 40).Select(i => $"X-{i}-{Ids.New()[..8]}").ToList();
        var outcomes = await Task.WhenAll(invoices.SelectMany(invoice => new[]
        {
            OutcomeAsync(first.DeductRequest(grantOne.GrantId, 1_000, invoice), _server),
            OutcomeAsync(second.DeductRequest(grantTwo.GrantId, 1_000, invoice), other),
        }));

        for (var i = 0; i < invoices.Count; i++)
        {
            var pair = new[] { outcomes[2 * i], outcomes[(2 * i) + 1] };
            Assert.Single(pair, o => o.Response?.AppliedFen == 500);
            Assert.Single(pair, o => o.Reason == "DUPLICATE_INVOICE");
        }

        await Books.AssertBalancedAsync(_server);
    }

    [Fact]
    public async Task Without_coalescing_each_deduction_is_its_own_transaction_with_the_same_rules()
    {
        // Thirty transactions queue for one unit-year's row: on a busy machine the last waits longer than the default
        // lock timeout (2 s), which would answer STORE_UNAVAILABLE instead of the rule under test.
        await using var plain = fixture.StartServer(LedgerFixture.Now, settings: new Dictionary<string, string?>
        {
            ["Deductions:Coalesce"] = "false",
            ["Database:LockTimeout"] = "00:01:00",
        });
        var deal = await plain.NewDealAsync();
        var grant = await plain.GrantAsync(deal, (20 * 500) + 100);

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 30).Select(_ => OutcomeAsync(deal.DeductRequest(grant.GrantId, 1_000), plain)));

        Assert.Equal(20, outcomes.Count(o => o.Response?.AppliedFen == 500));
        Assert.Equal(1, outcomes.Count(o => o.Response?.AppliedFen == 100));
        Assert.Equal(9, outcomes.Count(o => o.Reason == "GRANT_EMPTY"));
        Assert.Equal(21, await TransactionsWritingAsync(grant.GrantId, grant.GrantId, exceptEntryOf: 0));
    }

    private sealed record Outcome(DeductResponse? Response, string Reason);

    private async Task<Outcome> OutcomeAsync(DeductRequest request, LedgerServer? server = null)
    {
        try
        {
            return new Outcome(await (server ?? _server).Ledger.DeductAsync(request), "");
        }
        catch (RpcException e)
        {
            return new Outcome(null, Refusal.ReasonOf(e));
        }
    }

    private static Outcome Single(List<(string Case, DeductRequest Request, Outcome Outcome)> byCase, string name) =>
        byCase.Single(c => c.Case == name).Outcome;

    private static DeductRequest Reusing(DeductRequest earlier, DeductRequest request)
    {
        request.RequestId = earlier.RequestId;
        return request;
    }

    private static DeductRequest WithProvider(DeductRequest request, string provider)
    {
        request.ProviderUscc = provider;
        return request;
    }

    /// <summary>Runs <paramref name="calls"/> while a connection of the test holds the grant's unit-year row lock, and
    /// releases it once the calls have had time to arrive; then waits for their answers.</summary>
    private async Task<T> WhileUnitYearLockedAsync<T>(long grantId, Func<Task<T>> calls)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand(
            "SELECT id FROM unit_years WHERE id = (SELECT unit_year_id FROM grants WHERE id = $1) FOR UPDATE", connection, transaction))
        {
            lockRow.Parameters.Add(new NpgsqlParameter { Value = grantId });
            Assert.NotNull(await lockRow.ExecuteScalarAsync());
        }

        var answers = calls();
        // The in-process server receives every call well within this; none can be answered before the lock goes.
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(answers.IsCompleted);
        await transaction.CommitAsync();
        return await answers;
    }

    /// <summary>How many transactions wrote the deduction entries of two grants (PostgreSQL's xmin of each row).</summary>
    private async Task<int> TransactionsWritingAsync(long grantOne, long grantTwo, long exceptEntryOf)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(DISTINCT xmin::text) FROM journal_entries WHERE grant_id IN ($1, $2) AND deduction_id IS NOT NULL AND deduction_id <> $3",
            connection);
        command.Parameters.Add(new NpgsqlParameter { Value = grantOne });
        command.Parameters.Add(new NpgsqlParameter { Value = grantTwo });
        command.Parameters.Add(new NpgsqlParameter { Value = exceptEntryOf });
        return Convert.ToInt32(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
