using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The tamper-evident journal: hash chains per unit-year, checked by VerifyJournal.</summary>
public sealed class JournalIntegrityTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task VerifyJournal_holds_over_everything_the_suite_wrote()
    {
        var verdict = await fixture.Server.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.True(verdict.Ok, verdict.Problem);
        Assert.Equal(0, verdict.FirstBadEntryId);
        Assert.Equal(0, verdict.UnchainedEntries);
        Assert.True(verdict.EntriesChecked > 0);
    }

    [Fact]
    public async Task An_entry_chains_to_the_previous_entry_of_its_unit_year()
    {
        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 10_000);
        await fixture.Server.DeductAsync(deal, grant.GrantId, 1_000);

        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT chain_key, prev_hash, hash FROM journal_entries WHERE unit_uscc = $1 ORDER BY id", connection)
        {
            Parameters = { new() { Value = deal.Unit } },
        };
        var rows = new List<(string Chain, byte[] Prev, byte[] Hash)>();
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                rows.Add((reader.GetString(0), (byte[])reader[1], (byte[])reader[2]));
            }
        }

        Assert.Equal(2, rows.Count);
        Assert.All(rows, r => Assert.Equal($"{deal.Unit}:2026", r.Chain));
        Assert.Empty(rows[0].Prev);
        Assert.Equal(rows[0].Hash, rows[1].Prev);
    }

    [Fact]
    public async Task A_posting_edited_behind_the_servers_back_is_named_by_VerifyJournal()
    {
        var database = await fixture.Database.CreateSiblingAsync();
        await using var server = LedgerServer.Start(fixture.Database.SettingsFor(database), LedgerFixture.Now);
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1_000_000 });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        var deduction = await server.DeductAsync(deal, grant.GrantId, 4_000);
        await server.DeductAsync(deal, grant.GrantId, 2_000);
        Assert.True((await server.Admin.VerifyJournalAsync(new VerifyJournalRequest())).Ok);

        var target = (await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = grant.GrantId }))
            .Single(e => e.Kind == EntryKind.Deduction && e.SourceId == deduction.DeductionId);

        // An operator with superuser rights switches the guard off, edits one posting, and switches it on again.
        await using (var connection = new NpgsqlConnection(database))
        {
            await connection.OpenAsync();
            await using var tamper = new NpgsqlCommand(
                $"""
                ALTER TABLE postings DISABLE TRIGGER postings_append_only;
                UPDATE postings SET amount_fen = amount_fen * 2 WHERE id = (SELECT min(id) FROM postings WHERE entry_id = {target.EntryId});
                ALTER TABLE postings ENABLE TRIGGER postings_append_only;
                """, connection);
            await tamper.ExecuteNonQueryAsync();
        }

        var verdict = await server.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.False(verdict.Ok);
        Assert.Equal(target.EntryId, verdict.FirstBadEntryId);
        Assert.Contains(target.EntryId.ToString(System.Globalization.CultureInfo.InvariantCulture), verdict.Problem);
        Assert.NotEqual(0, verdict.FirstBadAccountId);
    }

    [Fact]
    public async Task A_balanced_rewrite_of_an_entry_still_breaks_its_hash()
    {
        var database = await fixture.Database.CreateSiblingAsync();
        await using var server = LedgerServer.Start(fixture.Database.SettingsFor(database), LedgerFixture.Now);
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1_000_000 });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        var entry = Assert.Single(await Statement.ReadAsync(server, new ListEntriesRequest { GrantId = grant.GrantId }));

        await using (var connection = new NpgsqlConnection(database))
        {
            await connection.OpenAsync();
            await using var tamper = new NpgsqlCommand(
                $"""
                ALTER TABLE journal_entries DISABLE TRIGGER journal_entries_append_only;
                UPDATE journal_entries SET request_id = 'rewritten' WHERE id = {entry.EntryId};
                ALTER TABLE journal_entries ENABLE TRIGGER journal_entries_append_only;
                """, connection);
            await tamper.ExecuteNonQueryAsync();
        }

        var verdict = await server.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.False(verdict.Ok);
        Assert.Equal(entry.EntryId, verdict.FirstBadEntryId);
        Assert.Equal(0, verdict.FirstBadAccountId);
    }
}
