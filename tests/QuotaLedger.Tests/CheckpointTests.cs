using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql;
using QuotaLedger.Client;
using QuotaLedger.Server.Admin;
using QuotaLedger.Server.Posting;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>A journal no insider can rewrite unseen: signed checkpoints anchor the hash chains outside the database,
/// receipts let a provider hold the ledger to what it acknowledged, and an auditor checks an export offline.</summary>
public sealed class CheckpointTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task An_insider_who_rewrites_a_posting_and_recomputes_the_chain_is_named_by_the_last_checkpoint_online_and_offline()
    {
        var database = await fixture.Database.CreateSiblingAsync();
        await using var server = LedgerServer.Start(fixture.Database.SettingsFor(database), LedgerFixture.Now);
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1_000_000 });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        var target = await server.DeductAsync(deal, grant.GrantId, 4_000);
        await server.DeductAsync(deal, grant.GrantId, 2_000);
        var checkpoint = await server.Admin.MakeCheckpointAsync(new MakeCheckpointRequest { RequestId = Ids.New() });
        await server.DeductAsync(deal, grant.GrantId, 1_000);

        using var client = Client(server);
        var clean = await ExportAndAuditAsync(client);
        Assert.Equal(0, clean.ExitCode);

        // The insider doubles a posting of a signed entry, moves the balances to match, and recomputes every hash after it.
        await RewriteAndRechainAsync(database, target.Receipt.EntryId);

        var chainsOnly = await server.Admin.VerifyJournalAsync(new VerifyJournalRequest { CheckpointId = -1 });
        Assert.True(chainsOnly.Ok, "the chain alone can be recomputed by anyone with write access: " + chainsOnly.Problem);
        var verdict = await server.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.False(verdict.Ok);
        Assert.Equal(target.Receipt.EntryId, verdict.FirstBadEntryId);
        Assert.Equal(checkpoint.CheckpointId, verdict.CheckpointId);
        Assert.Contains($"checkpoint {checkpoint.CheckpointId} signed", verdict.Problem, StringComparison.Ordinal);

        var tampered = await ExportAndAuditAsync(client);
        Assert.Equal(1, tampered.ExitCode);
        Assert.Contains($"FAILED at entry {target.Receipt.EntryId}", tampered.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Checkpoints_chain_to_each_other_sign_every_entry_once_and_cannot_be_altered_unseen()
    {
        var database = await fixture.Database.CreateSiblingAsync();
        await using var server = LedgerServer.Start(fixture.Database.SettingsFor(database), LedgerFixture.Now);
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1_000_000 });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        var first = await server.Admin.MakeCheckpointAsync(new MakeCheckpointRequest { RequestId = Ids.New() });
        var deduction = await server.DeductAsync(deal, grant.GrantId, 2_000);
        var second = await server.Admin.MakeCheckpointAsync(new MakeCheckpointRequest { RequestId = Ids.New() });
        var again = await server.Admin.MakeCheckpointAsync(new MakeCheckpointRequest { RequestId = Ids.New() });

        Assert.Equal(second.CheckpointId, again.CheckpointId);
        Assert.Equal((1L, 2L), (first.Decoded.Sequence, second.Decoded.Sequence));
        Assert.Equal(first.Digest, second.Decoded.PreviousDigest);
        Assert.Equal(first.Decoded.Entries + 1, second.Decoded.Entries);

        // The receipt of the deduction is what the second checkpoint signed for it, and its chain's head.
        var leaf = Assert.Single(second.Decoded.Leaves);
        Assert.Equal((deduction.Receipt.EntryId, deduction.Receipt.EntryHash), (leaf.EntryId, leaf.Hash));
        var head = Assert.Single(second.Decoded.Heads, h => h.ChainKey == deduction.Receipt.ChainKey);
        Assert.Equal(deduction.Receipt.EntryHash, head.Hash);
        Assert.Equal(second, await server.Admin.GetCheckpointAsync(new GetCheckpointRequest()));
        Assert.Equal(first, await server.Admin.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = first.CheckpointId }));
        var verdict = await server.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.True(verdict.Ok, verdict.Problem);
        Assert.Equal((second.CheckpointId, 2L), (verdict.CheckpointId, verdict.CheckpointsVerified));

        // An owner who edits a checkpoint (its signed heads, say) cannot sign it again.
        await ExecuteAsync(database,
            $"""
            ALTER TABLE checkpoints DISABLE TRIGGER checkpoints_append_only;
            UPDATE checkpoints SET body = set_byte(body, length(body) - 1, get_byte(body, length(body) - 1) # 1), digest = sha256(set_byte(body, length(body) - 1, get_byte(body, length(body) - 1) # 1))
            WHERE id = {first.CheckpointId};
            ALTER TABLE checkpoints ENABLE TRIGGER checkpoints_append_only;
            """);
        var broken = await server.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.False(broken.Ok);
        Assert.Contains($"Checkpoint {first.CheckpointId}: it is not signed by a trusted key", broken.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Entries_of_a_database_older_than_the_chain_are_chained_when_it_migrates()
    {
        var connectionString = await fixture.Database.CreateSiblingAsync();
        var options = new DbContextOptionsBuilder<Server.Storage.LedgerDb>().UseNpgsql(connectionString).UseSnakeCaseNamingConvention().Options;
        await using (var db = new Server.Storage.LedgerDb(options))
        {
            await db.GetService<IMigrator>().MigrateAsync("20261127035851_Lifecycle");
        }

        // Two funding entries from before the chain existed...
        await ExecuteAsync(connectionString,
            """
            INSERT INTO accounts (kind, year, balance_fen) VALUES (1, 2026, 3000), (2, 2026, 3000);
            INSERT INTO journal_entries (kind, created_at, year, request_id, caller, memo) VALUES
              (1, '2026-05-20T01:00:00Z', 2026, 'old-1', 'bureau', 'budget funding 2026'), (1, '2026-05-21T01:00:00Z', 2026, 'old-2', 'bureau', 'budget funding 2026');
            INSERT INTO postings (entry_id, account_id, amount_fen)
            SELECT e.id, a.id, CASE WHEN a.kind = 2 THEN 1000 * e.id ELSE -1000 * e.id END
            FROM journal_entries e CROSS JOIN accounts a;
            """);
        await using (var db = new Server.Storage.LedgerDb(options))
        {
            await db.GetService<IMigrator>().MigrateAsync("20261127044438_Redemption");
        }

        // ...and one written after it, chained from nothing since its predecessors had no hash.
        var third = new Server.Storage.JournalEntryRow
        {
            Id = 3, Kind = Server.Storage.EntryKind.Funding, CreatedAt = new DateTimeOffset(2026, 5, 22, 1, 0, 0, TimeSpan.Zero), Year = 2026,
            RequestId = "new-3", Caller = "bureau", Memo = "budget funding 2026", ChainKey = "2026",
        };
        await ExecuteAsync(connectionString, "UPDATE accounts SET balance_fen = 6000");
        var postings = await PostingsOfNewFundingAsync(connectionString);
        third.Hash = Chain.HashOf(third, postings, []);
        await ExecuteAsync(connectionString,
            $"""
            INSERT INTO journal_entries (id, kind, created_at, year, request_id, caller, memo, chain_key, prev_hash, hash)
            VALUES (3, 1, '2026-05-22T01:00:00Z', 2026, 'new-3', 'bureau', 'budget funding 2026', '2026', ''::bytea, '\x{Convert.ToHexStringLower(third.Hash)}'::bytea);
            INSERT INTO postings (entry_id, account_id, amount_fen) VALUES {string.Join(", ", postings.Select(p => $"(3, {p.AccountId}, {p.AmountFen})"))};
            SELECT setval('journal_entries_id_seq', 3);
            """);

        await using var server = LedgerServer.Start(fixture.Database.SettingsFor(connectionString), LedgerFixture.Now);
        var verdict = await server.Admin.VerifyJournalAsync(new VerifyJournalRequest());
        Assert.True(verdict.Ok, verdict.Problem);
        Assert.Equal((3L, 1), (verdict.EntriesChecked, verdict.Chains));
        var entries = await Statement.ReadAsync(server, new ListEntriesRequest { Year = 2026 });
        Assert.Equal([entries[0].Hash, entries[1].Hash], entries.Skip(1).Select(e => e.PrevHash));
    }

    [Fact]
    public async Task A_checkpoint_asked_for_that_is_not_there_answers_UNKNOWN_CHECKPOINT_and_one_removed_before_a_later_one_is_reported()
    {
        var database = await fixture.Database.CreateSiblingAsync();
        await using var server = LedgerServer.Start(fixture.Database.SettingsFor(database), LedgerFixture.Now);
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1_000_000 });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        var first = await server.Admin.MakeCheckpointAsync(new MakeCheckpointRequest { RequestId = Ids.New() });
        var target = await server.DeductAsync(deal, grant.GrantId, 2_000);
        var second = await server.Admin.MakeCheckpointAsync(new MakeCheckpointRequest { RequestId = Ids.New() });
        await server.DeductAsync(deal, grant.GrantId, 1_000);
        var third = await server.Admin.MakeCheckpointAsync(new MakeCheckpointRequest { RequestId = Ids.New() });

        // An id never made: refused, never answered with a verdict against the latest checkpoint.
        await Refusal.AssertAsync(() => server.Admin.VerifyJournalAsync(new VerifyJournalRequest { CheckpointId = 999_999 }).ResponseAsync,
            Grpc.Core.StatusCode.NotFound, "UNKNOWN_CHECKPOINT");
        await Refusal.AssertAsync(() => server.Admin.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = 999_999 }).ResponseAsync,
            Grpc.Core.StatusCode.NotFound, "UNKNOWN_CHECKPOINT");

        // The insider rewrites the entry the second checkpoint signed, recomputes the chain, and removes that checkpoint.
        await RewriteAndRechainAsync(database, target.Receipt.EntryId);
        await RemoveCheckpointAsync(database, second.CheckpointId);
        await Refusal.AssertAsync(() => server.Admin.VerifyJournalAsync(new VerifyJournalRequest { CheckpointId = second.CheckpointId }).ResponseAsync,
            Grpc.Core.StatusCode.NotFound, "UNKNOWN_CHECKPOINT");
        await Refusal.AssertAsync(() => server.Admin.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = second.CheckpointId }).ResponseAsync,
            Grpc.Core.StatusCode.NotFound, "UNKNOWN_CHECKPOINT");

        // The checkpoint after it no longer follows the one before it: the gap is reported, up to it and in all.
        foreach (var upTo in new[] { third.CheckpointId, 0 })
        {
            var verdict = await server.Admin.VerifyJournalAsync(new VerifyJournalRequest { CheckpointId = upTo });
            Assert.False(verdict.Ok);
            Assert.Contains($"Checkpoint {third.CheckpointId}: it does not follow the checkpoint before it", verdict.Problem, StringComparison.Ordinal);
        }

        var early = await server.Admin.VerifyJournalAsync(new VerifyJournalRequest { CheckpointId = first.CheckpointId });
        Assert.Equal((first.CheckpointId, 1L), (early.CheckpointId, early.CheckpointsVerified));
    }

    [Fact]
    public async Task The_offline_audit_with_no_checkpoint_says_it_checked_nothing_against_one_unless_asked_for_the_chains_alone()
    {
        var database = await fixture.Database.CreateSiblingAsync();
        await using var server = LedgerServer.Start(fixture.Database.SettingsFor(database), LedgerFixture.Now);
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1_000_000 });
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        await server.DeductAsync(deal, grant.GrantId, 2_000);
        using var client = Client(server);

        var unanchored = await ExportAndAuditAsync(client);
        Assert.Equal(3, unanchored.ExitCode); // nothing to check against
        Assert.DoesNotContain("OK", unanchored.Output, StringComparison.Ordinal);
        Assert.Contains("no checkpoint to check the journal against", unanchored.Output, StringComparison.Ordinal);

        var chainsOnly = await ExportAndAuditAsync(client, "--chains-only");
        Assert.Equal(0, chainsOnly.ExitCode);
        Assert.Contains("OK (chains only)", chainsOnly.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("what the checkpoints signed", chainsOnly.Output, StringComparison.Ordinal);

        await server.Admin.MakeCheckpointAsync(new MakeCheckpointRequest { RequestId = Ids.New() });
        var anchored = await ExportAndAuditAsync(client);
        Assert.Equal(0, anchored.ExitCode);
        Assert.Contains("OK: the journal is what the checkpoints signed.", anchored.Output, StringComparison.Ordinal);
    }

    private static Task RemoveCheckpointAsync(string connectionString, long checkpointId) =>
        ExecuteAsync(connectionString,
            $"""
            ALTER TABLE checkpoints DISABLE TRIGGER checkpoints_append_only;
            DELETE FROM checkpoints WHERE id = {checkpointId};
            ALTER TABLE checkpoints ENABLE TRIGGER checkpoints_append_only;
            """);

    private static async Task<List<(long AccountId, long AmountFen)>> PostingsOfNewFundingAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT id, kind FROM accounts ORDER BY id", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var postings = new List<(long, long)>();
        while (await reader.ReadAsync())
        {
            postings.Add((reader.GetInt64(0), reader.GetInt16(1) == 2 ? 3000 : -3000));
        }

        return postings;
    }

    private QuotaLedgerClient Client(LedgerServer server) =>
        new(new QuotaLedgerClientOptions { Address = server.BaseAddress, HttpHandler = server.CreateHandler() });

    /// <summary>Exports the journal and checkpoints through the SDK, then runs the offline audit on the files.</summary>
    private async Task<(int ExitCode, string Output)> ExportAndAuditAsync(QuotaLedgerClient client, params string[] options)
    {
        var directory = Directory.CreateTempSubdirectory("quotaledger-audit-").FullName;
        try
        {
            var (entries, checkpoints) = (Path.Combine(directory, "entries.jsonl"), Path.Combine(directory, "checkpoints.jsonl"));
            await using (var entriesWriter = File.CreateText(entries))
            await using (var checkpointsWriter = File.CreateText(checkpoints))
            {
                await client.ExportJournalAsync(entriesWriter, checkpointsWriter);
            }

            using var output = new StringWriter();
            var exitCode = await JournalAudit.RunAsync(
                ["--entries", entries, "--checkpoints", checkpoints, "--public-key", fixture.Database.CheckpointPublicKeyFile, .. options], output);
            return (exitCode, output.ToString());
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>What an insider with the owner's rights does: changes one entry's postings and the balances they moved, then
    /// recomputes the hash of that entry and of every later entry of its chain, so the chain links up again.</summary>
    private static async Task RewriteAndRechainAsync(string connectionString, long entryId)
    {
        await ExecuteAsync(connectionString,
            $"""
            ALTER TABLE postings DISABLE TRIGGER postings_append_only;
            ALTER TABLE journal_entries DISABLE TRIGGER journal_entries_append_only;
            UPDATE accounts a SET balance_fen = balance_fen + CASE WHEN a.kind = 1 THEN -p.amount_fen ELSE p.amount_fen END
            FROM postings p WHERE p.entry_id = {entryId} AND p.account_id = a.id;
            UPDATE postings SET amount_fen = amount_fen * 2 WHERE entry_id = {entryId};
            """);

        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        var chain = new List<(Server.Storage.JournalEntryRow Entry, List<(long, long)> Postings)>();
        await using (var command = new NpgsqlCommand(
            $"""
            SELECT {Server.Storage.JournalRows.Columns}
            FROM journal_entries e WHERE e.chain_key = (SELECT chain_key FROM journal_entries WHERE id = {entryId}) AND e.id >= {entryId}
            ORDER BY e.id
            """, connection))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                chain.Add(Server.Storage.JournalRows.Read(reader));
            }
        }

        var previous = chain[0].Entry.PrevHash;
        foreach (var (entry, postings) in chain)
        {
            var hash = Chain.HashOf(entry, postings, previous);
            await using var update = new NpgsqlCommand("UPDATE journal_entries SET prev_hash = $1, hash = $2 WHERE id = $3", connection)
            {
                Parameters = { new() { Value = previous }, new() { Value = hash }, new() { Value = entry.Id } },
            };
            await update.ExecuteNonQueryAsync();
            previous = hash;
        }

        await ExecuteAsync(connectionString,
            "ALTER TABLE postings ENABLE TRIGGER postings_append_only; ALTER TABLE journal_entries ENABLE TRIGGER journal_entries_append_only;");
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
