using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Posting;

/// <summary>Checks journal entries fed to it in id order, from the database or from an export: each balances, sits in
/// its own chain, follows that chain's previous entry and matches its own hash; and, when checkpoints are given, each
/// entry a checkpoint signed still has the hash it signed. Remembers the first problem. No I/O: the server's
/// VerifyJournal and the offline <c>audit</c> command both feed it.</summary>
public sealed class JournalAuditor
{
    private readonly Dictionary<string, byte[]> _heads = [];
    private readonly Dictionary<long, (byte[] Hash, long Checkpoint)> _signed;

    /// <param name="signed">Every entry the checkpoints cover: its hash and the checkpoint that first signed it.</param>
    public JournalAuditor(IReadOnlyDictionary<long, (byte[] Hash, long Checkpoint)>? signed = null)
    {
        _signed = signed is null ? [] : new Dictionary<long, (byte[], long)>(signed);
    }

    public long EntriesChecked { get; private set; }

    public long FirstBadEntryId { get; private set; }

    public string Problem { get; private set; } = "";

    public int Chains => _heads.Count;

    public bool Ok => FirstBadEntryId == 0;

    /// <summary>Starts a chain from a head already known good (the last checkpoint's), for a check of what came after it.</summary>
    public void Resume(string chainKey, byte[] head) => _heads[chainKey] = head;

    /// <summary>Checks one entry; false once a problem has been found (later entries are not checked).</summary>
    public bool Check(JournalEntryRow entry, IReadOnlyList<(long AccountId, long AmountFen)> postings)
    {
        if (!Ok)
        {
            return false;
        }

        EntriesChecked++;
        if (ProblemOf(entry, postings) is { } problem)
        {
            Fail(entry.Id, $"Journal entry {entry.Id} ({entry.Kind}, chain {entry.ChainKey}): {problem}.");
            return false;
        }

        _heads[entry.ChainKey] = entry.Hash;
        _signed.Remove(entry.Id);
        return true;
    }

    /// <summary>After the last entry: an entry a checkpoint signed that never came is missing (deleted, or a chain cut short).</summary>
    public void Finish()
    {
        if (_signed.Count == 0)
        {
            return;
        }

        var (id, (_, checkpoint)) = _signed.MinBy(s => s.Key);
        if (Ok || id < FirstBadEntryId)
        {
            Fail(id, $"Journal entry {id}, signed by checkpoint {checkpoint}, is missing from the journal.");
        }
    }

    private string? ProblemOf(JournalEntryRow entry, IReadOnlyList<(long AccountId, long AmountFen)> postings)
    {
        if (postings.Count < 2 || postings.Sum(p => p.AmountFen) != 0)
        {
            return "its postings do not balance";
        }

        var key = Chain.KeyOf(entry);
        if (entry.ChainKey != key)
        {
            return $"it is filed in chain {entry.ChainKey}, not its own {key}";
        }

        if (entry.Hash.Length == 0)
        {
            return "it is not chained (it has no hash)";
        }

        if (!entry.PrevHash.AsSpan().SequenceEqual(_heads.GetValueOrDefault(key, [])))
        {
            return "it does not follow the previous entry of its chain (an entry before it was changed, removed or inserted)";
        }

        if (!Chain.HashOf(entry, postings, entry.PrevHash).AsSpan().SequenceEqual(entry.Hash))
        {
            return "its content or postings no longer match its hash";
        }

        if (_signed.TryGetValue(entry.Id, out var signed) && !signed.Hash.AsSpan().SequenceEqual(entry.Hash))
        {
            return $"its hash differs from the one checkpoint {signed.Checkpoint} signed: it, or an entry before it in its chain, was rewritten and the chain recomputed";
        }

        return null;
    }

    private void Fail(long entryId, string problem)
    {
        FirstBadEntryId = entryId;
        Problem = problem;
    }
}
