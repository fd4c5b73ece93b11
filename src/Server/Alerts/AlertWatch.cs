using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using NpgsqlTypes;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Alerts;

/// <summary>The figure alerts: a unit-year's committed quota against shares of its cap, a year's pool against a share of
/// its funding. <see cref="Journal.PostAsync"/> calls <see cref="AfterEntryAsync"/> for every entry it posts, after the
/// balances moved and in the entry's transaction, so an alert commits or rolls back with the entry that crossed its
/// threshold, and a replayed request (which posts nothing) raises none. A threshold fires when it is armed (no state
/// row, or armed) and the figure is past it, and is disarmed in the same statement (a unique key, so two transactions
/// never both fire it); it is armed again when an entry finds the figure back on the other side.</summary>
internal static class AlertWatch
{
    public static async Task AfterEntryAsync(LedgerDb db, JournalEntryRow entry, IReadOnlyList<Leg> legs, CancellationToken ct)
    {
        var (poolYears, unitYears) = await SubjectsAsync(db, [.. legs.Select(l => l.AccountId)], ct);
        foreach (var year in poolYears)
        {
            await PoolAsync(db, year, entry, ct);
        }

        foreach (var (unit, year) in unitYears)
        {
            await UnitYearAsync(db, unit, year, entry, ct);
        }
    }

    /// <summary>Which figures the entry's accounts belong to: a pool or funding account, its year's pool; a grant or a
    /// unit-year account, that unit-year; a closed year's settled account, none.</summary>
    private static async Task<(List<int> PoolYears, List<(string Unit, int Year)> UnitYears)> SubjectsAsync(LedgerDb db, long[] accountIds, CancellationToken ct)
    {
        var pool = new List<int>();
        var unitYears = new List<(string, int)>();
        await db.QueryRowAsync(
            $"""
            SELECT array_agg(DISTINCT a.year) FILTER (WHERE a.kind IN ({(short)AccountKind.Pool}, {(short)AccountKind.Funding})),
                   array_agg(DISTINCT coalesce(g.unit_uscc::text, a.unit_uscc::text) || ':' || a.year)
                     FILTER (WHERE a.kind NOT IN ({(short)AccountKind.Pool}, {(short)AccountKind.Funding})
                             AND coalesce(g.unit_uscc::text, a.unit_uscc::text) IS NOT NULL)
            FROM accounts a LEFT JOIN grants g ON g.account_id = a.id
            WHERE a.id = ANY($1)
            """,
            r =>
            {
                if (!r.IsDBNull(0))
                {
                    pool.AddRange(r.GetFieldValue<int[]>(0));
                }

                if (!r.IsDBNull(1))
                {
                    unitYears.AddRange(r.GetFieldValue<string[]>(1).Select(k => (k[..18], int.Parse(k[19..], System.Globalization.CultureInfo.InvariantCulture))));
                }

                return 0;
            },
            ct,
            accountIds);
        return (pool, unitYears);
    }

    private static async Task UnitYearAsync(LedgerDb db, string unit, int year, JournalEntryRow entry, CancellationToken ct)
    {
        var rules = await AlertRules.ForYearAsync(db, year, ct);
        if (rules.UnitYearCapBp.Length == 0)
        {
            return;
        }

        var figures = await UnitYears.FiguresAsync(db, unit, year, entry.CreatedAt, ct);
        if (!figures.Cap.IsPositive)
        {
            return;
        }

        var committed = (figures.GrantedOpen + figures.Deducted).Value;
        var thresholds = rules.UnitYearCapBp.Select(bp => (Bp: bp, Limit: ShareRoundedUp(figures.Cap.Value, bp))).ToList();
        await CrossAsync(db, new Subject(year, AlertKind.UnitYearCap, unit, unit, entry.ProviderUscc), committed, figures.Cap.Value,
            [.. thresholds.Select(t => (t.Bp, t.Limit, Past: committed >= t.Limit))], entry, ct);
    }

    private static async Task PoolAsync(LedgerDb db, int year, JournalEntryRow entry, CancellationToken ct)
    {
        var rules = await AlertRules.ForYearAsync(db, year, ct);
        if (rules.PoolLowBp == 0)
        {
            return;
        }

        // The pool as GetProgramYear shows it: what expired grants hold counts as returned whether or not the expiry
        // pass has run (POLICY.md, Expire).
        var (funded, pool) = await db.QueryRowAsync(
            $"""
            SELECT coalesce((SELECT balance_fen FROM accounts WHERE kind = {(short)AccountKind.Funding} AND year = $1), 0)::bigint,
                   {Pools.AvailableSql("$1", "$2")}
            """,
            r => (r.GetInt64(0), r.GetInt64(1)),
            ct,
            year, entry.CreatedAt);
        if (funded <= 0)
        {
            return;
        }

        var limit = (long)((Int128)funded * rules.PoolLowBp / 10_000);
        await CrossAsync(db, new Subject(year, AlertKind.PoolLow, "", null, null), pool, funded, [(rules.PoolLowBp, limit, pool < limit)], entry, ct);
    }

    /// <summary>ceil(value * bp / 10000): the least figure that has reached bp of value.</summary>
    private static long ShareRoundedUp(long value, int bp) => (long)(((Int128)value * bp + 9_999) / 10_000);

    private sealed record Subject(int Year, AlertKind Kind, string Key, string? Unit, string? Provider);

    /// <summary>Fires the armed thresholds the figure is past (disarming them) and arms the disarmed ones it is not past,
    /// in one round trip.</summary>
    private static async Task CrossAsync(LedgerDb db, Subject subject, long figure, long baseFen,
        List<(int Bp, long Limit, bool Past)> thresholds, JournalEntryRow entry, CancellationToken ct)
    {
        var past = thresholds.Where(t => t.Past).ToList();
        var back = thresholds.Where(t => !t.Past).Select(t => t.Bp).ToArray();
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await using var batch = new NpgsqlBatch(connection)
        {
            Transaction = (NpgsqlTransaction?)db.Database.CurrentTransaction?.GetDbTransaction(),
        };
        if (past.Count > 0)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(
                """
                WITH fired AS (
                  INSERT INTO alert_arming (year, kind, subject, threshold_bp, armed, changed_at)
                  SELECT $1, $2, $3, bp, false, $4 FROM unnest($5::int[]) bp
                  ON CONFLICT (year, kind, subject, threshold_bp) DO UPDATE SET armed = false, changed_at = excluded.changed_at
                    WHERE alert_arming.armed
                  RETURNING threshold_bp)
                INSERT INTO alerts (year, kind, threshold_bp, threshold_days, unit_uscc, provider_uscc, figure_fen, limit_fen, base_fen, created_at, entry_id)
                SELECT $1, $2, t.bp, 0, $7, $8, $9, t.limit_fen, $10, $4, $11
                FROM fired f JOIN unnest($5::int[], $6::bigint[]) t(bp, limit_fen) ON t.bp = f.threshold_bp
                ORDER BY t.bp
                """)
            {
                Parameters =
                {
                    new() { Value = subject.Year },
                    new() { Value = (short)subject.Kind },
                    new() { Value = subject.Key },
                    new() { Value = entry.CreatedAt },
                    new() { Value = past.Select(t => t.Bp).ToArray() },
                    new() { Value = past.Select(t => t.Limit).ToArray() },
                    new() { Value = (object?)subject.Unit ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text },
                    new() { Value = (object?)subject.Provider ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text },
                    new() { Value = figure },
                    new() { Value = baseFen },
                    new() { Value = entry.Id },
                },
            });
        }

        if (back.Length > 0)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(
                "UPDATE alert_arming SET armed = true, changed_at = $5 WHERE year = $1 AND kind = $2 AND subject = $3 AND threshold_bp = ANY($4) AND NOT armed")
            {
                Parameters =
                {
                    new() { Value = subject.Year },
                    new() { Value = (short)subject.Kind },
                    new() { Value = subject.Key },
                    new() { Value = back },
                    new() { Value = entry.CreatedAt },
                },
            });
        }

        await batch.ExecuteNonQueryAsync(ct);
    }
}
