using System.Linq.Expressions;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Server.Ledger;

/// <summary>The rules that belong to a grant (its validity, whose it is) and the reads of one.</summary>
internal static class Grants
{
    /// <summary>A grant's status at <paramref name="now"/>: past its expiry it is EXPIRED even before the expiry pass has run.</summary>
    public static GrantStatus StatusOf(GrantState state, DateTimeOffset expiresAt, long remainingFen, DateTimeOffset now) => state switch
    {
        GrantState.Released => GrantStatus.Released,
        GrantState.Expired => GrantStatus.Expired,
        _ when IsDue(expiresAt, now) => GrantStatus.Expired,
        _ when remainingFen == 0 => GrantStatus.Exhausted,
        _ => GrantStatus.Open,
    };

    /// <summary>The validity rule (Art 10): a grant expires at its <c>expires_at</c>, whatever the expiry pass has done.
    /// <see cref="DueAt"/> (LINQ) and <see cref="DueSql"/> (SQL) are this same rule for queries, and <see cref="LiveAt"/>
    /// and <see cref="LiveSql"/> its negation: change one, change them all.</summary>
    public static bool IsDue(DateTimeOffset expiresAt, DateTimeOffset now) => now >= expiresAt;

    /// <summary><see cref="IsDue"/> in a query: the grant is past its expiry at <paramref name="now"/>.</summary>
    public static Expression<Func<GrantRow, bool>> DueAt(DateTimeOffset now) => g => g.ExpiresAt <= now;

    /// <summary>Not <see cref="IsDue"/> in a query: the grant is still within its validity at <paramref name="now"/>.</summary>
    public static Expression<Func<GrantRow, bool>> LiveAt(DateTimeOffset now) => g => g.ExpiresAt > now;

    /// <summary><see cref="IsDue"/> in SQL: grant row <paramref name="alias"/> is past its expiry at the time expression
    /// <paramref name="now"/> (a parameter such as <c>$1</c>, never a pasted value).</summary>
    public static string DueSql(string alias, string now) => $"{alias}.expires_at <= {now}";

    /// <summary>Not <see cref="IsDue"/> in SQL: grant row <paramref name="alias"/> is still within its validity at
    /// <paramref name="now"/> (as <see cref="DueSql"/>).</summary>
    public static string LiveSql(string alias, string now) => $"{alias}.expires_at > {now}";

    /// <summary>The refusal of a grant past its expiry or released, which accepts no <paramref name="what"/>; null for an open one.</summary>
    public static LedgerException? ClosedRefusal(long grantId, GrantState state, DateTimeOffset expiresAt, DateTimeOffset now, string what) =>
        StatusOf(state, expiresAt, remainingFen: 1, now) switch
        {
            GrantStatus.Expired => new LedgerException(Reason.GrantExpired, $"Grant {grantId} expired at {expiresAt:u} and accepts no {what} (Art 10)."),
            GrantStatus.Released => new LedgerException(Reason.GrantClosed, $"Grant {grantId} was released and accepts no {what}."),
            _ => null,
        };

    public static void EnsureOpen(GrantRow grant, DateTimeOffset now, string what)
    {
        if (ClosedRefusal(grant.Id, grant.State, grant.ExpiresAt, now, what) is { } refusal)
        {
            throw refusal;
        }
    }

    /// <summary>The refusal of a grant that does not exist, and of one that is not the caller's: a write answers both
    /// alike, as a read does, so it tells a caller nothing of what is not its own.</summary>
    public static LedgerException Unknown(long grantId) => new(Reason.UnknownGrant, $"There is no grant {grantId}.");

    /// <summary>Locks what a change of the grant may write, in <see cref="LockOrder"/>: its year's pool (a release, an
    /// expiry or a claw-back returns quota there), its contract, its unit-year (the lock every change of the grant
    /// takes), and the grant; then reads the grant with its account. Null when there is no such grant.</summary>
    public static async Task<(UnitYearRow UnitYear, GrantRow Grant)?> LockAsync(LedgerDb db, long grantId, CancellationToken ct)
    {
        // Which rows: a grant's year, contract and unit-year never change, so they are read before the locks.
        var rows = await db.Grants.AsNoTracking().Where(g => g.Id == grantId)
            .Select(g => new { g.Year, g.ContractId, g.UnitYearId }).SingleOrDefaultAsync(ct);
        if (rows is null)
        {
            return null;
        }

        await LockOrder.TakeAsync(db, new LockSet { PoolYears = [rows.Year], ContractIds = [rows.ContractId], UnitYearIds = [rows.UnitYearId], GrantIds = [grantId] }, ct);
        var unitYear = await db.UnitYears.AsNoTracking().SingleAsync(u => u.Id == rows.UnitYearId, ct);
        return (unitYear, await db.Grants.AsNoTracking().Include(g => g.Account).SingleAsync(g => g.Id == grantId, ct));
    }

    /// <summary>What the open grants among <paramref name="grants"/> that are past their expiry still hold: quota that
    /// counts as reclaimed from <paramref name="now"/> on, though the expiry pass has not moved it yet.</summary>
    public static Task<long> LapsedAsync(IQueryable<GrantRow> grants, DateTimeOffset now, CancellationToken ct) =>
        grants.Where(g => g.State == GrantState.Open).Where(DueAt(now)).SumAsync(g => g.Account!.BalanceFen, ct);

    /// <summary>The entry that created the grant: its Grant entry, or for a resident's grant the operator's Gift entry.</summary>
    public static Task<long> OriginEntryAsync(LedgerDb db, long grantId, CancellationToken ct) =>
        db.JournalEntries
            .Where(e => (e.Kind == EntryKind.Grant && e.GrantId == grantId) || (e.Kind == EntryKind.Gift && e.CounterpartyGrantId == grantId))
            .Select(e => e.Id)
            .SingleAsync(ct);

    /// <summary>The grant as it stands at <paramref name="now"/>: once past its expiry it holds nothing, and what it held
    /// counts as returned, whether or not the expiry pass has moved it yet.</summary>
    public static async Task<GrantInfo?> InfoAsync(LedgerDb db, long grantId, DateTimeOffset now, CancellationToken ct)
    {
        if (await ReadAsync(db, grantId, ct) is not { } row)
        {
            return null;
        }

        var grant = row.Grant;
        var deducted = await db.Deductions.Where(d => d.GrantId == grantId).SumAsync(d => d.AppliedFen, ct);
        return Info(row, new Held(row.BalanceFen, deducted, grant.ReturnedFen, grant.ClawedBackFen), grant.State, now);
    }

    /// <summary>The grant as the ledger stood at <paramref name="asOf"/>, from the journal alone: what it held, what was
    /// deducted from it, returned by release or expiry and clawed back are the postings to its account of entries created
    /// at or before then, and expiry is as of then: past expires_at it holds nothing and what it held counts as returned,
    /// as though the expiry pass had posted at expires_at. Null when the grant did not exist yet. A release of a grant
    /// that held nothing posts no entry, so the journal has no time for it: such a grant reads RELEASED at any time.</summary>
    public static async Task<GrantInfo?> InfoAsOfAsync(LedgerDb db, long grantId, DateTimeOffset asOf, CancellationToken ct)
    {
        if (await ReadAsync(db, grantId, ct) is not { } row || row.Grant.GrantedAt > asOf)
        {
            return null;
        }

        var (held, releasedThen) = await db.QueryRowAsync(
            $"""
            SELECT coalesce(sum(p.amount_fen), 0)::bigint,
                   coalesce(-sum(p.amount_fen) FILTER (WHERE e.kind = {(short)EntryKind.Deduction}), 0)::bigint,
                   coalesce(-sum(p.amount_fen) FILTER (WHERE e.kind IN ({(short)EntryKind.Expiry}, {(short)EntryKind.Release})), 0)::bigint,
                   coalesce(-sum(p.amount_fen) FILTER (WHERE e.kind = {(short)EntryKind.ClawBack}), 0)::bigint,
                   coalesce(bool_or(e.kind = {(short)EntryKind.Release}), false)
            FROM postings p JOIN journal_entries e ON e.id = p.entry_id
            WHERE p.account_id = $2 AND e.created_at <= $1
            """,
            r => (new Held(r.GetInt64(0), r.GetInt64(1), r.GetInt64(2), r.GetInt64(3)), r.GetBoolean(4)),
            ct,
            asOf, row.Grant.AccountId);
        var released = releasedThen || (row.Grant.State == GrantState.Released
            && !await db.JournalEntries.AnyAsync(e => e.GrantId == grantId && e.Kind == EntryKind.Release, ct));
        return Info(row, held, released ? GrantState.Released : GrantState.Open, asOf);
    }

    /// <summary>The year's open grants that still hold quota and expire within <paramref name="within"/> of
    /// <paramref name="now"/> (Art 10), the soonest first, at most <paramref name="limit"/>; each as GetGrant reads it.</summary>
    public static async Task<List<GrantInfo>> ExpiringAsync(LedgerDb db, int year, DateTimeOffset now, TimeSpan within, int limit, CancellationToken ct)
    {
        var until = now + within;
        var ids = await db.Grants.AsNoTracking()
            .Where(g => g.Year == year && g.State == GrantState.Open && g.Account!.BalanceFen > 0)
            .Where(LiveAt(now)).Where(DueAt(until))
            .OrderBy(g => g.ExpiresAt).ThenBy(g => g.Id)
            .Select(g => g.Id)
            .Take(limit)
            .ToListAsync(ct);
        var grants = new List<GrantInfo>(ids.Count);
        foreach (var id in ids)
        {
            grants.Add(await InfoAsync(db, id, now, ct) ?? throw Unknown(id));
        }

        return grants;
    }

    /// <summary>A grant just made (a gift's, say), as <see cref="InfoAsync"/> reads it at once: holding its whole amount.</summary>
    public static GrantInfo NewInfo(GrantRow grant, string contractNo) =>
        Info(new GrantRead(grant, grant.AmountFen, contractNo), new Held(grant.AmountFen, 0, 0, 0), GrantState.Open, grant.GrantedAt);

    /// <summary>What a grant's account held and where the rest went, at one time.</summary>
    private readonly record struct Held(long BalanceFen, long DeductedFen, long ReturnedFen, long ClawedBackFen);

    private sealed record GrantRead(GrantRow Grant, long BalanceFen, string ContractNo);

    private static Task<GrantRead?> ReadAsync(LedgerDb db, long grantId, CancellationToken ct) =>
        db.Grants.AsNoTracking()
            .Where(g => g.Id == grantId)
            .Select(g => new GrantRead(g, g.Account!.BalanceFen, db.Contracts.Where(c => c.Id == g.ContractId).Select(c => c.ContractNo).Single()))
            .SingleOrDefaultAsync(ct);

    /// <summary>The grant's figures at <paramref name="at"/> from what it <paramref name="held"/> then and its state then.
    /// Expiry takes effect at expires_at: an open grant past it holds nothing, and what it held counts as returned.</summary>
    private static GrantInfo Info(GrantRead row, Held held, GrantState state, DateTimeOffset at)
    {
        var grant = row.Grant;
        var lapsed = state == GrantState.Open && IsDue(grant.ExpiresAt, at) ? held.BalanceFen : 0;
        return new GrantInfo
        {
            GrantId = grant.Id,
            ProviderUscc = grant.ProviderUscc,
            UnitUscc = grant.UnitUscc,
            ContractNo = row.ContractNo,
            Year = grant.Year,
            RatioBp = grant.RatioBp,
            AmountFen = grant.AmountFen,
            RemainingFen = held.BalanceFen - lapsed,
            DeductedFen = held.DeductedFen,
            ReturnedFen = held.ReturnedFen + lapsed,
            ClawedBackFen = held.ClawedBackFen,
            Status = StatusOf(state, grant.ExpiresAt, held.BalanceFen, at),
            GrantedAt = grant.GrantedAt.ToTimestamp(),
            ExpiresAt = grant.ExpiresAt.ToTimestamp(),
            GiftedFromGrantId = grant.GiftedFromGrantId ?? 0,
            StatementRef = state == GrantState.Released ? grant.StatementRef ?? "" : "",
        };
    }
}
