using Npgsql;
using NpgsqlTypes;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;
using AlertKind = QuotaLedger.Server.Storage.AlertKind;

namespace QuotaLedger.Server.Engine;

/// <summary>A grant closing: released (or expired), what it returned, and a release's joint statement.</summary>
internal readonly record struct GrantClose(long GrantId, GrantState State, long ReturnedFen, string? StatementRef);

/// <summary>Whose figure an alert watches: a year's pool (key "") or a unit-year (key: the unit).</summary>
internal sealed record AlertSubject(int Year, AlertKind Kind, string Key, string? Unit, string? Provider);

/// <summary>What a batch decided, and everything it writes: new accounts and grants, deductions, journal entries with
/// their postings (chained), balance and contract deltas, alerts and their arming, and each request id's outcome.
/// <see cref="WriteAndCommitAsync"/> is the one writer.</summary>
internal sealed class WritePlan(int count)
{
    public WriteOutcome[] Outcomes { get; } = new WriteOutcome[count];
    public List<GrantRow> Grants { get; } = [];
    public List<GrantClose> Closes { get; } = [];
    public List<DeductionRow> Deductions { get; } = [];
    public List<(JournalEntryRow Entry, (long Account, long Fen)[] Postings)> Entries { get; } = [];
    public Dictionary<long, long> AccountDeltas { get; } = [];
    public Dictionary<long, long> GrantedDeltas { get; } = [];
    public Dictionary<long, long> InvoicedDeltas { get; } = [];
    public List<AlertRow> Alerts { get; } = [];

    /// <summary>The arming each threshold is left in, by (year, kind, subject, bp).</summary>
    public Dictionary<(int Year, AlertKind Kind, string Subject, int Bp), bool> Arming { get; } = [];

    /// <summary>The outcome of each request id this batch decided, to record and to replay to duplicates.</summary>
    public Dictionary<(string Caller, string RequestId), IdempotencyRow> Decided { get; } = [];

    /// <summary>Adds an entry to the plan: chained to the head of its unit-year's chain, its postings balanced, and its
    /// accounts' balances moved (every account here is debit-normal: a grant's, a pool, a unit-year's deducted).</summary>
    public JournalEntryRow Post(WriteFacts facts, long unitYearId, JournalEntryRow entry, (long Account, long Fen)[] postings)
    {
        if (postings.Length < 2 || postings.Sum(p => p.Fen) != 0)
        {
            throw new InvalidOperationException($"A {entry.Kind} entry must have at least two postings whose debits equal credits.");
        }

        var head = facts.ChainHeads[unitYearId];
        entry.ChainKey = Chain.KeyOf(entry);
        entry.PrevHash = head;
        entry.Hash = Chain.HashOf(entry, postings.Select(p => (p.Account, p.Fen)), head);
        facts.ChainHeads[unitYearId] = entry.Hash;
        Entries.Add((entry, postings));
        foreach (var (account, fen) in postings)
        {
            AccountDeltas[account] = checked(AccountDeltas.GetValueOrDefault(account) + fen);
        }

        return entry;
    }

    /// <summary>Fires the armed thresholds of <paramref name="subject"/> the figure is past, each an alert raised by
    /// <paramref name="entry"/>, and arms again the disarmed ones it is back from (<see cref="FigureAlerts.Cross"/>).</summary>
    public void Alert(WriteFacts facts, AlertSubject subject, IReadOnlyList<Threshold> thresholds, long figure, long baseFen, JournalEntryRow entry)
    {
        bool Armed(int bp)
        {
            var key = (subject.Year, subject.Kind, subject.Key, bp);
            return Arming.TryGetValue(key, out var armed) || facts.Armed.TryGetValue(key, out armed) ? armed : true;
        }

        var (fire, rearm) = FigureAlerts.Cross(thresholds, Armed);
        foreach (var bp in fire.Order())
        {
            Arming[(subject.Year, subject.Kind, subject.Key, bp)] = false;
            Alerts.Add(new AlertRow
            {
                Year = subject.Year,
                Kind = subject.Kind,
                ThresholdBp = bp,
                UnitUscc = subject.Unit,
                ProviderUscc = subject.Provider,
                FigureFen = figure,
                LimitFen = thresholds.Single(t => t.Bp == bp).Limit,
                BaseFen = baseFen,
                CreatedAt = entry.CreatedAt,
                EntryId = entry.Id,
            });
        }

        foreach (var bp in rearm)
        {
            Arming[(subject.Year, subject.Kind, subject.Key, bp)] = true;
        }
    }

    /// <summary>Every write of the plan, then COMMIT, in one round trip, in an order the tables' rules accept: a grant's
    /// account before the grant, the contract's committed quota before the grant a trigger checks it against, an entry
    /// before its postings and its alerts. Balances and contract totals are guarded by the tables' checks (never
    /// negative, never past the contract), so any violation fails the statement, which makes PostgreSQL skip the rest
    /// of the batch, COMMIT included.</summary>
    public async Task WriteAndCommitAsync(NpgsqlConnection connection, DateTimeOffset now, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(connection);
        AddGrants(batch);
        AddCloses(batch);
        AddDeductions(batch);
        AddEntries(batch);
        // One statement per table. Every account and contract here belongs to a row this transaction has locked (a
        // pool, a contract, a unit-year), so no other writer can hold one of their rows: the order cannot deadlock.
        if (AccountDeltas.Count > 0)
        {
            WriteFacts.Add(batch,
                "UPDATE accounts SET balance_fen = balance_fen + ($2::bigint[])[array_position($1::bigint[], id)] WHERE id = ANY($1)",
                AccountDeltas.Keys.ToArray(), AccountDeltas.Values.ToArray());
        }

        if (InvoicedDeltas.Count > 0)
        {
            WriteFacts.Add(batch,
                "UPDATE contracts SET invoiced_fen = invoiced_fen + ($2::bigint[])[array_position($1::bigint[], id)] WHERE id = ANY($1)",
                InvoicedDeltas.Keys.ToArray(), InvoicedDeltas.Values.ToArray());
        }

        AddAlerts(batch);
        AddOutcomes(batch, now);
        WriteFacts.Add(batch, "COMMIT");
        await batch.ExecuteNonQueryAsync(ct);
    }

    private void AddGrants(NpgsqlBatch batch)
    {
        if (GrantedDeltas.Count > 0)
        {
            // Before the new grants, whose trigger checks the contract's committed quota against the grant's ratio.
            WriteFacts.Add(batch,
                "UPDATE contracts SET granted_fen = granted_fen + ($2::bigint[])[array_position($1::bigint[], id)] WHERE id = ANY($1)",
                GrantedDeltas.Keys.ToArray(), GrantedDeltas.Values.ToArray());
        }

        if (Grants.Count == 0)
        {
            return;
        }

        WriteFacts.Add(batch,
            $"INSERT INTO accounts (id, kind, year, balance_fen) SELECT a.id, {(short)AccountKind.Grant}, a.year, 0 FROM unnest($1::bigint[], $2::int[]) AS a(id, year)",
            Grants.Select(g => g.AccountId).ToArray(), Grants.Select(g => g.Year).ToArray());
        WriteFacts.Add(batch,
            $"""
            INSERT INTO grants (id, contract_id, provider_uscc, unit_uscc, year, unit_year_id, account_id, ratio_bp, amount_fen, state, returned_fen,
                                clawed_back_fen, granted_at, expires_at, gifted_from_grant_id)
            SELECT g.id, g.contract_id, g.provider_uscc, g.unit_uscc, g.year, g.unit_year_id, g.account_id, g.ratio_bp, g.amount_fen,
                   {(short)GrantState.Open}, 0, 0, $10, g.expires_at, g.gifted_from_grant_id
            FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::bigint[], $8::int[], $9::bigint[], $11::timestamptz[],
                        $12::bigint[])
              AS g(id, contract_id, provider_uscc, unit_uscc, year, unit_year_id, account_id, ratio_bp, amount_fen, expires_at, gifted_from_grant_id)
            """,
            Grants.Select(g => g.Id).ToArray(), Grants.Select(g => g.ContractId).ToArray(), Grants.Select(g => g.ProviderUscc).ToArray(),
            Grants.Select(g => g.UnitUscc).ToArray(), Grants.Select(g => g.Year).ToArray(), Grants.Select(g => g.UnitYearId).ToArray(),
            Grants.Select(g => g.AccountId).ToArray(), Grants.Select(g => g.RatioBp).ToArray(), Grants.Select(g => g.AmountFen).ToArray(),
            Grants[0].GrantedAt, Grants.Select(g => g.ExpiresAt).ToArray(), Grants.Select(g => g.GiftedFromGrantId).ToArray());
    }

    /// <summary>Closes grants that are open (the unit-year lock the batch holds is the one every change of a grant takes).</summary>
    private void AddCloses(NpgsqlBatch batch)
    {
        if (Closes.Count == 0)
        {
            return;
        }

        var command = new NpgsqlBatchCommand(
            $"""
            UPDATE grants g SET state = c.state, returned_fen = c.returned_fen, statement_ref = c.statement_ref
            FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::text[]) AS c(id, state, returned_fen, statement_ref)
            WHERE g.id = c.id AND g.state = {(short)GrantState.Open}
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = Closes.Select(c => c.GrantId).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = Closes.Select(c => (short)c.State).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = Closes.Select(c => c.ReturnedFen).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = Closes.Select(c => c.StatementRef).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        batch.BatchCommands.Add(command);
    }

    private void AddDeductions(NpgsqlBatch batch)
    {
        if (Deductions.Count == 0)
        {
            return;
        }

        WriteFacts.Add(batch,
            """
            INSERT INTO deductions (id, grant_id, provider_uscc, invoice_no, invoice_amount_fen, invoice_date, requested_fen, applied_fen, created_at)
            SELECT d.id, d.grant_id, d.provider_uscc, d.invoice_no, d.invoice_amount_fen, d.invoice_date, d.requested_fen, d.applied_fen, $9
            FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::date[], $7::bigint[], $8::bigint[])
              AS d(id, grant_id, provider_uscc, invoice_no, invoice_amount_fen, invoice_date, requested_fen, applied_fen)
            """,
            Deductions.Select(d => d.Id).ToArray(), Deductions.Select(d => d.GrantId).ToArray(), Deductions.Select(d => d.ProviderUscc).ToArray(),
            Deductions.Select(d => d.InvoiceNo).ToArray(), Deductions.Select(d => d.InvoiceAmountFen).ToArray(),
            Deductions.Select(d => d.InvoiceDate).ToArray(), Deductions.Select(d => d.RequestedFen).ToArray(),
            Deductions.Select(d => d.AppliedFen).ToArray(), Deductions[0].CreatedAt);
    }

    private void AddEntries(NpgsqlBatch batch)
    {
        if (Entries.Count == 0)
        {
            return;
        }

        var entries = Entries.Select(e => e.Entry).ToList();
        WriteFacts.Add(batch,
            """
            INSERT INTO journal_entries (id, kind, created_at, year, unit_uscc, provider_uscc, grant_id, deduction_id, request_id, caller, memo,
                                         chain_key, prev_hash, hash, counterparty_uscc, counterparty_grant_id)
            SELECT e.id, e.kind, $12, e.year, e.unit_uscc, e.provider_uscc, e.grant_id, e.deduction_id, e.request_id,
                   e.caller, e.memo, e.chain_key, e.prev_hash, e.hash, e.counterparty_uscc, e.counterparty_grant_id
            FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[],
                        $10::text[], $11::bytea[], $13::bytea[], $14::smallint[], $15::text[], $16::bigint[])
              AS e(id, year, unit_uscc, provider_uscc, grant_id, deduction_id, request_id, caller, memo, chain_key, prev_hash, hash, kind,
                   counterparty_uscc, counterparty_grant_id)
            """,
            entries.Select(e => e.Id).ToArray(), entries.Select(e => e.Year).ToArray(), entries.Select(e => e.UnitUscc!).ToArray(),
            entries.Select(e => e.ProviderUscc!).ToArray(), entries.Select(e => e.GrantId!.Value).ToArray(),
            entries.Select(e => e.DeductionId).ToArray(), entries.Select(e => e.RequestId).ToArray(), entries.Select(e => e.Caller).ToArray(),
            entries.Select(e => e.Memo).ToArray(), entries.Select(e => e.ChainKey).ToArray(), entries.Select(e => e.PrevHash).ToArray(),
            entries[0].CreatedAt, entries.Select(e => e.Hash).ToArray(), entries.Select(e => (short)e.Kind).ToArray(),
            new NpgsqlParameter { Value = entries.Select(e => e.CounterpartyUscc).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text },
            entries.Select(e => e.CounterpartyGrantId).ToArray());
        WriteFacts.Add(batch,
            """
            INSERT INTO postings (entry_id, account_id, amount_fen)
            SELECT p.entry_id, p.account_id, p.amount_fen FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS p(entry_id, account_id, amount_fen)
            """,
            Entries.SelectMany(e => e.Postings.Select(_ => e.Entry.Id)).ToArray(),
            Entries.SelectMany(e => e.Postings.Select(p => p.Account)).ToArray(),
            Entries.SelectMany(e => e.Postings.Select(p => p.Fen)).ToArray());
    }

    private void AddAlerts(NpgsqlBatch batch)
    {
        if (Arming.Count > 0)
        {
            var arming = Arming.ToList();
            WriteFacts.Add(batch,
                """
                INSERT INTO alert_arming (year, kind, subject, threshold_bp, armed, changed_at)
                SELECT a.year, a.kind, a.subject, a.threshold_bp, a.armed, $6
                FROM unnest($1::int[], $2::smallint[], $3::text[], $4::int[], $5::bool[]) AS a(year, kind, subject, threshold_bp, armed)
                ON CONFLICT (year, kind, subject, threshold_bp) DO UPDATE SET armed = excluded.armed, changed_at = excluded.changed_at
                  WHERE alert_arming.armed <> excluded.armed
                """,
                arming.Select(a => a.Key.Year).ToArray(), arming.Select(a => (short)a.Key.Kind).ToArray(), arming.Select(a => a.Key.Subject).ToArray(),
                arming.Select(a => a.Key.Bp).ToArray(), arming.Select(a => a.Value).ToArray(), Entries[^1].Entry.CreatedAt);
        }

        if (Alerts.Count > 0)
        {
            var command = new NpgsqlBatchCommand(
                """
                INSERT INTO alerts (year, kind, threshold_bp, threshold_days, unit_uscc, provider_uscc, figure_fen, limit_fen, base_fen, created_at, entry_id)
                SELECT a.year, a.kind, a.threshold_bp, 0, a.unit_uscc, a.provider_uscc, a.figure_fen, a.limit_fen, a.base_fen, $10, a.entry_id
                FROM unnest($1::int[], $2::smallint[], $3::int[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
                  WITH ORDINALITY AS a(year, kind, threshold_bp, unit_uscc, provider_uscc, figure_fen, limit_fen, base_fen, entry_id, n)
                ORDER BY a.n
                """);
            command.Parameters.Add(new NpgsqlParameter { Value = Alerts.Select(a => a.Year).ToArray() });
            command.Parameters.Add(new NpgsqlParameter { Value = Alerts.Select(a => (short)a.Kind).ToArray() });
            command.Parameters.Add(new NpgsqlParameter { Value = Alerts.Select(a => a.ThresholdBp).ToArray() });
            command.Parameters.Add(new NpgsqlParameter { Value = Alerts.Select(a => a.UnitUscc).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = Alerts.Select(a => a.ProviderUscc).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = Alerts.Select(a => a.FigureFen).ToArray() });
            command.Parameters.Add(new NpgsqlParameter { Value = Alerts.Select(a => a.LimitFen).ToArray() });
            command.Parameters.Add(new NpgsqlParameter { Value = Alerts.Select(a => a.BaseFen).ToArray() });
            command.Parameters.Add(new NpgsqlParameter { Value = Alerts.Select(a => a.EntryId!.Value).ToArray() });
            command.Parameters.Add(new NpgsqlParameter { Value = Alerts[0].CreatedAt });
            batch.BatchCommands.Add(command);
        }
    }

    private void AddOutcomes(NpgsqlBatch batch, DateTimeOffset now)
    {
        var records = Decided.Values;
        if (records.Count == 0)
        {
            return;
        }

        // A plain insert: should a call reusing one of these ids for something else have committed meanwhile, the
        // unique key fails the batch, and the write is tried again alone, which then replays or refuses it.
        WriteFacts.Add(batch,
            """
            INSERT INTO idempotency_records (caller, request_id, method, request_hash, outcome, message, response, created_at)
            SELECT o.caller, o.request_id, o.method, o.request_hash, o.outcome, o.message, o.response, $7
            FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $8::bytea[]) AS o(caller, request_id, request_hash, outcome, message, method, response)
            """,
            records.Select(r => r.Caller).ToArray(), records.Select(r => r.RequestId).ToArray(), records.Select(r => r.RequestHash).ToArray(),
            records.Select(r => r.Outcome!).ToArray(), records.Select(r => r.Message).ToArray(), records.Select(r => r.Method).ToArray(), now,
            records.Select(r => r.Response).ToArray());
    }
}
