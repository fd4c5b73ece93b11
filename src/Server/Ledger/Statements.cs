using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Ledger;

/// <summary>Streams journal entries oldest first, a page at a time (keyset on the entry id), so a statement of any
/// length is never held in memory; at most page_size of them when the caller sets one.</summary>
internal static class Statements
{
    private const int PageSize = 500;

    public static async Task StreamAsync(LedgerDb db, ListEntriesRequest request, IServerStreamWriter<JournalEntry> stream, CancellationToken ct)
    {
        // page_size 0: every entry that matches; otherwise the stream ends after that many, for the caller to resume.
        var left = Validate.PageSize(request.PageSize, whenZero: int.MaxValue, max: int.MaxValue);
        var query = Filter(db, request);
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
                .OrderBy(p => p.EntryId).ThenBy(p => p.AmountFen < 0).ThenBy(p => p.AccountId)
                .ToListAsync(ct);
            var byEntry = postings.ToLookup(p => p.EntryId);

            foreach (var row in page)
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

                entry.Postings.AddRange(byEntry[row.Id].Select(p => new V1.Posting
                {
                    AccountId = p.AccountId,
                    AccountKind = p.Kind.ToApi(),
                    DebitFen = p.AmountFen > 0 ? p.AmountFen : 0,
                    CreditFen = p.AmountFen < 0 ? -p.AmountFen : 0,
                }));
                await stream.WriteAsync(entry, ct);
            }

            after = page[^1].Id;
        }
    }

    private static IQueryable<JournalEntryRow> Filter(LedgerDb db, ListEntriesRequest request)
    {
        var query = db.JournalEntries.AsQueryable();
        if (request.UnitUscc.Length > 0)
        {
            var unit = Validate.Uscc(request.UnitUscc, "unit_uscc");
            query = query.Where(e => e.UnitUscc == unit || e.CounterpartyUscc == unit);
        }

        if (request.ProviderUscc.Length > 0)
        {
            var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
            query = query.Where(e => e.ProviderUscc == provider);
        }

        if (request.GrantId != 0)
        {
            var grant = Validate.Id(request.GrantId, "grant_id");
            query = query.Where(e => e.GrantId == grant || e.CounterpartyGrantId == grant);
        }

        if (request.Year != 0)
        {
            var year = Validate.Year(request.Year);
            query = query.Where(e => e.Year == year);
        }

        if (request.From is not null)
        {
            var from = Validate.Instant(request.From, "from");
            query = query.Where(e => e.CreatedAt >= from);
        }

        if (request.To is not null)
        {
            var to = Validate.Instant(request.To, "to");
            query = query.Where(e => e.CreatedAt < to);
        }

        return query;
    }
}
