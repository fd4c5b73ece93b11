using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

public sealed class StatementTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task ListEntries_streams_balanced_entries_filtered_by_grant_unit_provider_year_and_time()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2026, 7, 6, 2, 0, 0, TimeSpan.Zero));
        var deal = await server.NewDealAsync();
        var grantRequest = deal.GrantRequest(10_000);
        var grant = await server.Ledger.GrantAsync(grantRequest);
        var other = await server.GrantAsync(deal, 5_000);
        server.Clock.Advance(TimeSpan.FromHours(1));
        var deductRequest = deal.DeductRequest(grant.GrantId, 4_000);
        var deduction = await server.Ledger.DeductAsync(deductRequest);

        var byGrant = await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = grant.GrantId });
        Assert.Equal([EntryKind.Grant, EntryKind.Deduction], byGrant.Select(e => e.Kind));
        Assert.Equal(grantRequest.RequestId, byGrant[0].RequestId);
        Assert.Equal(grant.GrantId, byGrant[0].SourceId);
        Assert.Equal(deductRequest.RequestId, byGrant[1].RequestId);
        Assert.Equal(deduction.DeductionId, byGrant[1].SourceId);
        Assert.All(byGrant, e => Assert.Equal(e.Postings.Sum(p => p.DebitFen), e.Postings.Sum(p => p.CreditFen)));
        Assert.Equal(
            [(AccountKind.Deducted, 2_000L, 0L), (AccountKind.Grant, 0L, 2_000L)],
            byGrant[1].Postings.Select(p => (p.AccountKind, p.DebitFen, p.CreditFen)));
        Assert.Equal(
            [(AccountKind.Grant, 10_000L, 0L), (AccountKind.Pool, 0L, 10_000L)],
            byGrant[0].Postings.Select(p => (p.AccountKind, p.DebitFen, p.CreditFen)));

        var byUnit = await Statement.ReadAsync(server, new ListEntriesRequest { UnitUscc = deal.Unit });
        Assert.Equal(3, byUnit.Count);
        Assert.True(byUnit.Select(e => e.EntryId).SequenceEqual(byUnit.Select(e => e.EntryId).Order()));
        var byProvider = await Statement.ReadAsync(server, new ListEntriesRequest { ProviderUscc = deal.Provider, Year = 2026 });
        Assert.Equal(byUnit, byProvider);
        Assert.Empty(await Statement.ReadAsync(server, new ListEntriesRequest { UnitUscc = deal.Unit, Year = 2027 }));

        var later = await Statement.ReadAsync(server, new ListEntriesRequest
        {
            UnitUscc = deal.Unit,
            From = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(server.Clock.GetUtcNow()),
        });
        Assert.Equal(EntryKind.Deduction, Assert.Single(later).Kind);
        var earlier = await Statement.ReadAsync(server, new ListEntriesRequest
        {
            UnitUscc = deal.Unit,
            To = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(server.Clock.GetUtcNow()),
        });
        Assert.Equal([grant.GrantId, other.GrantId], earlier.Select(e => e.GrantId));
    }

    [Fact]
    public async Task ListEntries_streams_more_entries_than_one_page()
    {
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 1_000_000);
        // Paging is what is tested here, not the lock queue: a bounded number of callers.
        await Parallel.ForEachAsync(Enumerable.Range(0, 600), new ParallelOptions { MaxDegreeOfParallelism = 16 },
            async (_, _) => await fixture.Server.DeductAsync(deal, grant.GrantId, 200));

        var entries = await Statement.ReadAsync(fixture.Server, new ListEntriesRequest { GrantId = grant.GrantId });
        Assert.Equal(601, entries.Count);
        Assert.Equal(600, entries.Select(e => e.SourceId).Skip(1).Distinct().Count());
    }

    [Fact]
    public async Task ListEntries_with_a_page_size_ends_after_that_many_and_resumes_after_the_last_entry_id()
    {
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 1_000_000);
        for (var i = 0; i < 4; i++)
        {
            await fixture.Server.DeductAsync(deal, grant.GrantId, 200);
        }

        var everything = await Statement.ReadAsync(fixture.Server, new ListEntriesRequest { GrantId = grant.GrantId });
        Assert.Equal(5, everything.Count);

        // A checkpointed reader: each call streams at most two, the next resumes after the last id it got.
        var pieces = new List<List<JournalEntry>>();
        var after = 0L;
        while (true)
        {
            var piece = await Statement.ReadAsync(fixture.Server, new ListEntriesRequest { GrantId = grant.GrantId, PageSize = 2, AfterEntryId = after });
            pieces.Add(piece);
            if (piece.Count < 2)
            {
                break;
            }

            after = piece[^1].EntryId;
        }

        Assert.Equal([2, 2, 1], pieces.Select(p => p.Count));
        Assert.Equal(everything, pieces.SelectMany(p => p));
        Assert.Equal(everything.Skip(3), await Statement.ReadAsync(fixture.Server, new ListEntriesRequest { GrantId = grant.GrantId, PageSize = 10, AfterEntryId = everything[2].EntryId }));
        await Refusal.AssertAsync(() => Statement.ReadAsync(fixture.Server, new ListEntriesRequest { GrantId = grant.GrantId, PageSize = -1 }),
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");
    }

    [Theory]
    [InlineData(253_402_300_800L, 0)]   // 10000-01-01
    [InlineData(-62_135_596_801L, 0)]   // before 0001-01-01
    [InlineData(1_780_000_000L, -1)]
    [InlineData(1_780_000_000L, 1_000_000_000)]
    public async Task A_timestamp_out_of_range_is_refused_as_invalid_argument_never_internal(long seconds, int nanos)
    {
        var outOfRange = new Timestamp { Seconds = seconds, Nanos = nanos };
        await Refusal.AssertAsync(() => Statement.ReadAsync(fixture.Server, new ListEntriesRequest { From = outOfRange }), StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => Statement.ReadAsync(fixture.Server, new ListEntriesRequest { To = outOfRange }), StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => fixture.Server.Redemption.OpenBatchAsync(new OpenBatchRequest { RequestId = Ids.New(), Year = 2026, ClosesAt = outOfRange }).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");
    }
}
