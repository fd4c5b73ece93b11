using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using QuotaLedger.Server.Feed;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Ledger;

/// <summary>Streams journal entries oldest first, a page at a time (keyset on the entry id, or on the commit-order
/// position), so a statement of any length is never held in memory; at most page_size of them when the caller sets one.</summary>
internal static class Statements
{
    private const int PageSize = 500;

    public static async Task StreamAsync(LedgerDb db, NpgsqlDataSource source, ListEntriesRequest request, EntryFilter filter,
        IServerStreamWriter<JournalEntry> stream, CancellationToken ct)
    {
        // page_size 0: every entry that matches; otherwise the stream ends after that many, for the caller to resume.
        var left = Validate.PageSize(request.PageSize, whenZero: int.MaxValue, max: int.MaxValue);
        if (request.AfterCursor.Length > 0 || request.CommitOrder)
        {
            if (request.AfterEntryId != 0)
            {
                throw new LedgerException(Reason.InvalidArgument, "Set after_cursor or after_entry_id, not both: a cursor resumes in commit order, an entry id in id order.");
            }

            var position = request.AfterCursor.Length > 0 ? FeedPosition.Parse(request.AfterCursor, "after_cursor") : FeedPosition.Start;
            await StreamInCommitOrderAsync(source, filter, position, left, stream, ct);
            return;
        }

        var query = filter.Apply(db.JournalEntries.AsQueryable());
        var after = Math.Max(0, request.AfterEntryId);
        while (left > 0)
        {
            var page = await query.Where(e => e.Id > after).OrderBy(e => e.Id).Take(Math.Min(PageSize, left)).AsNoTracking().ToListAsync(ct);
            if (page.Count == 0)
            {
                return;
            }

            left -= page.Count;

            var ids = page.Select(e => e.Id).ToList();
            var postings = await db.Postings.AsNoTracking()
                .Where(p => ids.Contains(p.EntryId))
                .Join(db.Accounts, p => p.AccountId, a => a.Id, (p, a) => new { p.EntryId, p.AccountId, p.AmountFen, a.Kind })
                .ToListAsync(ct);
            var byEntry = postings.ToLookup(p => p.EntryId);

            foreach (var row in page)
            {
                await stream.WriteAsync(ToApi(row, byEntry[row.Id].Select(p => (p.AccountId, p.Kind, p.AmountFen))), ct);
            }

            after = page[^1].Id;
        }
    }

    /// <summary>In commit order (see <see cref="CommitOrder"/>), each entry with its cursor: a reader resuming after a
    /// cursor never skips an entry that committed late with a smaller id.</summary>
    private static async Task StreamInCommitOrderAsync(NpgsqlDataSource source, EntryFilter filter, FeedPosition after, int left,
        IServerStreamWriter<JournalEntry> stream, CancellationToken ct)
    {
        while (left > 0)
        {
            var asked = Math.Min(PageSize, left);
            var page = await CommitOrder.ReadAsync(source, filter, after, asked, alerts: false, ct);
            foreach (var item in page)
            {
                await stream.WriteAsync(item.Event.Entry, ct);
            }

            if (page.Count < asked)
            {
                return;
            }

            left -= page.Count;
            after = page[^1].Position;
        }
    }

    /// <summary>An entry as the API shows it, its postings debits first, then by account id.</summary>
    public static JournalEntry ToApi(JournalEntryRow row, IEnumerable<(long AccountId, Storage.AccountKind Kind, long AmountFen)> postings)
    {
        var entry = new JournalEntry
        {
            EntryId = row.Id,
            Kind = row.Kind.ToApi(),
            CreatedAt = row.CreatedAt.ToTimestamp(),
            Year = row.Year,
            UnitUscc = row.UnitUscc ?? "",
            ProviderUscc = row.ProviderUscc ?? "",
            GrantId = row.GrantId ?? 0,
            SourceId = row.DeductionId ?? row.GrantId ?? 0,
            CounterpartyUscc = row.CounterpartyUscc ?? "",
            CounterpartyGrantId = row.CounterpartyGrantId ?? 0,
            RequestId = row.RequestId,
            Caller = row.Caller,
            Memo = row.Memo,
            ChainKey = row.ChainKey,
            PrevHash = Google.Protobuf.ByteString.CopyFrom(row.PrevHash),
            Hash = Google.Protobuf.ByteString.CopyFrom(row.Hash),
        };
        if (row.ReversesEntryId is { } reversed)
        {
            entry.ReversesEntryId = reversed;
        }

        entry.Postings.AddRange(postings.OrderBy(p => p.AmountFen < 0).ThenBy(p => p.AccountId).Select(p => new V1.Posting
        {
            AccountId = p.AccountId,
            AccountKind = p.Kind.ToApi(),
            DebitFen = p.AmountFen > 0 ? p.AmountFen : 0,
            CreditFen = p.AmountFen < 0 ? -p.AmountFen : 0,
        }));
        return entry;
    }
}
