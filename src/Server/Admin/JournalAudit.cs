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
/// chain, and names the first entry that differs from what the checkpoints signed. Exit code 0 when all holds, 1 when
/// not, 2 for bad arguments.</summary>
public static class JournalAudit
{
    public static async Task<int> RunAsync(string[] args, TextWriter output)
    {
        var options = ParseOptions(args);
        if (options is null)
        {
            await output.WriteLineAsync("usage: audit --entries FILE --checkpoints FILE --public-key FILE");
            return 2;
        }

        using var key = ECDsa.Create();
        key.ImportFromPem(await File.ReadAllTextAsync(options.Value.PublicKey));
        var publicKey = key.ExportSubjectPublicKeyInfo();
        var keyId = CheckpointSigner.KeyIdOf(publicKey);

        var checkpoints = (await File.ReadAllLinesAsync(options.Value.Checkpoints)).Where(l => l.Length > 0)
            .Select(l => Checkpoints.FromApi(JsonParser.Default.Parse<Checkpoint>(l))).ToList();
        var verdict = Checkpoints.VerifyChain(checkpoints, (id, body, signature) => id == keyId && CheckpointSigner.Verify(publicKey, body, signature));
        var auditor = new JournalAuditor(verdict.Signed);
        foreach (var line in File.ReadLines(options.Value.Entries).Where(l => l.Length > 0))
        {
            var (entry, postings) = FromApi(JsonParser.Default.Parse<JournalEntry>(line));
            if (!auditor.Check(entry, postings))
            {
                break;
            }
        }

        auditor.Finish();
        var problem = verdict.Problem ?? (auditor.Ok ? null : auditor.Problem);
        await output.WriteLineAsync($"checkpoints {verdict.Count} (through {verdict.LastId}), signed by key {keyId}; entries {auditor.EntriesChecked} in {auditor.Chains} chains");
        await output.WriteLineAsync(problem is null ? "OK: the journal is what the checkpoints signed." : $"FAILED at entry {auditor.FirstBadEntryId}: {problem}");
        return problem is null ? 0 : 1;
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

    private static (string Entries, string Checkpoints, string PublicKey)? ParseOptions(string[] args)
    {
        var values = new Dictionary<string, string>();
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            values[args[i]] = args[i + 1];
        }

        return values.TryGetValue("--entries", out var entries) && values.TryGetValue("--checkpoints", out var checkpoints)
            && values.TryGetValue("--public-key", out var key)
            ? (entries, checkpoints, key)
            : null;
    }
}
