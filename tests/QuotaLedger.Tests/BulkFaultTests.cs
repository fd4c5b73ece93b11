using Npgsql;
using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QuotaLedger.Tests;

/// <summary>Issue 26: the server killed (SIGKILL, as <c>kill -9</c>) while bulk deductions (DeductMany) are in flight,
/// started again, and every item sent again with its request id. Each item is applied at most once through the crash,
/// and all of them after the retry. Slow: process-level.</summary>
[Collection(SlowTests.Collection), Trait("Category", "Slow")]
public sealed class BulkFaultTests(LedgerFixture fixture, ITestOutputHelper output) : IClassFixture<LedgerFixture>
{
    private const int Grants = 100;
    private const int Calls = 5;
    private const int ItemsPerCall = 2_000;
    private const int Items = Calls * ItemsPerCall;
    private static readonly Fen s_grantAmount = Fen.FromYuan(10_000);
    private static readonly Fen s_invoiceAmount = new(1_000);

    private static readonly UnitMaterial[] s_materials =
    [
        new(MaterialKind.ApplicationForm, "form.pdf"), new(MaterialKind.RegistrationCertificate, "licence.pdf"),
        new(MaterialKind.IntegrityPledge, "pledge.pdf"), new(MaterialKind.CreditReport, "credit.pdf"),
    ];

    private static readonly TimeProvider s_time = TimeProvider.System;

    /// <summary>The ledger's day (China Standard Time) by the real clock, which the server process runs on.</summary>
    private static DateOnly Today => DateOnly.FromDateTime(s_time.GetUtcNow().UtcDateTime.AddHours(8));

    [Fact]
    public async Task A_server_killed_in_the_middle_of_bulk_calls_applies_each_item_at_most_once_and_all_of_them_after_the_retry()
    {
        await using var server = await ServerProcess.StartAsync(fixture.Database);
        string provider;
        List<long> grantIds;
        using (var setup = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = server.Address }))
        {
            (provider, grantIds) = await NewGrantsAsync(setup);
        }

        // Fixed request ids, kept for the retry; each call's items spread over every grant, so that every lane of the
        // engine has work queued from every call when the server dies.
        var invoices = Enumerable.Range(0, Items)
            .Select(k => new InvoiceToDeduct(provider, grantIds[k % Grants], $"BULKFAULT-{k:D5}-{Ids.New()[..8]}", s_invoiceAmount, Today, Ids.New()))
            .ToList();
        var groups = invoices.Chunk(ItemsPerCall).ToList();

        // One attempt per call, with room enough that only the kill ends it: what the crash left is what the retry finds.
        BulkResults<DeductionResult>[] first;
        using (var once = new QuotaLedgerClient(new QuotaLedgerClientOptions
        {
            Address = server.Address,
            BulkItemsPerCall = ItemsPerCall,
            DefaultDeadline = TimeSpan.FromMinutes(5),
            Retry = { MaxAttempts = 1, AttemptTimeout = TimeSpan.FromMinutes(5) },
        }))
        {
            var inFlight = groups.Select(g => once.DeductManyAsync(g)).ToList();
            var allDone = Task.WhenAll(inFlight);
            await UntilCommittedAsync(provider, allDone);
            await server.KillAsync();
            first = await allDone;
        }

        var committedIds = await DeductionIdsAsync(provider);
        var committed = committedIds.Count;
        var firstOutcomes = first.SelectMany(r => r).ToList();
        var appliedFirst = firstOutcomes.Where(o => o.Applied).ToList();
        output.WriteLine($"At the kill: {committed} of {Items} deductions committed, {appliedFirst.Count} answered applied, "
            + $"{firstOutcomes.Count(o => o.Unavailable is not null)} unresolved.");
        // The kill landed in the middle: some items committed, not all (else the test proves nothing).
        Assert.InRange(committed, 1, Items - 1);
        // Before the retry, no item refused: each applied (and so committed) or unresolved, its outcome unknown.
        AssertNone("refused before the retry", firstOutcomes.Where(o => o.Refusal is not null).Select(o => $"{o.RequestId}: {o.Refusal!.Reason} {o.Refusal.Message}"));
        Assert.All(firstOutcomes.Where(o => !o.Applied), o => Assert.True(o.Unavailable!.OutcomeUnknown, o.Unavailable.Message));
        Assert.True(committed >= appliedFirst.Count, $"{appliedFirst.Count} answered applied but {committed} committed.");

        await server.StartAgainAsync();
        BulkResults<DeductionResult>[] retried;
        using (var ledger = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = server.Address }))
        {
            // Every item again, with its request id, the SDK's retries as they are by default.
            retried = await Task.WhenAll(groups.Select(g => ledger.DeductManyAsync(g)));
            var outcomes = retried.SelectMany(r => r).ToList();
            AssertNone("refused", outcomes.Where(o => o.Refusal is not null).Select(o => $"{o.RequestId}: {o.Refusal!.Reason} {o.Refusal.Message}"));
            AssertNone("unresolved", outcomes.Where(o => o.Unavailable is not null).Select(o => $"{o.RequestId}: {o.Unavailable!.Message}"));
            Assert.Equal(invoices.Select(i => i.RequestId), outcomes.Select(o => o.RequestId));
            Assert.All(outcomes, o => Assert.True(o.Applied));

            // An item committed before the kill (answered applied, or, as a killed call answers none of its items, not
            // answered at all) is answered its deduction again, not applied anew.
            var again = outcomes.ToDictionary(o => o.RequestId, o => o.Result!);
            Assert.All(appliedFirst, o => Assert.Equal(o.Result!.DeductionId, again[o.RequestId].DeductionId));
            Assert.All(invoices.Zip(outcomes).Where(p => committedIds.ContainsKey(p.First.InvoiceNo)),
                p => Assert.Equal(committedIds[p.First.InvoiceNo], p.Second.Result!.DeductionId));
            Assert.Equal(Items, outcomes.Select(o => o.Result!.DeductionId).Distinct().Count());

            // Each grant lost exactly what its items were answered applied.
            var appliedByGrant = invoices.Zip(outcomes).GroupBy(p => p.First.GrantId).ToDictionary(g => g.Key, g => g.Sum(p => p.Second.Result!.Applied.Value));
            foreach (var grantId in grantIds)
            {
                var grant = await ledger.GetGrantAsync(grantId);
                Assert.Equal(appliedByGrant[grantId], grant.Deducted.Value);
                Assert.Equal(s_grantAmount.Value - appliedByGrant[grantId], grant.Remaining.Value);
                Assert.Equal(appliedByGrant[grantId], await ScalarAsync("SELECT coalesce(sum(applied_fen), 0)::bigint FROM deductions WHERE grant_id = $1", grantId));
            }
        }

        // In the database: one deduction per invoice, one idempotency record per request id, nothing else.
        Assert.Equal(Items, await ScalarAsync("SELECT count(*) FROM deductions WHERE provider_uscc = $1", provider));
        Assert.Equal(Items, await ScalarAsync("SELECT count(DISTINCT invoice_no) FROM deductions WHERE provider_uscc = $1", provider));
        Assert.Equal(Items, await ScalarAsync("SELECT count(*) FROM idempotency_records WHERE request_id = ANY($1)", invoices.Select(i => i.RequestId!).ToArray()));
        Assert.Equal(Items, await ScalarAsync("SELECT count(DISTINCT request_id) FROM idempotency_records WHERE request_id = ANY($1)", invoices.Select(i => i.RequestId!).ToArray()));
        await Books.AssertHoldAsync(fixture.Server);
    }

    /// <summary>Fails naming how many items were so and the first few in full (a collection's own message cuts each short).</summary>
    private static void AssertNone(string what, IEnumerable<string> items)
    {
        var all = items.ToList();
        Assert.True(all.Count == 0, $"{all.Count} of {Items} items {what}, such as:\n{string.Join("\n", all.Take(3))}");
    }

    /// <summary>Waits until some of the provider's deductions have committed, failing if the calls all ended first (the
    /// load too small for the kill to land mid-way) or after two minutes (a hang, not a measure).</summary>
    private async Task UntilCommittedAsync(string provider, Task allDone)
    {
        var since = s_time.GetTimestamp();
        while (await ScalarAsync("SELECT count(*) FROM deductions WHERE provider_uscc = $1", provider) == 0)
        {
            Assert.False(allDone.IsCompleted, "The bulk calls ended before any deduction committed.");
            Assert.True(s_time.GetElapsedTime(since) < TimeSpan.FromMinutes(2), "Still waiting for the first deduction to commit.");
            await Task.Delay(5);
        }
    }

    /// <summary>The provider's deductions in the database: each invoice number's deduction id.</summary>
    private async Task<Dictionary<string, long>> DeductionIdsAsync(string provider)
    {
        await using var connection = await OpenAsync();
        await using var command = new NpgsqlCommand("SELECT invoice_no, id FROM deductions WHERE provider_uscc = $1", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = provider });
        await using var reader = await command.ExecuteReaderAsync();
        var ids = new Dictionary<string, long>();
        while (await reader.ReadAsync())
        {
            ids.Add(reader.GetString(0), reader.GetInt64(1));
        }

        return ids;
    }

    /// <summary>One bigint the statement reads, with one parameter.</summary>
    private async Task<long> ScalarAsync(string sql, object parameter)
    {
        await using var connection = await OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.Add(new NpgsqlParameter { Value = parameter });
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>The database as its owner, unpooled: the test reads what the server's own connections left.</summary>
    private async Task<NpgsqlConnection> OpenAsync()
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(fixture.Database.ConnectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    /// <summary>One provider and a grant on each of <see cref="Grants"/> units (a unit-year each, so a lane each).</summary>
    private static async Task<(string Provider, List<long> GrantIds)> NewGrantsAsync(IQuotaLedgerClient ledger)
    {
        var provider = TestUscc.New();
        await ledger.RegisterProviderAsync(provider, "Bulk fault test provider", ["IDC-B1-20260001"]);
        var contracts = new string[Grants];
        await Parallel.ForAsync(0, Grants, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, ct) =>
        {
            var unit = TestUscc.New();
            await ledger.RegisterUnitAsync(new UnitRegistration(unit, "Bulk fault test unit", UnitKind.Enterprise, Materials: s_materials), cancellationToken: ct);
            await ledger.ReviewUnitAsync(provider, unit, approve: true, cancellationToken: ct);
            var terms = new ContractTerms("BULKFAULT-" + Ids.New()[..10], provider, unit, "Ascend 910B", SelfControllable: true, ServiceMode.CloudInstance,
                Fen.FromYuan(20), Fen.FromYuan(100_000), "model training", UsesInnovationVoucher: false, SignedOn: Today);
            await ledger.RegisterContractAsync(terms, cancellationToken: ct);
            contracts[i] = terms.ContractNo;
        });

        var grants = await ledger.GrantManyAsync(contracts.Select(c => new GrantToMake(provider, c, s_grantAmount)));
        Assert.Empty(grants.Where(g => !g.Applied).Select(g => g.Refusal?.Message ?? g.Unavailable?.Message));
        return (provider, [.. grants.Select(g => g.Result!.GrantId)]);
    }
}
