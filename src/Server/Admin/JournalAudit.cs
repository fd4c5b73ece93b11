using System.Security.Cryptography;
using Google.Protobuf;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Server.Admin;

/// <summary>The auditor's offline check, with no database: <c>dotnet QuotaLedger.Server.dll audit --entries FILE
/// --checkpoints FILE --public-key FILE</c>. The entries are the journal as <c>ListEntries</c> streams it and the
/// checkpoints as <c>ListCheckpoints</c> does, one JSON object per line (the SDK's <c>ExportJournalAsync</c> writes
/// both); the public key is the checkpoint key's (PEM). Checks the checkpoints' signatures and links, recomputes every
/// chain, and names the first entry that differs from what the checkpoints signed. A chain alone can be recomputed by
/// anyone who can write the database, so with no checkpoint there is nothing to hold the journal to: that is said, and
/// is not a success unless <c>--chains-only</c> asks for the chains alone. Exit code 0 when all holds, 1 when not, 2 for
/// bad arguments, 3 when there was no checkpoint to check against.</summary>
public static class JournalAudit
{
    public const int NothingToCheckAgainst = 3;

    private const string Usage =
        "usage: audit --entries FILE --checkpoints FILE --public-key FILE\n       audit --entries FILE --chains-only\n       audit --export FILE --public-key FILE";

    public static async Task<int> RunAsync(string[] args, TextWriter output)
    {
        if (args.Length == 4 && args[0] == "--export" && args[2] == "--public-key")
        {
            return await RunExportAsync(args[1], args[3], output);
        }

        if (ParseOptions(args) is not { } options)
        {
            await output.WriteLineAsync(Usage);
            return 2;
        }

        var signedBy = "";
        var verdict = new Checkpoints.Verdict([], null, 0, 0);
        if (!options.ChainsOnly)
        {
            using var key = ECDsa.Create();
            key.ImportFromPem(await File.ReadAllTextAsync(options.PublicKey!));
            var publicKey = key.ExportSubjectPublicKeyInfo();
            var keyId = CheckpointSigner.KeyIdOf(publicKey);
            signedBy = $", signed by key {keyId}";
            var checkpoints = (await File.ReadAllLinesAsync(options.Checkpoints!)).Where(l => l.Length > 0)
                .Select(l => Checkpoints.FromApi(JsonParser.Default.Parse<Checkpoint>(l))).ToList();
            verdict = Checkpoints.VerifyChain(checkpoints, (id, body, signature) => id == keyId && CheckpointSigner.Verify(publicKey, body, signature));
        }

        var auditor = new JournalAuditor(verdict.Signed);
        foreach (var line in File.ReadLines(options.Entries).Where(l => l.Length > 0))
        {
            var (entry, postings) = FromApi(JsonParser.Default.Parse<JournalEntry>(line));
            if (!auditor.Check(entry, postings))
            {
                break;
            }
        }

        auditor.Finish();
        var problem = verdict.Problem ?? (auditor.Ok ? null : auditor.Problem);
        await output.WriteLineAsync($"checkpoints {verdict.Count} (through {verdict.LastId}){signedBy}; entries {auditor.EntriesChecked} in {auditor.Chains} chains");
        if (problem is not null)
        {
            await output.WriteLineAsync($"FAILED at entry {auditor.FirstBadEntryId}: {problem}");
            return 1;
        }

        if (options.ChainsOnly)
        {
            await output.WriteLineAsync(
                "OK (chains only): every entry balances and follows its chain. No checkpoint was checked, and a chain alone can be recomputed by anyone who can write the database.");
            return 0;
        }

        if (verdict.Count == 0)
        {
            await output.WriteLineAsync(
                "NOT VERIFIED: there is no checkpoint to check the journal against (the checkpoints file is empty), and a chain alone can be recomputed " +
                "by anyone who can write the database. The chains link up. Export again once a checkpoint is made (MakeCheckpoint), or pass --chains-only " +
                "to check the chains alone.");
            return NothingToCheckAgainst;
        }

        await output.WriteLineAsync("OK: the journal is what the checkpoints signed.");
        return 0;
    }

    /// <summary>A closed period's export (ExportPeriod; see <see cref="PeriodExport"/>) checked against the checkpoint key:
    /// every line's hash and link, then <see cref="PeriodAudit"/>. Exit code 0 when all holds, 1 when not.</summary>
    private static async Task<int> RunExportAsync(string file, string publicKeyFile, TextWriter output)
    {
        using var key = ECDsa.Create();
        key.ImportFromPem(await File.ReadAllTextAsync(publicKeyFile));
        var publicKey = key.ExportSubjectPublicKeyInfo();
        var keyId = CheckpointSigner.KeyIdOf(publicKey);

        Closing? closing = null;
        var checkpoints = new List<CheckpointRow>();
        var entries = new List<JournalEntry>();
        var previous = "";
        var number = 0;
        foreach (var line in File.ReadLines(file).Where(l => l.Length > 0))
        {
            number++;
            var read = PeriodExport.Read(line, previous, out previous, out var problem);
            if (problem is null && read is { } item)
            {
                problem = (item.Type, number) switch
                {
                    ("closing", 1) when item.Format == "quotaledger-period-export/1" => Keep(() => closing = JsonParser.Default.Parse<Closing>(item.Data)),
                    ("closing", 1) => $"its format is {item.Format ?? "not stated"}, not quotaledger-period-export/1",
                    (_, 1) => "the first line is not the closing",
                    ("checkpoint", _) => Keep(() => checkpoints.Add(Checkpoints.FromApi(JsonParser.Default.Parse<Checkpoint>(item.Data)))),
                    ("entry", _) => Keep(() => entries.Add(JsonParser.Default.Parse<JournalEntry>(item.Data))),
                    _ => $"its type {item.Type} is not closing, checkpoint or entry",
                };
            }

            if (problem is not null)
            {
                await output.WriteLineAsync($"FAILED at line {number}: {problem}.");
                return 1;
            }
        }

        if (closing is null)
        {
            await output.WriteLineAsync("FAILED: the export is empty.");
            return 1;
        }

        var verdict = PeriodAudit.Check(closing, checkpoints, entries, (id, body, signature) => id == keyId && CheckpointSigner.Verify(publicKey, body, signature));
        await output.WriteLineAsync(
            $"period {verdict.Period}: checkpoints {verdict.Checkpoints}, signed by key {keyId}; entries {verdict.Entries}; closing figures {verdict.Figures}");
        if (verdict.Problem is not null)
        {
            await output.WriteLineAsync($"FAILED{(verdict.FirstBadEntryId == 0 ? "" : $" at entry {verdict.FirstBadEntryId}")}: {verdict.Problem}");
            return 1;
        }

        await output.WriteLineAsync($"OK: {verdict.Period} is what its closing's checkpoint sealed, and its closing figures are the sum of its entries.");
        return 0;
    }

    /// <summary>Runs a parse for a line, turning a parse failure into the line's problem.</summary>
    private static string? Keep(Action parse)
    {
        try
        {
            parse();
            return null;
        }
        catch (InvalidProtocolBufferException e)
        {
            return $"its data does not parse ({e.Message})";
        }
        catch (FormatException e)
        {
            return $"its data does not parse ({e.Message})";
        }
    }

    /// <summary>An exported entry back as the row its hash was computed from.</summary>
    internal static (JournalEntryRow Entry, List<(long AccountId, long AmountFen)> Postings) FromApi(JournalEntry entry) =>
    (
        new JournalEntryRow
        {
            Id = entry.EntryId,
            Kind = (EntryKind)(short)entry.Kind,
            CreatedAt = entry.CreatedAt.ToDateTimeOffset(),
            Year = entry.Year,
            UnitUscc = NullIfEmpty(entry.UnitUscc),
            ProviderUscc = NullIfEmpty(entry.ProviderUscc),
            GrantId = entry.GrantId == 0 ? null : entry.GrantId,
            CounterpartyUscc = NullIfEmpty(entry.CounterpartyUscc),
            CounterpartyGrantId = entry.CounterpartyGrantId == 0 ? null : entry.CounterpartyGrantId,
            RequestId = entry.RequestId,
            Caller = entry.Caller,
            Memo = entry.Memo,
            ReversesEntryId = entry.HasReversesEntryId ? entry.ReversesEntryId : null,
            ChainKey = entry.ChainKey,
            PrevHash = entry.PrevHash.ToByteArray(),
            Hash = entry.Hash.ToByteArray(),
        },
        [.. entry.Postings.Select(p => (p.AccountId, p.DebitFen > 0 ? p.DebitFen : -p.CreditFen))]
    );

    private static string? NullIfEmpty(string value) => value.Length == 0 ? null : value;

    private sealed record Options(string Entries, string? Checkpoints, string? PublicKey, bool ChainsOnly);

    private static Options? ParseOptions(string[] args)
    {
        var values = new Dictionary<string, string>();
        var chainsOnly = false;
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--chains-only")
            {
                chainsOnly = true;
            }
            else if (args[i] is "--entries" or "--checkpoints" or "--public-key" && i + 1 < args.Length)
            {
                values[args[i]] = args[++i];
            }
            else
            {
                return null;
            }
        }

        if (!values.TryGetValue("--entries", out var entries))
        {
            return null;
        }

        values.TryGetValue("--checkpoints", out var checkpoints);
        values.TryGetValue("--public-key", out var key);
        return chainsOnly || (checkpoints is not null && key is not null) ? new Options(entries, checkpoints, key, chainsOnly) : null;
    }
}
