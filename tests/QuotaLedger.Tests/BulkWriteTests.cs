using System.Net;
using System.Text.Json.Nodes;
using Grpc.Core;
using Npgsql;
using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>DeductMany and GrantMany: each item decided, recorded and answered as its single call would be, in request
/// order, an item's refusal failing no other; exactly once per item by its request id.</summary>
public sealed class BulkWriteTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    /// <summary>A safety bound on waits, never an assertion about speed.</summary>
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task DeductMany_answers_each_item_in_request_order_as_its_single_call_would_and_no_refusal_fails_another()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var other = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        var small = await server.GrantAsync(other, 300);
        var today = server.Today();
        var taken = deal.DeductRequest(grant.GrantId, 1_000, invoiceDate: today);
        var request = new DeductManyRequest
        {
            Items =
            {
                taken,                                                                          // 0: applied, 500
                other.DeductRequest(small.GrantId, 1_000, invoiceDate: today),                  // 1: capped at what the grant holds, 300
                deal.DeductRequest(grant.GrantId, 400, taken.InvoiceNo, today),                 // 2: the invoice item 0 took
                deal.DeductRequest(999_999_999, 400, invoiceDate: today),                       // 3: no such grant
                other.DeductRequest(grant.GrantId, 400, invoiceDate: today),                    // 4: another provider's grant
                deal.DeductRequest(grant.GrantId, 400, invoiceDate: today),            // 5: made a dry run below
                deal.DeductRequest(grant.GrantId, 400, invoiceDate: today),                     // 6: no request id below
                deal.DeductRequest(grant.GrantId, 400, invoiceDate: today),            // 7: a bad USCC below
                other.DeductRequest(small.GrantId, 400, invoiceDate: today),                    // 8: the grant is empty by now
                deal.DeductRequest(grant.GrantId, 2_000, invoiceDate: today),                   // 9: applied, 1,000
            },
        };
        request.Items[5].DryRun = true;
        request.Items[6].RequestId = "";
        request.Items[7].ProviderUscc = TestUscc.WithBadCheck(deal.Provider);

        var response = await server.Ledger.DeductManyAsync(request);

        Assert.Equal(request.Items.Count, response.Outcomes.Count);
        Assert.Equal(3, response.Applied);
        Assert.Equal(7, response.Refused);
        Assert.Equal(500, response.Outcomes[0].Applied.AppliedFen);
        Assert.Equal(300, response.Outcomes[1].Applied.AppliedFen);
        AssertRefused(response.Outcomes[2], StatusCode.AlreadyExists, "DUPLICATE_INVOICE");
        Assert.Equal(response.Outcomes[0].Applied.DeductionId.ToString(System.Globalization.CultureInfo.InvariantCulture), response.Outcomes[2].Refused.Metadata["deductionId"]);
        AssertRefused(response.Outcomes[3], StatusCode.NotFound, "UNKNOWN_GRANT");
        AssertRefused(response.Outcomes[4], StatusCode.NotFound, "UNKNOWN_GRANT");
        AssertRefused(response.Outcomes[5], StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        AssertRefused(response.Outcomes[6], StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        AssertRefused(response.Outcomes[7], StatusCode.InvalidArgument, "INVALID_USCC");
        AssertRefused(response.Outcomes[8], StatusCode.FailedPrecondition, "GRANT_EMPTY");
        Assert.Equal(1_000, response.Outcomes[9].Applied.AppliedFen);
        // Items of one grant are decided in request order: item 9 saw what item 0 left.
        Assert.Equal(10_000 - 500 - 1_000, response.Outcomes[9].Applied.GrantRemainingFen);

        var after = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(10_000 - 1_500, after.RemainingFen);
        var emptied = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = small.GrantId });
        Assert.Equal(0, emptied.RemainingFen);
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task A_bulk_call_retried_replays_every_item_and_an_id_reused_with_another_body_is_refused_for_that_item_alone()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        var other = await server.NewDealAsync();
        var otherGrant = await server.GrantAsync(other, 100_000);
        var items = Enumerable.Range(0, 40)
            .Select(i => i % 2 == 0 ? deal.DeductRequest(grant.GrantId, 100 + i, invoiceDate: server.Today()) : other.DeductRequest(otherGrant.GrantId, 100 + i, invoiceDate: server.Today()))
            .ToList();

        var first = await server.Ledger.DeductManyAsync(new DeductManyRequest { Items = { items } });
        var again = await server.Ledger.DeductManyAsync(new DeductManyRequest { Items = { items } });

        Assert.Equal(40, first.Applied);
        Assert.Equal(first.Outcomes, again.Outcomes);
        // An item is recorded as its Deduct call would be: the single call with its request id and body replays it.
        var single = await server.Ledger.DeductAsync(items[3]);
        Assert.Equal(first.Outcomes[3].Applied, single);

        // One item's request id sent with another body: that item alone is refused; the others replay.
        var changed = items.Select(i => i.Clone()).ToList();
        changed[5].InvoiceAmountFen += 1;
        var mixed = await server.Ledger.DeductManyAsync(new DeductManyRequest { Items = { changed } });
        AssertRefused(mixed.Outcomes[5], StatusCode.AlreadyExists, "REQUEST_ID_REUSED");
        Assert.Equal(39, mixed.Applied);
        Assert.Equal(first.Outcomes.Where((_, i) => i != 5), mixed.Outcomes.Where((_, i) => i != 5));

        var remaining = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(100_000 - items.Where((_, i) => i % 2 == 0).Sum(i => i.InvoiceAmountFen / 2), remaining.RemainingFen);
        Assert.Equal(40, await CountAsync("SELECT count(*) FROM deductions WHERE provider_uscc IN ($1::text::bpchar, $2::text::bpchar)", deal.Provider, other.Provider));
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task Two_items_of_one_call_with_one_request_id_apply_once_and_the_second_replays_or_is_refused_as_reused()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        var item = deal.DeductRequest(grant.GrantId, 1_000, invoiceDate: server.Today());
        var reused = item.Clone();
        reused.InvoiceNo += "-B";

        var response = await server.Ledger.DeductManyAsync(new DeductManyRequest { Items = { item, item, reused } });

        Assert.Equal(response.Outcomes[0].Applied, response.Outcomes[1].Applied);
        AssertRefused(response.Outcomes[2], StatusCode.AlreadyExists, "REQUEST_ID_REUSED");
        var remaining = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(100_000 - 500, remaining.RemainingFen);
    }

    [Fact]
    public async Task A_bulk_call_with_no_items_or_over_the_limit_is_refused_whole_and_applies_nothing()
    {
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: new Dictionary<string, string?> { ["Deductions:MaxBulkItems"] = "3" });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        var items = Enumerable.Range(0, 4).Select(_ => deal.DeductRequest(grant.GrantId, 1_000, invoiceDate: server.Today())).ToList();

        await Refusal.AssertAsync(() => server.Ledger.DeductManyAsync(new DeductManyRequest { Items = { items } }).ResponseAsync,
            StatusCode.ResourceExhausted, "REQUEST_TOO_LARGE");
        await Refusal.AssertAsync(() => server.Ledger.DeductManyAsync(new DeductManyRequest()).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => server.Ledger.GrantManyAsync(new GrantManyRequest { Items = { Enumerable.Range(0, 4).Select(_ => deal.GrantRequest(100)) } }).ResponseAsync,
            StatusCode.ResourceExhausted, "REQUEST_TOO_LARGE");

        var untouched = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(100_000, untouched.RemainingFen);
        var three = await server.Ledger.DeductManyAsync(new DeductManyRequest { Items = { items.Take(3) } });
        Assert.Equal(3, three.Applied);

        // The SDK, sending calls larger than the server takes: each item refused as its call was, none left to retry.
        using var client = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = server.BaseAddress, HttpHandler = server.CreateHandler(), BulkItemsPerCall = 4 });
        var date = DateOnly.ParseExact(server.Today(), "yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        var refused = await client.DeductManyAsync(Enumerable.Range(0, 4).Select(i => new InvoiceToDeduct(deal.Provider, grant.GrantId, $"BIG-{Ids.New()[..8]}", new Fen(1_000), date)));
        Assert.All(refused, r => Assert.Equal(LedgerReason.RequestTooLarge, r.Refusal?.Reason));
    }

    [Fact]
    public async Task A_bulk_call_whose_items_would_pass_the_queue_bound_is_refused_whole_and_applies_nothing()
    {
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: new Dictionary<string, string?> { ["Deductions:MaxWaiting"] = "2" });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        var items = Enumerable.Range(0, 3).Select(_ => deal.DeductRequest(grant.GrantId, 1_000, invoiceDate: server.Today())).ToList();

        await Refusal.AssertAsync(() => server.Ledger.DeductManyAsync(new DeductManyRequest { Items = { items } }).ResponseAsync, StatusCode.Unavailable, "OVERLOADED");

        var untouched = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(100_000, untouched.RemainingFen);
        Assert.Equal(2, (await server.Ledger.DeductManyAsync(new DeductManyRequest { Items = { items.Take(2) } })).Applied);
    }

    [Fact]
    public async Task A_unit_year_another_session_holds_locked_does_not_hold_up_the_rest_of_a_bulk_call()
    {
        // A lock timeout past the test's patience: the free unit-year's deductions commit only if nothing waits for the held row.
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: new Dictionary<string, string?> { ["Database:LockTimeout"] = "00:02:00", ["Database:StatementTimeout"] = "00:02:00" });
        var held = await server.NewDealAsync();
        var free = await server.NewDealAsync();
        var heldGrant = await server.GrantAsync(held, 100_000);
        var freeGrant = await server.GrantAsync(free, 100_000);
        var heldItem = held.DeductRequest(heldGrant.GrantId, 1_000, invoiceDate: server.Today());
        var freeItems = Enumerable.Range(0, 5).Select(_ => free.DeductRequest(freeGrant.GrantId, 1_000, invoiceDate: server.Today())).ToList();

        await using var holder = new NpgsqlConnection(fixture.Database.ConnectionString);
        await holder.OpenAsync();
        await using var transaction = await holder.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand("SELECT id FROM unit_years WHERE id = $1 FOR UPDATE", holder))
        {
            lockRow.Parameters.Add(new NpgsqlParameter { Value = await UnitYearIdAsync(heldGrant.GrantId) });
            await lockRow.ExecuteNonQueryAsync();
        }

        var call = server.Ledger.DeductManyAsync(new DeductManyRequest { Items = { heldItem, freeItems[0], freeItems[1], freeItems[2], freeItems[3], freeItems[4] } }).ResponseAsync;

        // The free unit-year's deductions commit while the held one's waits for its row.
        using (var patience = new CancellationTokenSource(s_patience))
        {
            while (await CountAsync("SELECT count(*) FROM deductions WHERE provider_uscc = $1::text::bpchar", free.Provider) < 5)
            {
                await Task.Delay(20, patience.Token);
            }
        }

        Assert.False(call.IsCompleted);
        Assert.Equal(0, await CountAsync("SELECT count(*) FROM deductions WHERE provider_uscc = $1::text::bpchar", held.Provider));
        await transaction.CommitAsync();

        var response = await call.WaitAsync(s_patience);
        Assert.Equal(6, response.Applied);
        Assert.Equal(500, response.Outcomes[0].Applied.AppliedFen);
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task GrantMany_makes_each_grant_as_Grant_would_in_request_order_and_replays_on_retry()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var other = await server.NewDealAsync();
        var items = new List<GrantRequest>
        {
            deal.GrantRequest(10_000),
            other.GrantRequest(20_000),
            deal.GrantRequest(30_000),
            deal.GrantRequest(0),
            deal.GrantRequest(40_000),
        };
        items[2].ContractNo = "NO-SUCH-CONTRACT";

        var response = await server.Ledger.GrantManyAsync(new GrantManyRequest { Items = { items } });
        var again = await server.Ledger.GrantManyAsync(new GrantManyRequest { Items = { items } });

        Assert.Equal(3, response.Applied);
        Assert.Equal(10_000, response.Outcomes[0].Applied.AmountFen);
        Assert.Equal(20_000, response.Outcomes[1].Applied.AmountFen);
        AssertRefused(response.Outcomes[2], StatusCode.NotFound, "UNKNOWN_CONTRACT");
        AssertRefused(response.Outcomes[3], StatusCode.InvalidArgument, "INVALID_AMOUNT");
        Assert.Equal(50_000, response.Outcomes[4].Applied.UnitYear.GrantedOpenFen);
        Assert.Equal(response.Outcomes, again.Outcomes);
        Assert.Equal(await server.Ledger.GrantAsync(items[4]), response.Outcomes[4].Applied);
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task GrantMany_takes_back_what_due_grants_hold_for_all_its_grants_as_the_same_grants_sent_one_by_one_would()
    {
        // A year of its own: its pool is spent on grants of other contracts, which then pass their expiry (the expiry pass
        // has not run). Sent one by one, each grant's sweep would return enough of them for itself.
        await using var server = fixture.StartServer(new DateTimeOffset(2047, 3, 2, 2, 0, 0, TimeSpan.Zero));
        await server.SetSmallYearAsync(2047, capFen: 10_000_000, totalFen: 10_000_000, fundFen: 100_000);
        for (var i = 0; i < 5; i++)
        {
            await server.GrantAsync(await server.NewDealAsync(), 20_000);
        }

        var deals = new List<Deal>();
        for (var i = 0; i < 5; i++)
        {
            deals.Add(await server.NewDealAsync());
        }

        server.Clock.Advance(TimeSpan.FromDays(40));

        var response = await server.Ledger.GrantManyAsync(new GrantManyRequest { Items = { deals.Select(d => d.GrantRequest(20_000)) } });

        Assert.True(response.Applied == 5, $"{response.Refused} refused: {string.Join("; ", response.Outcomes.Where(o => o.Refused is not null).Select(o => o.Refused.Reason))}");
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task The_sdk_deducts_many_in_calls_of_its_size_with_each_outcome_typed_in_the_order_given()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        using var client = new QuotaLedgerClient(new QuotaLedgerClientOptions
        {
            Address = server.BaseAddress, HttpHandler = server.CreateHandler(), BulkItemsPerCall = 2,
        });
        var date = DateOnly.ParseExact(server.Today(), "yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        var taken = "SDK-BULK-" + Ids.New()[..8];
        InvoiceToDeduct[] invoices =
        [
            new(deal.Provider, grant.GrantId, taken, new Fen(1_000), date),
            new(deal.Provider, grant.GrantId, "SDK-BULK-" + Ids.New()[..8], new Fen(2_000), date, "sdk-bulk-" + Ids.New()),
            new(deal.Provider, grant.GrantId, taken, new Fen(3_000), date),
            new(deal.Provider, 999_999_999, "SDK-BULK-" + Ids.New()[..8], new Fen(1_000), date),
            new(deal.Provider, grant.GrantId, "SDK-BULK-" + Ids.New()[..8], new Fen(4_000), date),
        ];

        var results = await client.DeductManyAsync(invoices);

        Assert.Equal([0, 1, 2, 3, 4], results.Select(r => r.Index));
        Assert.Equal(invoices[1].RequestId, results[1].RequestId);
        Assert.Equal([500L, 1_000L, 2_000L], results.Applied.Select(r => r.Result!.Applied.Value));
        Assert.Equal(LedgerReason.DuplicateInvoice, results[2].Refusal!.Reason);
        Assert.Equal(results[0].Result!.DeductionId, results[2].Refusal!.ExistingDeductionId);
        Assert.Equal(LedgerReason.UnknownGrant, results[3].Refusal!.Reason);
        Assert.Empty(results.Unresolved);

        // Sent again with the request ids the first run made or was given: every item answers as before.
        var again = await client.DeductManyAsync(invoices.Select((invoice, i) => invoice with { RequestId = results[i].RequestId }));
        Assert.Equal(results.Select(r => r.Result?.DeductionId), again.Select(r => r.Result?.DeductionId));
        var remaining = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(100_000 - 3_500, remaining.RemainingFen);
    }

    [Fact]
    public async Task The_sdk_retries_a_lost_bulk_answer_whole_and_every_item_is_applied_once()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        var lost = new DropResponses("/quotaledger.v1.LedgerService/DeductMany");
        using var client = new QuotaLedgerClient(new QuotaLedgerClientOptions
        {
            Address = server.BaseAddress, HttpHandler = Wrap(lost, server.CreateHandler()),
            Retry = { InitialBackoff = TimeSpan.FromMilliseconds(20), MaxBackoff = TimeSpan.FromMilliseconds(200) },
        });
        var date = DateOnly.ParseExact(server.Today(), "yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

        var results = await client.DeductManyAsync(Enumerable.Range(0, 10).Select(_ => new InvoiceToDeduct(deal.Provider, grant.GrantId, "LOST-" + Ids.New()[..10], new Fen(1_000), date)));

        Assert.Equal(2, lost.Attempts);
        Assert.Equal(10, results.Applied.Count);
        Assert.Equal(10, await CountAsync("SELECT count(*) FROM deductions WHERE grant_id = $1", grant.GrantId));
        var remaining = await server.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId });
        Assert.Equal(100_000 - 5_000, remaining.RemainingFen);
    }

    [Fact]
    public async Task The_sdk_takes_an_item_answered_internal_or_an_answer_it_cannot_match_as_outcome_unknown_never_as_refused()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        var date = DateOnly.ParseExact(server.Today(), "yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        InvoiceToDeduct[] Invoices() => [.. Enumerable.Range(0, 3).Select(_ => new InvoiceToDeduct(deal.Provider, grant.GrantId, "ODD-" + Ids.New()[..10], new Fen(1_000), date))];

        // The second item answered INTERNAL (a bug's answer: its outcome is not known), with no retry rounds left.
        var internalItem = new RewriteDeductMany(response =>
            response.Outcomes[1] = new DeductOutcome { Refused = new ItemRefusal { Code = (int)StatusCode.Internal, Message = "outcome not known" } });
        using (var client = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = server.BaseAddress, HttpHandler = Wrap(internalItem, server.CreateHandler()), Retry = { MaxAttempts = 1 } }))
        {
            var results = await client.DeductManyAsync(Invoices());
            Assert.Null(results[1].Refusal);
            Assert.True(results[1].Unavailable?.OutcomeUnknown);
            Assert.Equal(2, results.Applied.Count);
        }

        // An answer with one outcome fewer than the items sent: no item can be matched to an outcome.
        var shortAnswer = new RewriteDeductMany(response => response.Outcomes.RemoveAt(response.Outcomes.Count - 1));
        using (var client = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = server.BaseAddress, HttpHandler = Wrap(shortAnswer, server.CreateHandler()), Retry = { MaxAttempts = 1 } }))
        {
            var results = await client.DeductManyAsync(Invoices());
            Assert.Equal(3, results.Count);
            Assert.All(results, r => Assert.True(r.Unavailable?.OutcomeUnknown));
        }
    }

    private static HttpMessageHandler Wrap(DelegatingHandler outer, HttpMessageHandler inner)
    {
        outer.InnerHandler = inner;
        return outer;
    }

    /// <summary>Changes DeductMany's answer on its way to the client, as a faulty server or proxy might: the gRPC message
    /// is read out of its frame, changed, and framed again; the status trailers pass as they came.</summary>
    private sealed class RewriteDeductMany(Action<DeductManyResponse> change) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = await base.SendAsync(request, cancellationToken);
            if (request.RequestUri!.AbsolutePath != "/quotaledger.v1.LedgerService/DeductMany")
            {
                return response;
            }

            var body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
            var answer = DeductManyResponse.Parser.ParseFrom(body.AsSpan(5));
            change(answer);
            var message = Google.Protobuf.MessageExtensions.ToByteArray(answer);
            var framed = new byte[5 + message.Length];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(framed.AsSpan(1), message.Length);
            message.CopyTo(framed, 5);
            var headers = response.Content.Headers.ToList();
            response.Content = new ByteArrayContent(framed);
            foreach (var (name, values) in headers.Where(h => h.Key != "Content-Length"))
            {
                response.Content.Headers.TryAddWithoutValidation(name, values);
            }

            return response;
        }
    }

    [Fact]
    public async Task DeductMany_is_served_over_json_with_each_outcome_in_its_place()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 100_000);
        using var http = new HttpClient(server.CreateHandler()) { BaseAddress = server.BaseAddress };
        var body = $$"""
            {"items":[
              {"requestId":"{{Ids.New()}}","providerUscc":"{{deal.Provider}}","grantId":"{{grant.GrantId}}","invoiceNo":"J-{{Ids.New()[..8]}}","invoiceAmountFen":"1000","invoiceDate":"{{server.Today()}}"},
              {"requestId":"{{Ids.New()}}","providerUscc":"{{deal.Provider}}","grantId":"999999999","invoiceNo":"J-{{Ids.New()[..8]}}","invoiceAmountFen":"1000","invoiceDate":"{{server.Today()}}"}
            ]}
            """;

        using var answer = await http.PostAsync("/v1/deductions:batch", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        var json = JsonNode.Parse(await answer.Content.ReadAsStringAsync())!;
        Assert.Equal("500", json["outcomes"]![0]!["applied"]!["appliedFen"]!.GetValue<string>());
        Assert.Equal("UNKNOWN_GRANT", json["outcomes"]![1]!["refused"]!["reason"]!.GetValue<string>());
        Assert.Equal(1, json["applied"]!.GetValue<int>());
    }

    private static void AssertRefused(DeductOutcome outcome, StatusCode status, string reason)
    {
        Assert.True(outcome.Refused is not null, $"expected {reason}, got {outcome}");
        Assert.Equal(reason, outcome.Refused.Reason);
        Assert.Equal((int)status, outcome.Refused.Code);
        Assert.NotEmpty(outcome.Refused.Message);
    }

    private static void AssertRefused(GrantOutcome outcome, StatusCode status, string reason)
    {
        Assert.True(outcome.Refused is not null, $"expected {reason}, got {outcome}");
        Assert.Equal(reason, outcome.Refused.Reason);
        Assert.Equal((int)status, outcome.Refused.Code);
    }

    private Task<long> UnitYearIdAsync(long grantId) => CountAsync("SELECT unit_year_id FROM grants WHERE id = $1", grantId);

    private async Task<long> CountAsync(string sql, params object[] values)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        return (long)(await command.ExecuteScalarAsync())!;
    }
}
