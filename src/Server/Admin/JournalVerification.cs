using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;

namespace QuotaLedger.Server.Admin;

/// <summary>Recomputes the journal: each entry's link to its chain's previous entry, its hash, its balance; then each
/// account's balance from its postings. Reads a page at a time, keeping only each chain's head in memory.</summary>
internal static class JournalVerification
{
    private const int PageSize = 1_000;

    public static async Task<VerifyJournalResponse> VerifyAsync(LedgerDb db, CancellationToken ct)
    {
        var response = new VerifyJournalResponse();
        var heads = new Dictionary<string, byte[]>();
        var after = 0L;
        while (response.FirstBadEntryId == 0)
        {
            var page = await db.JournalEntries.AsNoTracking().Where(e => e.Id > after).OrderBy(e => e.Id).Take(PageSize).ToListAsync(ct);
            if (page.Count == 0)
            {
                break;
            }

            var ids = page.Select(e => e.Id).ToList();
            var postings = (await db.Postings.AsNoTracking().Where(p => ids.Contains(p.EntryId)).ToListAsync(ct)).ToLookup(p => p.EntryId);
            foreach (var entry in page)
            {
                response.EntriesChecked++;
                var legs = postings[entry.Id].Select(p => (p.AccountId, p.AmountFen)).ToList();
                if (Problem(entry, legs, heads) is { } problem)
                {
                    response.FirstBadEntryId = entry.Id;
                    response.Problem = $"Journal entry {entry.Id} ({entry.Kind}, chain {entry.ChainKey ?? Chain.KeyOf(entry)}): {problem}.";
                    break;
                }

                if (entry.Hash is null)
                {
                    response.UnchainedEntries++;
                }
            }

            after = page[^1].Id;
        }

        response.Chains = heads.Count;
        var mismatch = await db.QueryRowAsync(
            $"""
            SELECT count(*)::int,
                   coalesce(min(a.id) FILTER (WHERE a.balance_fen <> CASE WHEN a.kind = {(short)AccountKind.Funding} THEN -1 ELSE 1 END
                                                  * coalesce(p.total, 0)), 0)::bigint
            FROM accounts a LEFT JOIN (SELECT account_id, sum(amount_fen) AS total FROM postings GROUP BY account_id) p ON p.account_id = a.id
            """,
            r => (Accounts: r.GetInt32(0), FirstBad: r.GetInt64(1)),
            ct);
        response.AccountsChecked = mismatch.Accounts;
        response.FirstBadAccountId = mismatch.FirstBad;
        if (mismatch.FirstBad != 0 && response.Problem.Length == 0)
        {
            response.Problem = $"Account {mismatch.FirstBad}'s balance differs from the sum of its postings.";
        }

        response.Ok = response.FirstBadEntryId == 0 && response.FirstBadAccountId == 0;
        return response;
    }

    private static string? Problem(JournalEntryRow entry, List<(long AccountId, long AmountFen)> legs, Dictionary<string, byte[]> heads)
    {
        if (legs.Count < 2 || legs.Sum(l => l.AmountFen) != 0)
        {
            return "its postings do not balance";
        }

        var key = Chain.KeyOf(entry);
        if (entry.Hash is null || entry.PrevHash is null)
        {
            // Written before the journal was chained: a later chained entry starts the chain afresh.
            heads[key] = [];
            return null;
        }

        if (entry.ChainKey != key)
        {
            return $"it is filed in chain {entry.ChainKey}, not its own {key}";
        }

        if (!entry.PrevHash.AsSpan().SequenceEqual(heads.GetValueOrDefault(key, [])))
        {
            return "it does not follow the previous entry of its chain (an entry before it was changed, removed or inserted)";
        }

        if (!Chain.HashOf(entry, legs, entry.PrevHash).AsSpan().SequenceEqual(entry.Hash))
        {
            return "its content or postings no longer match its hash";
        }

        heads[key] = entry.Hash;
        return null;
    }
}
