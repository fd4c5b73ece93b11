using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using QuotaLedger.Client;
using QuotaLedger.Server.Admin;
using QuotaLedger.Server.Posting;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;
using EntryKind = QuotaLedger.V1.EntryKind;

namespace QuotaLedger.Tests;

/// <summary>A closed month's export checks offline, with no database, against the checkpoint key alone; an export with
/// one posting rewritten, or one entry deleted, or a closing figure changed, fails naming what changed, even when the
/// tamperer recomputes every line hash of the file.</summary>
public sealed class PeriodExportTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>, IAsyncLifetime
{
    private static readonly DateTimeOffset June10 = new(2026, 6, 10, 2, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset July2 = new(2026, 7, 2, 2, 0, 0, TimeSpan.Zero);

    private string _directory = "";
    private string _export = "";
    private List<JournalEntry> _entries = [];

    /// <summary>June is closed once per class database (each test's instance exports it again).</summary>
    private static readonly ConditionalWeakTable<LedgerFixture, Task<List<JournalEntry>>> s_closedJune = new();

    public async Task InitializeAsync()
    {
        _entries = await s_closedJune.GetValue(fixture, CloseJuneAsync);
        await using var server = fixture.StartServer(July2);
        _directory = Directory.CreateTempSubdirectory("quotaledger-period-").FullName;
        _export = Path.Combine(_directory, "2026-06.jsonl");
        using var client = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = server.BaseAddress, HttpHandler = server.CreateHandler() });
        await using var writer = File.CreateText(_export);
        Assert.True(await client.ExportPeriodAsync(2026, 6, writer) > 1 + _entries.Count);
    }

    /// <summary>Two units' grants and deductions in June, June closed in July; the first unit's entries.</summary>
    private static async Task<List<JournalEntry>> CloseJuneAsync(LedgerFixture fixture)
    {
        await using var server = fixture.StartServer(June10);
        var deal = await server.NewDealAsync(contractAmountFen: 10_000_000);
        var grant = await server.GrantAsync(deal, 100_000);
        for (var i = 0; i < 3; i++)
        {
            await server.DeductAsync(deal, grant.GrantId, 10_000);
        }

        var other = await server.NewDealAsync(contractAmountFen: 10_000_000);
        var second = await server.GrantAsync(other, 50_000);
        await server.DeductAsync(other, second.GrantId, 4_000);

        server.Clock.SetUtcNow(July2);
        await server.Admin.ClosePeriodAsync(new ClosePeriodRequest { RequestId = Ids.New(), Year = 2026, Month = 6 });
        return await Statement.ReadAsync(server, new ListEntriesRequest { UnitUscc = deal.Unit });
    }

    public Task DisposeAsync()
    {
        Directory.Delete(_directory, recursive: true);
        return Task.CompletedTask;
    }

    [Fact]
    public async Task An_untouched_export_verifies_offline_against_the_checkpoint_key()
    {
        var (exitCode, output) = await AuditAsync(await File.ReadAllLinesAsync(_export));
        Assert.True(exitCode == 0, output);
        Assert.Contains("OK: 2026-06", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_export_with_one_posting_rewritten_fails_naming_the_entry()
    {
        var deduction = _entries.First(e => e.Kind == EntryKind.Deduction);
        var lines = Rewrite(await File.ReadAllLinesAsync(_export), "entry", data =>
        {
            if (data["entryId"]!.GetValue<string>() != deduction.EntryId.ToString(System.Globalization.CultureInfo.InvariantCulture))
            {
                return false;
            }

            foreach (var posting in data["postings"]!.AsArray())
            {
                foreach (var side in new[] { "debitFen", "creditFen" })
                {
                    if (posting![side] is { } fen)
                    {
                        posting[side] = (long.Parse(fen.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture) * 2).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    }
                }
            }

            return true;
        });

        var (exitCode, output) = await AuditAsync(lines);
        Assert.Equal(1, exitCode);
        Assert.Contains($"Journal entry {deduction.EntryId} ", output, StringComparison.Ordinal);
        Assert.Contains("no longer match its hash", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_export_with_one_entry_deleted_fails_naming_the_missing_entry()
    {
        foreach (var deleted in new[] { _entries.First(e => e.Kind == EntryKind.Deduction), _entries.Last() })
        {
            var lines = Rechain([.. (await File.ReadAllLinesAsync(_export)).Where(l => !IsEntry(l, deleted.EntryId))]);
            var (exitCode, output) = await AuditAsync(lines);
            Assert.Equal(1, exitCode);
            Assert.Contains($"Journal entry {deleted.EntryId}, signed by checkpoint", output, StringComparison.Ordinal);
            Assert.Contains("is missing from the export", output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task An_export_with_one_entry_replaced_by_a_copy_of_another_fails_naming_it()
    {
        // Two equal deductions of one grant move the same figures by the same amounts: the counts and sums alone
        // would not tell the copy from the deleted entry.
        var deductions = _entries.Where(e => e.Kind == EntryKind.Deduction).ToList();
        var lines = await File.ReadAllLinesAsync(_export);
        var copy = Array.Find(lines, l => IsEntry(l, deductions[0].EntryId))!;
        var replaced = Rechain([.. lines.Select(l => IsEntry(l, deductions[1].EntryId) ? copy : l)]);
        var (exitCode, output) = await AuditAsync(replaced);
        Assert.Equal(1, exitCode);
        Assert.Contains($"Journal entry {deductions[0].EntryId} comes after entry", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_export_whose_readable_closing_differs_from_its_sealed_body_fails()
    {
        var lines = Rewrite(await File.ReadAllLinesAsync(_export), "closing", data =>
        {
            data["decoded"]!["entries"] = "999";
            return true;
        });

        var (exitCode, output) = await AuditAsync(lines);
        Assert.Equal(1, exitCode);
        Assert.Contains("readable fields", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_export_with_a_closing_figure_changed_fails_as_not_what_the_checkpoint_sealed()
    {
        var lines = Rewrite(await File.ReadAllLinesAsync(_export), "closing", data =>
        {
            var body = ClosingBody.Parser.ParseFrom(Convert.FromBase64String(data["body"]!.GetValue<string>()));
            body.Figures[0].ClosingFen += 1;
            body.Figures[0].Movements[0].Fen += 1;
            var bytes = Google.Protobuf.MessageExtensions.ToByteArray(body);
            data["body"] = Convert.ToBase64String(bytes);
            data["digest"] = Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(bytes));
            data["decoded"] = JsonNode.Parse(Google.Protobuf.JsonFormatter.Default.Format(body));
            return true;
        });

        var (exitCode, output) = await AuditAsync(lines);
        Assert.Equal(1, exitCode);
        Assert.Contains("is not the one checkpoint", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_export_with_a_line_edited_and_its_hashes_left_fails_at_that_line()
    {
        var lines = await File.ReadAllLinesAsync(_export);
        var at = Array.FindIndex(lines, l => l.Contains("\"type\":\"entry\"", StringComparison.Ordinal));
        var edited = JsonNode.Parse(lines[at])!;
        edited["data"]!["caller"] = "someone else";
        lines[at] = edited.ToJsonString();
        var (exitCode, output) = await AuditAsync(lines);
        Assert.Equal(1, exitCode);
        Assert.Contains($"FAILED at line {at + 1}: its sha256 does not match its content", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Over_json_the_closing_reads_the_export_streams_line_by_line_and_refusals_carry_their_words()
    {
        await using var server = fixture.StartServer(July2);
        using var http = new HttpClient(server.CreateHandler()) { BaseAddress = server.BaseAddress };
        using var closing = await http.GetAsync(new Uri("/v1/closings/2026/6", UriKind.Relative));
        Assert.True(closing.IsSuccessStatusCode, await closing.Content.ReadAsStringAsync());
        var read = JsonNode.Parse(await closing.Content.ReadAsStringAsync())!;
        Assert.Equal(6, read["month"]!.GetValue<int>());
        Assert.NotEmpty(read["decoded"]!["figures"]!.AsArray());

        using var export = await http.GetAsync(new Uri("/v1/closings/2026/6:export", UriKind.Relative));
        var lines = (await export.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => JsonNode.Parse(l)!["line"]!.GetValue<string>());
        Assert.Equal(await File.ReadAllLinesAsync(_export), lines);

        await AssertRefusedAsync(await http.GetAsync(new Uri("/v1/closings/2026/7", UriKind.Relative)), System.Net.HttpStatusCode.NotFound, "UNKNOWN_CLOSING");
        await AssertRefusedAsync(await http.PostAsJsonAsync(new Uri("/v1/closings", UriKind.Relative), new { requestId = Ids.New(), year = 2026, month = 13 }),
            System.Net.HttpStatusCode.BadRequest, "INVALID_ARGUMENT");
        await AssertRefusedAsync(await http.PostAsJsonAsync(new Uri("/v1/closings", UriKind.Relative), new { requestId = Ids.New(), year = 2026, month = 7 }),
            System.Net.HttpStatusCode.BadRequest, "PERIOD_NOT_READY");
        await AssertRefusedAsync(await http.PostAsJsonAsync(new Uri("/v1/closings", UriKind.Relative), new { requestId = Ids.New(), year = 2026, month = 6 }),
            System.Net.HttpStatusCode.BadRequest, "PERIOD_CLOSED");
    }

    private static async Task AssertRefusedAsync(HttpResponseMessage response, System.Net.HttpStatusCode status, string reason)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        Assert.Contains($"\"{reason}\"", body, StringComparison.Ordinal);
        response.Dispose();
    }

    private async Task<(int ExitCode, string Output)> AuditAsync(IEnumerable<string> lines)
    {
        var file = Path.Combine(_directory, $"{Guid.NewGuid():N}.jsonl");
        await File.WriteAllLinesAsync(file, lines);
        using var output = new StringWriter();
        var exitCode = await JournalAudit.RunAsync(["--export", file, "--public-key", fixture.Database.CheckpointPublicKeyFile], output);
        return (exitCode, output.ToString());
    }

    private static bool IsEntry(string line, long entryId)
    {
        var node = JsonNode.Parse(line)!;
        return node["type"]!.GetValue<string>() == "entry"
            && node["data"]!["entryId"]!.GetValue<string>() == entryId.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Edits the data of the lines of a type that <paramref name="edit"/> says it changed, then recomputes every
    /// line hash, as a tamperer would.</summary>
    private static string[] Rewrite(string[] lines, string type, Func<JsonObject, bool> edit)
    {
        var edited = lines.Select(line =>
        {
            var node = JsonNode.Parse(line)!.AsObject();
            return node["type"]!.GetValue<string>() == type && edit(node["data"]!.AsObject())
                ? (Type: type, Format: node["format"]?.GetValue<string>(), Data: node["data"]!.ToJsonString())
                : (Type: node["type"]!.GetValue<string>(), Format: node["format"]?.GetValue<string>(), Data: node["data"]!.ToJsonString());
        }).ToList();
        return Relink(edited);
    }

    private static string[] Rechain(string[] lines) =>
        Relink([.. lines.Select(line =>
        {
            var node = JsonNode.Parse(line)!.AsObject();
            return (Type: node["type"]!.GetValue<string>(), Format: node["format"]?.GetValue<string>(), Data: node["data"]!.ToJsonString());
        })]);

    private static string[] Relink(List<(string Type, string? Format, string Data)> lines)
    {
        var export = new PeriodExport();
        return [.. lines.Select(l => export.Line(l.Type, l.Data, l.Format))];
    }
}
