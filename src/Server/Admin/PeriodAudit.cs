using System.Security.Cryptography;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Admin;

/// <summary>Checks a closed period's export with no database (see <see cref="PeriodExport"/>): the closing is the one a
/// trusted checkpoint sealed; the checkpoints are signed and linked; every entry is dated inside the period, balances,
/// matches its hash and the hash a checkpoint signed, and follows its chain; every chain holds the entries the closing
/// counted, so an entry dropped from the file is named; and each of the closing's figures is its opening plus the
/// period's entries summed by kind. No I/O.</summary>
internal static class PeriodAudit
{
    public sealed record Verdict(string? Problem, long FirstBadEntryId, int Checkpoints, long Entries, int Figures, string Period);

    public static Verdict Check(
        Closing closing, IReadOnlyList<CheckpointRow> checkpoints, IReadOnlyList<JournalEntry> entries, Func<string, byte[], byte[], bool> signatureValid)
    {
        var body = ClosingBody.Parser.ParseFrom(closing.Body);
        var period = body.Month == 0 ? $"{body.Year}" : $"{body.Year:D4}-{body.Month:D2}";
        var checkedEntries = 0L;
        Verdict Fail(string problem, long entryId = 0) => new(problem, entryId, checkpoints.Count, checkedEntries, body.Figures.Count, period);

        if (!SHA256.HashData(closing.Body.Span).AsSpan().SequenceEqual(closing.Digest.Span))
        {
            return Fail("The closing's body does not match its digest.");
        }

        if ((closing.Decoded is not null && !closing.Decoded.Equals(body)) || closing.Year != body.Year || closing.Month != body.Month
            || !Equals(closing.ClosedAt, body.ClosedAt) || closing.ClosedBy != body.ClosedBy)
        {
            return Fail("The closing's readable fields (decoded, year, month, closed_at, closed_by) differ from its sealed body.");
        }

        var signed = Posting.Checkpoints.VerifyChain(checkpoints, signatureValid, fromMidway: true);
        if (signed.Problem is not null)
        {
            return Fail(signed.Problem);
        }

        var seal = checkpoints.Select(c => (c.Id, CheckpointBody.Parser.ParseFrom(c.Body).Seal))
            .FirstOrDefault(s => s.Seal is { } found && found.Year == body.Year && found.Month == body.Month);
        if (seal.Seal is null)
        {
            return Fail($"No checkpoint of the export seals the closing of {period}.");
        }

        if (!seal.Seal.ClosingDigest.Span.SequenceEqual(closing.Digest.Span))
        {
            return Fail($"The closing is not the one checkpoint {seal.Id} sealed: its figures or counts were changed.");
        }

        var (starts, ends) = (body.StartsAt.ToDateTimeOffset(), body.EndsAt.ToDateTimeOffset());
        var spans = body.Chains.ToDictionary(c => c.ChainKey, StringComparer.Ordinal);
        var seen = new Dictionary<string, (long Count, long LastId, byte[] LastHash, long GapAfter)>(StringComparer.Ordinal);
        var accounts = body.Accounts.ToDictionary(a => a.AccountId);
        var book = new ClosingFigureBook();
        var byHash = signed.Signed.ToDictionary(s => Convert.ToHexString(s.Value.Hash), s => (Id: s.Key, s.Value.Checkpoint), StringComparer.Ordinal);
        var lastId = 0L;
        foreach (var apiEntry in entries)
        {
            checkedEntries++;
            var (entry, postings) = JournalAudit.FromApi(apiEntry);
            if (entry.Id <= lastId)
            {
                return Fail($"Journal entry {entry.Id} comes after entry {lastId}: an export lists each entry once, in id order (one was repeated or moved).", entry.Id);
            }

            lastId = entry.Id;
            if (entry.CreatedAt < starts || entry.CreatedAt >= ends)
            {
                return Fail($"Journal entry {entry.Id} is dated {entry.CreatedAt:u}, outside {period}.", entry.Id);
            }

            if (postings.Count < 2 || postings.Sum(p => p.AmountFen) != 0)
            {
                return Fail($"Journal entry {entry.Id}: its postings do not balance.", entry.Id);
            }

            if (entry.ChainKey != Chain.KeyOf(entry) || !spans.TryGetValue(entry.ChainKey, out var span))
            {
                return Fail($"Journal entry {entry.Id} is filed in chain {entry.ChainKey}, which is not its own or not among the closing's chains.", entry.Id);
            }

            if (!Chain.HashOf(entry, postings, entry.PrevHash).AsSpan().SequenceEqual(entry.Hash))
            {
                return Fail($"Journal entry {entry.Id} ({entry.Kind}, chain {entry.ChainKey}): its content or postings no longer match its hash.", entry.Id);
            }

            if (!signed.Signed.TryGetValue(entry.Id, out var signature))
            {
                return Fail($"Journal entry {entry.Id} is signed by no checkpoint of the export.", entry.Id);
            }

            if (!signature.Hash.AsSpan().SequenceEqual(entry.Hash))
            {
                return Fail($"Journal entry {entry.Id}: its hash differs from the one checkpoint {signature.Checkpoint} signed (it was rewritten and rehashed).", entry.Id);
            }

            if (!seen.TryGetValue(entry.ChainKey, out var chain))
            {
                if (entry.Id != span.FirstEntryId)
                {
                    return Fail(Missing(span.FirstEntryId, $"the first of chain {span.ChainKey} in {period}", byHash), span.FirstEntryId);
                }

                chain = (0, 0, span.FirstPrevHash.ToByteArray(), 0);
            }

            // An entry of another period may sit between two of this one's in a chain (written across the boundary):
            // a gap, allowed while the chain's count holds. The first gap is kept: a missing entry is named by it.
            var gap = chain.GapAfter != 0 || entry.PrevHash.AsSpan().SequenceEqual(chain.LastHash) ? chain.GapAfter : entry.Id;
            seen[entry.ChainKey] = (chain.Count + 1, entry.Id, entry.Hash, gap);
            foreach (var (accountId, amount) in postings)
            {
                if (accounts.TryGetValue(accountId, out var account))
                {
                    book.Move(account, apiEntry.Kind, amount);
                }
            }
        }

        foreach (var span in body.Chains)
        {
            if (!seen.TryGetValue(span.ChainKey, out var chain))
            {
                return Fail(Missing(span.FirstEntryId, $"the first of chain {span.ChainKey} in {period}", byHash), span.FirstEntryId);
            }

            if (chain.Count != span.Entries && chain.GapAfter != 0)
            {
                var follower = entries.First(e => e.EntryId == chain.GapAfter);
                var missing = byHash.TryGetValue(Convert.ToHexString(follower.PrevHash.Span), out var before) ? before.Id : 0;
                return Fail(Missing(missing, $"entry {follower.EntryId} follows it in chain {span.ChainKey}", byHash), missing);
            }

            if (chain.Count != span.Entries || chain.LastId != span.LastEntryId || !span.LastHash.Span.SequenceEqual(chain.LastHash))
            {
                return Fail(Missing(span.LastEntryId, $"the last of chain {span.ChainKey} in {period}; the closing counts {span.Entries} entries, the export {chain.Count}", byHash),
                    span.LastEntryId);
            }
        }

        if (entries.Count != body.Entries)
        {
            return Fail($"The closing counts {body.Entries} entries in {period}; the export holds {entries.Count}.");
        }

        foreach (var figures in body.Figures)
        {
            var stated = figures.Movements.ToDictionary(m => m.Kind, m => m.Fen);
            var summed = book.MovementsOf(figures);
            var line = $"{figures.Scope} {figures.Year} {figures.Party} {figures.AccountKind}".Replace("  ", " ", StringComparison.Ordinal);
            if (figures.OpeningFen + stated.Values.Sum() != figures.ClosingFen)
            {
                return Fail($"Closing figure {line}: opening {figures.OpeningFen} plus movements {stated.Values.Sum()} is not its closing {figures.ClosingFen}.");
            }

            foreach (var kind in stated.Keys.Union(summed.Keys).Order())
            {
                if (stated.GetValueOrDefault(kind) != summed.GetValueOrDefault(kind))
                {
                    return Fail($"Closing figure {line}: the closing moves {stated.GetValueOrDefault(kind)} fen by {kind}, the export's entries {summed.GetValueOrDefault(kind)}.");
                }
            }
        }

        var lines = body.Figures.Select(f => (f.Scope, f.Year, f.Party, f.AccountKind)).ToHashSet();
        if (book.Figures(body.Month == 0 ? body.Year : null).FirstOrDefault(f => !lines.Contains((f.Scope, f.Year, f.Party, f.AccountKind))) is { } unstated)
        {
            return Fail($"The export's entries move {unstated.Scope} {unstated.Year} {unstated.Party} {unstated.AccountKind}, a figure the closing does not have.");
        }

        return new Verdict(null, 0, checkpoints.Count, checkedEntries, body.Figures.Count, period);
    }

    private static string Missing(long entryId, string which, Dictionary<string, (long Id, long Checkpoint)> byHash)
    {
        var checkpoint = byHash.Values.Where(v => v.Id == entryId).Select(v => v.Checkpoint).FirstOrDefault();
        var signedBy = checkpoint == 0 ? "" : $", signed by checkpoint {checkpoint},";
        return $"Journal entry {entryId}{signedBy} is missing from the export ({which}).";
    }
}
