using System.Security.Cryptography;
using Google.Protobuf;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Server.Admin;

/// <summary>Closing a month or a year. Months close in order, each once it has ended; a year after its December, once
/// none of its grants holds quota. A closing records the period's figures (<see cref="ClosingFigureBook"/>: each line
/// opens where the month before closed and moves by the period's entries), the as-of figures at its last instant,
/// each chain's part of the period, and, for a year, the entry that settled its pool; a checkpoint made in the same
/// transaction seals the closing's digest. The journal's guard (migration PeriodClose) then refuses any entry dated
/// inside the period, on every path. Corrections found later are entries of an open month that reverse one inside the
/// period; they are read beside the closing, which never changes.</summary>
internal static partial class Closings
{
    /// <summary>The transaction-level advisory lock that lets one close run at a time, across servers.</summary>
    private const long CloserLock = 7_170_003;

    private const string ExportFormat = "quotaledger-period-export/1";

    /// <summary>How long after its end a month can close: a server whose clock runs behind the closer's by less than
    /// this never has an entry of the month's last moments refused.</summary>
    private static readonly TimeSpan Grace = TimeSpan.FromMinutes(1);

    /// <summary>Takes the closers' lock in the call's transaction, then checks that <paramref name="period"/> may close
    /// now: PERIOD_CLOSED when it is, PERIOD_NOT_READY (saying what first) when it may not yet. Returns the closing its
    /// figures open from: the month before's (for a year, the December before the year), or null for the first.</summary>
    public static async Task<PeriodClosingRow?> CheckReadyAsync(LedgerDb db, Period period, DateTimeOffset now, CancellationToken ct)
    {
        await db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock({CloserLock})", ct);
        var closings = await db.PeriodClosings.AsNoTracking().ToListAsync(ct);
        if (closings.SingleOrDefault(c => c.Year == period.Year && c.Month == period.Month) is { } closed)
        {
            throw new LedgerException(Reason.PeriodClosed,
                $"{period} was closed at {closed.ClosedAt:u} (closing {closed.Id}); its figures are final. A correction is an entry of the open period.");
        }

        if (period.IsYear)
        {
            var december = new Period(period.Year, 12);
            return closings.Any(c => c.Year == december.Year && c.Month == december.Month)
                ? closings.SingleOrDefault(c => c.Year == period.Year - 1 && c.Month == 12)
                : throw new LedgerException(Reason.PeriodNotReady, $"A year closes after its twelve months: close {december} first.");
        }

        if (now < period.EndsAt + Grace)
        {
            throw new LedgerException(Reason.PeriodNotReady, $"{period} has not ended: it can close from {period.EndsAt + Grace:u}, a minute after its end.");
        }

        var last = closings.Where(c => c.Month > 0).MaxBy(c => c.EndsAt);
        if (last is null)
        {
            await RequireNothingBeforeAsync(db, period, ct);
            return null;
        }

        if (last.EndsAt > period.StartsAt)
        {
            throw new LedgerException(Reason.PeriodClosed, $"The books are closed through {last.EndsAt:u} ({new Period(last.Year, last.Month)}), which covers {period}.");
        }

        var next = new Period(last.Year, last.Month).NextMonth;
        return next == period
            ? last
            : throw new LedgerException(Reason.PeriodNotReady, $"Months close in order: the last closed is {new Period(last.Year, last.Month)}, so close {next} first.");
    }

    /// <summary>The first closing: PERIOD_NOT_READY while the journal has an entry dated before the period.</summary>
    private static async Task RequireNothingBeforeAsync(LedgerDb db, Period period, CancellationToken ct)
    {
        var earliest = await db.JournalEntries.MinAsync(e => (DateTimeOffset?)e.CreatedAt, ct);
        if (earliest is { } first && first < period.StartsAt)
        {
            throw new LedgerException(Reason.PeriodNotReady,
                $"The journal has entries from {Period.MonthOf(first)}, before {period}: months close in order, so close {Period.MonthOf(first)} first.");
        }
    }

    /// <summary>PERIOD_NOT_READY while a grant of the year still holds quota (after the close's expiry pass, one not yet
    /// expired): its quota could still be deducted or return to the pool, which a closed year no longer takes.</summary>
    public static async Task CheckYearSpentAsync(LedgerDb db, int year, CancellationToken ct)
    {
        var (holding, until) = await db.QueryRowAsync(
            $"""
            SELECT count(*), max(g.expires_at) FROM grants g JOIN accounts a ON a.id = g.account_id
            WHERE g.year = $1 AND g.state = {(short)GrantState.Open} AND a.balance_fen > 0
            """,
            r => (r.GetInt64(0), r.IsDBNull(1) ? (DateTimeOffset?)null : r.GetFieldValue<DateTimeOffset>(1)),
            ct,
            year);
        if (holding > 0)
        {
            throw new LedgerException(Reason.PeriodNotReady,
                $"{holding} grant(s) of {year} still hold quota, the last until {until:u}; the year closes once they have expired (the close runs the expiry pass).");
        }
    }

    /// <summary>Records the closing in the call's transaction: sums the figures, holds journal inserts off (and sums
    /// again in the rare case an entry dated inside the period committed meanwhile), settles a year's pool, seals the
    /// closing in a checkpoint and inserts it. Journal inserts wait only for the last steps, not for the sums.</summary>
    public static async Task<Closing> CloseAsync(
        LedgerDb db, CheckpointSigner signer, DatabaseOptions options, Period period, PeriodClosingRow? previous, DateTimeOffset now,
        string requestId, string by, ILogger logger, CancellationToken ct)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        await db.Database.OpenConnectionAsync(ct);
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        var transaction = (NpgsqlTransaction)db.Database.CurrentTransaction!.GetDbTransaction();
        await options.AllowAuditAsync(connection, transaction, ct);

        // Every entry the sums do not see was written by a transaction at or above this horizon, and its feed_order is
        // at least its transaction id: counting the period's entries from the horizon up, before the sums and again
        // under the lock, finds one that committed meanwhile by scanning only the latest entries.
        var horizon = await db.QueryRowAsync("SELECT pg_snapshot_xmin(pg_current_snapshot())::text", r => r.GetString(0), ct);
        var recent = await RecentInsideAsync(db, period, horizon, ct);
        var body = await BodyAsync(db, period, previous, now, by, ct);
        var pool = period.IsYear ? await LockPoolAsync(db, period.Year, ct) : null;
        var basis = await Checkpoints.PrepareSealAsync(connection, transaction, ct);
        var summed = System.Diagnostics.Stopwatch.GetElapsedTime(started);
        await db.Database.ExecuteSqlAsync($"SELECT lock_journal_for_closing()", ct);
        var locked = System.Diagnostics.Stopwatch.GetTimestamp();
        if (await RecentInsideAsync(db, period, horizon, ct) != recent)
        {
            body = await BodyAsync(db, period, previous, now, by, ct);
        }

        if (previous is null && !period.IsYear)
        {
            // The first closing opens from nothing: checked again now that nothing more can commit.
            await RequireNothingBeforeAsync(db, period, ct);
        }

        if (pool is { Balance: > 0 } unspent)
        {
            var entry = await SettleAsync(db, period.Year, unspent.Id, new Fen(unspent.Balance), now, requestId, by, ct);
            (body.SettlementEntryId, body.SettledFen) = (entry.Id, unspent.Balance);
        }

        var bytes = body.ToByteArray();
        var digest = SHA256.HashData(bytes);
        var checkpoint = await Checkpoints.SealAsync(connection, transaction, signer, now,
            new PeriodSeal { Year = period.Year, Month = period.Month, ClosingDigest = ByteString.CopyFrom(digest) }, body.Chains, basis, ct);
        var row = new PeriodClosingRow
        {
            Year = period.Year,
            Month = (short)period.Month,
            StartsAt = period.StartsAt,
            EndsAt = period.EndsAt,
            ClosedAt = now,
            ClosedBy = by,
            RequestId = requestId,
            CheckpointId = checkpoint.Id,
            Body = bytes,
            Digest = digest,
        };
        db.PeriodClosings.Add(row);
        await db.SaveChangesAsync(ct);
        LogClosed(logger, period.ToString(), body.Entries, body.Figures.Count, checkpoint.Id, summed.TotalMilliseconds,
            System.Diagnostics.Stopwatch.GetElapsedTime(locked).TotalMilliseconds);
        return ToApi(row, withBody: true, corrections: []);
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Closed {Period}: {Entries} entries, {Figures} figure lines, sealed by checkpoint {CheckpointId}; summed in {SummedMs:F0} ms, journal inserts held for {HeldMs:F0} ms up to the closing's insert (the commit follows)")]
    private static partial void LogClosed(ILogger logger, string period, long entries, int figures, long checkpointId, double summedMs, double heldMs);

    /// <summary>A period's closing with its corrections; UNKNOWN_CLOSING when it is not closed.</summary>
    public static async Task<Closing> ReadAsync(LedgerDb db, Period period, CancellationToken ct)
    {
        var row = await db.PeriodClosings.AsNoTracking().SingleOrDefaultAsync(c => c.Year == period.Year && c.Month == period.Month, ct)
            ?? throw new LedgerException(Reason.UnknownClosing, $"{period} is not closed; the bureau closes it with ClosePeriod once it has ended.");
        return ToApi(row, withBody: true, await CorrectionsAsync(db, row, ct));
    }

    /// <summary>The closings of a year (0: all), in the order they were made, without their bodies.</summary>
    public static async Task<List<Closing>> ListAsync(LedgerDb db, int year, CancellationToken ct)
    {
        var rows = await db.PeriodClosings.AsNoTracking().Where(c => year == 0 || c.Year == year).OrderBy(c => c.Id).ToListAsync(ct);
        var closings = new List<Closing>(rows.Count);
        foreach (var row in rows)
        {
            closings.Add(ToApi(row, withBody: false, await CorrectionsAsync(db, row, ct)));
        }

        return closings;
    }

    /// <summary>Streams a closed period's export (see <see cref="PeriodExport"/>): the closing, the checkpoints that sign
    /// its entries through the one that sealed it, and its entries in id order with their postings.</summary>
    public static async Task ExportAsync(LedgerDb db, NpgsqlDataSource source, Period period, Func<string, Task> write, CancellationToken ct)
    {
        var closing = await ReadAsync(db, period, ct);
        var export = new PeriodExport();
        await write(export.Line("closing", JsonFormatter.Default.Format(closing), ExportFormat));
        foreach (var checkpoint in await SigningCheckpointsAsync(db, closing, ct))
        {
            await write(export.Line("checkpoint", JsonFormatter.Default.Format(Checkpoints.ToApi(checkpoint))));
        }

        await using var connection = await source.OpenConnectionAsync(ct);
        var after = 0L;
        while (true)
        {
            await using var command = new NpgsqlCommand(
                $"""
                SELECT {JournalRows.Columns},
                       ARRAY(SELECT a.kind FROM postings p JOIN accounts a ON a.id = p.account_id WHERE p.entry_id = e.id ORDER BY p.id)
                FROM journal_entries e
                WHERE e.created_at >= $1 AND e.created_at < $2 AND e.id > $3
                ORDER BY e.id LIMIT 500
                """,
                connection);
            command.Parameters.Add(new NpgsqlParameter { Value = closing.Decoded.StartsAt.ToDateTimeOffset() });
            command.Parameters.Add(new NpgsqlParameter { Value = closing.Decoded.EndsAt.ToDateTimeOffset() });
            command.Parameters.Add(new NpgsqlParameter { Value = after });
            var page = new List<JournalEntry>();
            await using (var reader = await command.ExecuteReaderAsync(ct))
            {
                while (await reader.ReadAsync(ct))
                {
                    var (entry, postings) = JournalRows.Read(reader);
                    var kinds = reader.GetFieldValue<short[]>(18);
                    page.Add(Statements.ToApi(entry, postings.Select((p, i) => (p.AccountId, (AccountKind)kinds[i], p.AmountFen))));
                }
            }

            foreach (var entry in page)
            {
                await write(export.Line("entry", JsonFormatter.Default.Format(entry)));
            }

            if (page.Count < 500)
            {
                return;
            }

            after = page[^1].EntryId;
        }
    }

    /// <summary>The closing's figures: chains, entries, movements summed per account, each line opened from the closing
    /// before it, and the as-of figures at the period's last instant. A year's closing keeps the year's own lines.</summary>
    private static async Task<ClosingBody> BodyAsync(LedgerDb db, Period period, PeriodClosingRow? previous, DateTimeOffset now, string by, CancellationToken ct)
    {
        var body = new ClosingBody
        {
            Version = 1,
            ClosedBy = by,
            Year = period.Year,
            Month = period.Month,
            StartsAt = period.StartsAt.ToTimestamp(),
            EndsAt = period.EndsAt.ToTimestamp(),
            ClosedAt = now.ToTimestamp(),
        };
        body.Chains.AddRange(await ChainSpansAsync(db, period, ct));
        body.Entries = body.Chains.Sum(c => c.Entries);

        var book = new ClosingFigureBook();
        if (previous is not null)
        {
            book.OpenFrom(ClosingBody.Parser.ParseFrom(previous.Body).Figures);
        }

        var accounts = new Dictionary<long, ClosingAccount>();
        var moves = await db.QueryListAsync(
            """
            SELECT p.account_id, a.kind, a.year, coalesce(a.unit_uscc::text, g.unit_uscc::text, ''), coalesce(g.provider_uscc::text, ''),
                   e.kind, sum(p.amount_fen)::bigint
            FROM journal_entries e JOIN postings p ON p.entry_id = e.id JOIN accounts a ON a.id = p.account_id
                 LEFT JOIN grants g ON g.account_id = a.id
            WHERE e.created_at >= $1 AND e.created_at < $2 AND ($3 = 0 OR a.year = $3)
            GROUP BY 1, 2, 3, 4, 5, 6
            ORDER BY 1, 6
            """,
            r => (Account: new ClosingAccount
            {
                AccountId = r.GetInt64(0),
                Kind = ((AccountKind)r.GetInt16(1)).ToApi(),
                Year = r.GetInt32(2),
                UnitUscc = r.GetString(3),
                ProviderUscc = r.GetString(4),
            }, EntryKind: ((EntryKind)r.GetInt16(5)).ToApi(), Fen: r.GetInt64(6)),
            ct,
            period.StartsAt, period.EndsAt, period.IsYear ? period.Year : 0);
        foreach (var (account, entryKind, fen) in moves)
        {
            accounts.TryAdd(account.AccountId, account);
            book.Move(account, entryKind, fen);
        }

        body.Accounts.AddRange(accounts.Values);
        body.Figures.AddRange(book.Figures(period.IsYear ? period.Year : null));

        foreach (var year in body.Figures.Where(f => f.Scope == ClosingScope.Programme).Select(f => f.Year).Distinct().Order())
        {
            if (await Policies.FindAsync(db, year, ct) is { } policy)
            {
                body.ProgramYears.Add(await ProgramYears.AsOfAsync(db, year, policy, period.LastInstant, ct));
            }
        }

        var unitYears = body.Figures.Where(f => f.Scope == ClosingScope.UnitYear).Select(f => (f.Party, f.Year)).Distinct().ToList();
        body.UnitYears.AddRange(await db.QueryListAsync(
            $"""
            SELECT uy.unit_uscc::text, uy.year, {UnitYears.FiguresAsOfColumns}
            FROM unit_years uy JOIN unnest($2::text[], $3::int[]) AS k(unit_uscc, year) ON uy.unit_uscc = k.unit_uscc::bpchar AND uy.year = k.year
            ORDER BY 1, 2
            """,
            r =>
            {
                var figures = UnitYears.ReadFigures(r, 2, r.GetString(0), r.GetInt32(1));
                return new ClosingUnitYear
                {
                    UnitUscc = figures.UnitUscc,
                    Year = figures.Year,
                    CapFen = figures.Cap.Value,
                    GrantedOpenFen = figures.GrantedOpen.Value,
                    DeductedFen = figures.Deducted.Value,
                    RedeemedFen = figures.Redeemed.Value,
                    HeadroomFen = figures.Headroom.Value,
                };
            },
            ct,
            period.LastInstant, unitYears.Select(u => u.Party).ToArray(), unitYears.Select(u => u.Year).ToArray()));
        return body;
    }

    /// <summary>Each chain's part of the period: how many entries, its first (and the hash it follows) and its last.</summary>
    private static async Task<List<ChainSpan>> ChainSpansAsync(LedgerDb db, Period period, CancellationToken ct)
    {
        var spans = await db.QueryListAsync(
            """
            WITH inside AS (
              SELECT e.chain_key, count(*)::bigint AS entries, min(e.id) AS first_id, max(e.id) AS last_id
              FROM journal_entries e WHERE e.created_at >= $1 AND e.created_at < $2 GROUP BY e.chain_key)
            SELECT i.chain_key, i.entries, i.first_id, f.prev_hash, i.last_id, l.hash
            FROM inside i JOIN journal_entries f ON f.id = i.first_id JOIN journal_entries l ON l.id = i.last_id
            """,
            r => new ChainSpan
            {
                ChainKey = r.GetString(0),
                Entries = r.GetInt64(1),
                FirstEntryId = r.GetInt64(2),
                FirstPrevHash = ByteString.CopyFrom(r.IsDBNull(3) ? [] : r.GetFieldValue<byte[]>(3)),
                LastEntryId = r.GetInt64(4),
                LastHash = ByteString.CopyFrom(r.GetFieldValue<byte[]>(5)),
            },
            ct,
            period.StartsAt, period.EndsAt);
        return [.. spans.OrderBy(s => s.ChainKey, StringComparer.Ordinal)];
    }

    /// <summary>How many entries inside the period were written at or above the transaction horizon (one probe of the
    /// feed-order index, which reaches only the latest entries).</summary>
    private static Task<long> RecentInsideAsync(LedgerDb db, Period period, string horizon, CancellationToken ct) =>
        db.QueryRowAsync(
            "SELECT count(*) FROM journal_entries WHERE feed_order >= $3::xid8 AND created_at >= $1 AND created_at < $2",
            r => r.GetInt64(0), ct, period.StartsAt, period.EndsAt, horizon);

    private sealed record PoolAccount(long Id, long Balance);

    /// <summary>Locks the year's funding account, then its pool (the order funding and grants take them in), before the
    /// close holds journal inserts off: a write that holds the pool is let finish first, so none waits on the other.</summary>
    private static async Task<PoolAccount?> LockPoolAsync(LedgerDb db, int year, CancellationToken ct)
    {
        var rows = await db.QueryListAsync(
            $"""
            SELECT id, kind, balance_fen FROM accounts
            WHERE year = $1 AND unit_uscc IS NULL AND kind IN ({(short)AccountKind.Funding}, {(short)AccountKind.Pool})
            ORDER BY kind FOR UPDATE
            """,
            r => (Id: r.GetInt64(0), Kind: (AccountKind)r.GetInt16(1), Balance: r.GetInt64(2)),
            ct,
            year);
        return rows.Where(r => r.Kind == AccountKind.Pool).Select(r => new PoolAccount(r.Id, r.Balance)).SingleOrDefault();
    }

    /// <summary>Moves what the pool did not spend to the year's settled account, in an entry of its own.</summary>
    private static async Task<JournalEntryRow> SettleAsync(
        LedgerDb db, int year, long poolAccountId, Fen unspent, DateTimeOffset now, string requestId, string by, CancellationToken ct)
    {
        var settled = await Pools.SettledAccountAsync(db, year, ct);
        var entry = new JournalEntryRow
        {
            Kind = EntryKind.YearSettlement,
            CreatedAt = now,
            Year = year,
            RequestId = requestId,
            Caller = by,
            Memo = $"year {year} closed: what its pool did not spend, settled",
        };
        await Journal.PostAsync(db, entry,
        [
            Leg.Debit(settled, AccountKind.Settled, unspent),
            Leg.Credit(poolAccountId, AccountKind.Pool, unspent),
        ], ct);
        return entry;
    }

    /// <summary>Entries written after the period that reverse an entry inside it (claw-backs found later).</summary>
    private static Task<List<Correction>> CorrectionsAsync(LedgerDb db, PeriodClosingRow row, CancellationToken ct) =>
        db.QueryListAsync(
            """
            SELECT c.id, c.kind, c.created_at, c.reverses_entry_id, c.year, coalesce(c.unit_uscc::text, ''),
                   (SELECT coalesce(sum(p.amount_fen) FILTER (WHERE p.amount_fen > 0), 0) FROM postings p WHERE p.entry_id = c.id)::bigint,
                   c.memo
            FROM journal_entries c JOIN journal_entries r ON r.id = c.reverses_entry_id
            WHERE c.reverses_entry_id IS NOT NULL AND r.created_at >= $1 AND r.created_at < $2 AND c.created_at >= $2
            ORDER BY c.id
            """,
            r => new Correction
            {
                EntryId = r.GetInt64(0),
                Kind = ((EntryKind)r.GetInt16(1)).ToApi(),
                CreatedAt = r.GetFieldValue<DateTimeOffset>(2).ToTimestamp(),
                ReversesEntryId = r.GetInt64(3),
                Year = r.GetInt32(4),
                UnitUscc = r.GetString(5),
                AmountFen = r.GetInt64(6),
                Memo = r.GetString(7),
            },
            ct,
            row.StartsAt, row.EndsAt);

    /// <summary>The checkpoints that sign the period's entries, oldest first, through the one that sealed the closing:
    /// walking back from it until a checkpoint whose heads are, for every chain of the period, before the chain's first
    /// entry in it (a chain's head only moves forward, so no earlier checkpoint signs an entry of the period).</summary>
    private static async Task<List<CheckpointRow>> SigningCheckpointsAsync(LedgerDb db, Closing closing, CancellationToken ct)
    {
        var first = closing.Decoded.Chains.ToDictionary(c => c.ChainKey, c => c.FirstEntryId, StringComparer.Ordinal);
        var taken = new List<CheckpointRow>();
        var before = closing.CheckpointId + 1;
        while (true)
        {
            var page = await db.Checkpoints.AsNoTracking().Where(c => c.Id < before).OrderByDescending(c => c.Id).Take(20).ToListAsync(ct);
            foreach (var checkpoint in page)
            {
                var heads = CheckpointBody.Parser.ParseFrom(checkpoint.Body).Heads;
                if (taken.Count > 0 && heads.All(h => !first.TryGetValue(h.ChainKey, out var firstId) || h.EntryId < firstId))
                {
                    taken.Reverse();
                    return taken;
                }

                taken.Add(checkpoint);
            }

            if (page.Count < 20)
            {
                taken.Reverse();
                return taken;
            }

            before = page[^1].Id;
        }
    }

    private static Closing ToApi(PeriodClosingRow row, bool withBody, IEnumerable<Correction> corrections)
    {
        var closing = new Closing
        {
            ClosingId = row.Id,
            Year = row.Year,
            Month = row.Month,
            ClosedAt = row.ClosedAt.ToTimestamp(),
            ClosedBy = row.ClosedBy,
            CheckpointId = row.CheckpointId,
            Digest = ByteString.CopyFrom(row.Digest),
            Corrections = { corrections },
        };
        if (withBody)
        {
            closing.Body = ByteString.CopyFrom(row.Body);
            closing.Decoded = ClosingBody.Parser.ParseFrom(row.Body);
        }

        return closing;
    }
}
