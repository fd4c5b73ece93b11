using System.Diagnostics;
using Google.Protobuf;
using Npgsql;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.Server.Telemetry;
using QuotaLedger.V1;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Server.Ledger;

/// <summary>A deduction waiting in <see cref="DeductionQueue"/>: the request, the unit-year its grant belongs to (null
/// when there is no such grant), and where its answer goes once the transaction that decided it has committed.</summary>
internal sealed class PendingDeduction(DeductionRequest request, long? unitYearId)
{
    public DeductionRequest Request { get; } = request;

    public long? UnitYearId { get; } = unitYearId;

    public byte[] Hash { get; } = Idempotency.Hash(nameof(LedgerGrpcService.Deduct), request.Sent);

    public TaskCompletionSource<DeductResponse> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Its place in the queue while it waits there; null once a worker has taken it (or it was withdrawn).</summary>
    public LinkedListNode<PendingDeduction>? Node { get; set; }

    public (string Caller, string RequestId) Key => (Request.By, Request.RequestId);

    /// <summary>The span of the call that sent it, if any, which its transaction's span links to.</summary>
    public ActivityContext CallContext { get; } = Activity.Current?.Context ?? default;
}

/// <summary>What a coalesced transaction decided for one deduction: its response, or its refusal; or, when its
/// unit-year or contract was locked by another session and the transaction did not wait, nothing yet.
/// <see cref="Replayed"/>: the request id's first outcome answered again, nothing decided now.</summary>
internal readonly record struct DeductionOutcome(DeductResponse? Response, LedgerException? Refusal, bool Replayed = false)
{
    public static DeductionOutcome NotYet { get; } = new(null, null);

    public bool Deferred => Response is null && Refusal is null;
}

/// <summary>One or many deductions in one transaction, each decided by <see cref="Deductions.Decide"/> in turn against
/// the running balances. Two round trips: the first locks the unit-years (by id) and the grants' contracts (by id),
/// then reads every fact the rules need. Without waiting for locks, rows another session holds are skipped, and the
/// deductions that need them are left undecided (<see cref="DeductionOutcome.Deferred"/>), nothing of them written; the second writes every entry, deduction, posting, balance and idempotency
/// record and commits. A deduction its rules refuse is refused alone: its refusal is recorded against its request id
/// and nothing of it is written. An error of the transaction as a whole (a deadlock, a unique violation raced in by
/// another unit-year) throws, and nothing of the batch is kept.</summary>
internal static class DeductionBatch
{
    private const string Method = nameof(LedgerGrpcService.Deduct);

    private const string LockUnitYears =
        "SELECT id, unit_uscc, year, deducted_account_id FROM unit_years WHERE id = ANY($1) ORDER BY id FOR UPDATE";

    private const string LockUnitYearsUnlessHeld =
        "SELECT id, unit_uscc, year, deducted_account_id FROM unit_years WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED";

    private const string LockContracts =
        """
        SELECT c.id, c.amount_fen, c.invoiced_fen FROM contracts c
        WHERE c.id = ANY(ARRAY(SELECT g.contract_id FROM unnest($1::bigint[], $2::text[]) AS k(id, provider) JOIN grants g ON g.id = k.id AND g.provider_uscc = k.provider::bpchar)) ORDER BY c.id FOR UPDATE
        """;

    private const string ReadUnitYears =
        "SELECT id, unit_uscc, year, deducted_account_id FROM unit_years WHERE id = ANY($1) ORDER BY id";

    private const string ReadContracts =
        """
        SELECT c.id, c.amount_fen, c.invoiced_fen FROM contracts c
        WHERE c.id = ANY(ARRAY(SELECT g.contract_id FROM unnest($1::bigint[], $2::text[]) AS k(id, provider) JOIN grants g ON g.id = k.id AND g.provider_uscc = k.provider::bpchar)) ORDER BY c.id
        """;

    private const string LockContractsUnlessHeld =
        """
        SELECT c.id, c.amount_fen, c.invoiced_fen FROM contracts c
        WHERE c.id = ANY(ARRAY(SELECT g.contract_id FROM unnest($1::bigint[], $2::text[]) AS k(id, provider) JOIN grants g ON g.id = k.id AND g.provider_uscc = k.provider::bpchar)) ORDER BY c.id FOR UPDATE SKIP LOCKED
        """;

    /// <summary>Applies the deductions on <paramref name="connection"/>, which is open and in no transaction, and leaves
    /// it so. With <paramref name="waitForLocks"/> it waits for every lock (at most the session's lock_timeout, after
    /// which it throws); without, the deductions whose rows another session holds come back deferred.</summary>
    public static async Task<DeductionOutcome[]> RunAsync(
        NpgsqlConnection connection, IReadOnlyList<PendingDeduction> items, DateTimeOffset now, bool waitForLocks, LedgerMetrics metrics,
        CancellationToken ct)
    {
        now = Chain.ToStoredPrecision(now);
        metrics.BatchStarted(items.Count, waitForLocks);
        using var activity = ServerTelemetry.Source.HasListeners() ? StartActivity(items, waitForLocks) : null;
        try
        {
            var state = await ReadAsync(connection, items, now, waitForLocks ? Reading.Locked : Reading.SkipLocked, ct);
            metrics.LocksHeld(state.LockWait, waitForLocks);
            var plan = Decide(state, items, now);
            var writing = Stopwatch.GetTimestamp();
            await WriteAndCommitAsync(connection, plan, now, ct);
            metrics.Committed(Stopwatch.GetElapsedTime(writing), waitForLocks);
            metrics.Committed(plan.Outcomes);
            activity?.SetTag("quotaledger.deductions.applied", plan.Applied.Count);
            return plan.Outcomes;
        }
        catch (Exception e)
        {
            activity?.SetStatus(ActivityStatusCode.Error, e.Message).SetTag(LedgerMetrics.Tags.ErrorType, LedgerMetrics.ErrorType(e));
            await RollBackQuietlyAsync(connection);
            throw;
        }
    }

    /// <summary>The transaction's span: a child of the call's when it runs in one (a batch of one), else a root linked
    /// to every call it serves (a worker's coalesced batch). Made only while a listener is there.</summary>
    private static Activity? StartActivity(IReadOnlyList<PendingDeduction> items, bool waitForLocks)
    {
        var links = items.Where(i => i.CallContext != default && i.CallContext != Activity.Current?.Context)
            .Select(i => new ActivityLink(i.CallContext)).ToList();
        return ServerTelemetry.Source.StartActivity(ActivityKind.Internal, links: links, name: "DeductionBatch")
            ?.SetTag("quotaledger.deductions.batch.size", items.Count)
            .SetTag(LedgerMetrics.Tags.Locking, waitForLocks ? "wait" : "skip_locked");
    }

    /// <summary>A dry run of one deduction: its facts read by the very statements <see cref="RunAsync"/> reads them with,
    /// but in one read-only REPEATABLE READ snapshot that takes no lock (a real deduction of the same unit-year never
    /// waits for it, nor it for one), then decided by <see cref="Deductions.Decide"/> as <see cref="Apply"/> decides.
    /// Nothing is written; the request id is neither read nor recorded. A prediction at read time.</summary>
    public static async Task<Explanation> ExplainAsync(NpgsqlConnection connection, PendingDeduction item, DateTimeOffset now, CancellationToken ct)
    {
        now = Chain.ToStoredPrecision(now);
        State state;
        try
        {
            state = await ReadAsync(connection, [item], now, Reading.Snapshot, ct);
        }
        finally
        {
            await RollBackQuietlyAsync(connection);
        }

        var request = item.Request;
        var (grant, contract, earlier) = FactsOf(state, request);
        var decision = Deductions.Decide(request.Claim, grant, contract, earlier, now);
        var explanation = new Explanation
        {
            WouldApply = decision.Refusal is null,
            Reason = decision.Refusal?.Reason.Word() ?? "",
            Message = decision.Refusal?.Message ?? "",
            RequestedFen = decision.Requested.Value,
            AppliedFen = decision.Applied.Value,
            EvaluatedAt = now.ToTimestamp(),
        };
        if (grant is null || contract is null || grant.Provider != request.Provider)
        {
            // Not the caller's grant: nothing of it is shown.
            return explanation;
        }

        explanation.RequestedFen = request.InvoiceAmount.ShareAt(new BasisPoints(grant.RatioBp)).Value;
        explanation.RatioBp = grant.RatioBp;
        explanation.UnitUscc = grant.Unit;
        explanation.Year = grant.Year;
        explanation.ExpiresAt = grant.ExpiresAt.ToTimestamp();
        explanation.GrantBalanceFen = Grants.IsDue(grant.ExpiresAt, now) ? 0 : grant.BalanceFen;
        explanation.ContractUninvoicedFen = Math.Max(0, contract.AmountFen - contract.InvoicedFen);
        if (state.Figures.TryGetValue(grant.UnitYearId, out var figures))
        {
            explanation.UnitYearHeadroomFen = figures.Headroom.Value;
        }

        return explanation;
    }

    /// <summary>How <see cref="ReadAsync"/> reads: waiting for the row locks, skipping rows another session holds, or
    /// (a dry run) in a read-only snapshot that locks nothing.</summary>
    private enum Reading
    {
        Locked,
        SkipLocked,
        Snapshot,
    }

    /// <summary>Everything the rules read, as it stood once the locks were held.</summary>
    private sealed class State
    {
        public Dictionary<(string, string), IdempotencyRow> Earlier { get; } = [];
        public Dictionary<long, UnitYearRow> UnitYears { get; } = [];
        public Dictionary<long, UnitYearFigures> Figures { get; } = [];
        public Dictionary<long, byte[]> ChainHeads { get; } = [];
        public Dictionary<long, GrantFacts> Grants { get; } = [];
        public Dictionary<long, ContractFacts> Contracts { get; } = [];
        /// <summary>The deduction that took each invoice number of the batch, by (provider, invoice number): read from the
        /// table, then added to as the batch applies its own (their ids are drawn before anything is inserted).</summary>
        public Dictionary<(string, string), EarlierDeduction> Invoices { get; } = [];
        public Queue<(long Deduction, long Entry)> Ids { get; } = new();
        /// <summary>From sending the first round trip until the unit-year and contract rows were locked and read.</summary>
        public TimeSpan LockWait { get; set; }
    }

    private sealed class Plan(int count)
    {
        public DeductionOutcome[] Outcomes { get; } = new DeductionOutcome[count];
        public List<(DeductionRow Deduction, JournalEntryRow Entry, long DebitAccount, long CreditAccount)> Applied { get; } = [];
        public Dictionary<long, long> AccountDeltas { get; } = [];
        public Dictionary<long, long> ContractDeltas { get; } = [];
        /// <summary>The outcome of each request id this batch decided, to record and to replay to duplicates.</summary>
        public Dictionary<(string Caller, string RequestId), IdempotencyRow> Decided { get; } = [];
    }

    private static async Task<State> ReadAsync(
        NpgsqlConnection connection, IReadOnlyList<PendingDeduction> items, DateTimeOffset now, Reading reading, CancellationToken ct)
    {
        var keys = items.Select(i => i.Key).Distinct().ToList();
        var unitYearIds = items.Where(i => i.UnitYearId is not null).Select(i => i.UnitYearId!.Value).Distinct().Order().ToArray();
        // Each grant as its caller names it: a grant is read and its contract locked only with the provider it was made
        // by, so another provider's grant is neither read nor locked, and is refused as one that does not exist.
        var grants = items.Select(i => (i.Request.GrantId, i.Request.Provider)).Distinct().ToArray();
        var grantIds = grants.Select(g => g.GrantId).ToArray();
        var grantProviders = grants.Select(g => g.Provider).ToArray();

        await using var batch = new NpgsqlBatch(connection);
        Add(batch, reading == Reading.Snapshot ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN ISOLATION LEVEL READ COMMITTED");
        // Every statement of a batch looks rows up by key. A plan made while a table was nearly empty (a sequential
        // scan, a hash join) would stay cached on this connection as the table grows to millions of rows, and the cost
        // of a batch would grow with it: this session never prefers a sequential scan, so every plan probes an index.
        Add(batch, "SET LOCAL enable_seqscan = off");
        Add(batch, reading switch { Reading.Locked => LockUnitYears, Reading.SkipLocked => LockUnitYearsUnlessHeld, _ => ReadUnitYears }, unitYearIds);
        Add(batch, reading switch { Reading.Locked => LockContracts, Reading.SkipLocked => LockContractsUnlessHeld, _ => ReadContracts }, grantIds, grantProviders);
        Add(batch,
            $"""
            SELECT g.id, g.contract_id, g.provider_uscc, g.unit_uscc, g.year, g.unit_year_id, g.account_id, g.ratio_bp, g.state,
                   g.expires_at,
                   (SELECT a.balance_fen FROM accounts a WHERE a.id = g.account_id),
                   (SELECT p.effective_from FROM year_policies p WHERE p.year = g.year),
                   {Eligibility.DealingColumns}
            FROM unnest($1::bigint[], $2::text[]) AS k(id, provider)
            JOIN grants g ON g.id = k.id AND g.provider_uscc = k.provider::bpchar
            CROSS JOIN LATERAL (SELECT g.provider_uscc, g.unit_uscc) d
            """,
            grantIds, grantProviders);
        Add(batch,
            $"""
            SELECT uy.id, {UnitYears.FiguresColumns},
              coalesce((SELECT e.hash FROM journal_entries e WHERE e.chain_key = uy.unit_uscc || ':' || uy.year ORDER BY e.id DESC LIMIT 1), ''::bytea)
            FROM unit_years uy WHERE uy.id = ANY($2)
            """,
            now, unitYearIds);
        // Every lookup by key is a LATERAL probe of its unique index: a join with the arrays would let a plan made while
        // the table was small (a hash join over a sequential scan) stay cached as it grows to millions of rows.
        Add(batch,
            """
            SELECT i.provider_uscc, i.invoice_no, found.id, found.grant_id
            FROM unnest($1::text[], $2::text[]) AS i(provider_uscc, invoice_no)
            CROSS JOIN LATERAL (SELECT d.id, d.grant_id FROM deductions d WHERE d.provider_uscc = i.provider_uscc AND d.invoice_no = i.invoice_no LIMIT 1) found
            """,
            items.Select(i => i.Request.Provider).ToArray(), items.Select(i => i.Request.InvoiceNo).ToArray());
        // Earlier outcomes of the batch's request ids. A duplicate of a deduction waiting here is a deduction of the same
        // grant, so whichever transaction applied it has committed before this one got the unit-year's lock.
        Add(batch,
            """
            SELECT r.caller, r.request_id, r.method, r.request_hash, r.outcome, r.message, r.response
            FROM unnest($1::text[], $2::text[]) AS c(caller, request_id)
            CROSS JOIN LATERAL (SELECT * FROM idempotency_records x WHERE x.caller = c.caller AND x.request_id = c.request_id LIMIT 1) r
            WHERE r.outcome IS NOT NULL
            """,
            keys.Select(k => k.Caller).ToArray(), keys.Select(k => k.RequestId).ToArray());
        if (reading != Reading.Snapshot)
        {
            // A dry run draws no ids (nor could it, read-only).
            Add(batch, "SELECT nextval('deductions_id_seq'), nextval('journal_entries_id_seq') FROM generate_series(1, $1)", items.Count);
        }

        var state = new State();
        var sent = Stopwatch.GetTimestamp();
        await using var reader = await batch.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var unitYear = new UnitYearRow { Id = reader.GetInt64(0), UnitUscc = reader.GetString(1), Year = reader.GetInt32(2), DeductedAccountId = reader.GetInt64(3) };
            state.UnitYears.Add(unitYear.Id, unitYear);
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var contract = new ContractFacts { Id = reader.GetInt64(0), AmountFen = reader.GetInt64(1), InvoicedFen = reader.GetInt64(2) };
            state.Contracts.Add(contract.Id, contract);
        }

        // Both locking statements have answered: every lock the transaction takes is held.
        state.LockWait = Stopwatch.GetElapsedTime(sent);

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var provider = reader.GetString(2);
            var unit = reader.GetString(3);
            var grant = new GrantFacts
            {
                Id = reader.GetInt64(0),
                ContractId = reader.GetInt64(1),
                Provider = provider,
                Unit = unit,
                Year = reader.GetInt32(4),
                UnitYearId = reader.GetInt64(5),
                AccountId = reader.GetInt64(6),
                RatioBp = reader.GetInt32(7),
                State = (GrantState)reader.GetInt16(8),
                ExpiresAt = reader.GetFieldValue<DateTimeOffset>(9),
                BalanceFen = reader.GetInt64(10),
                EffectiveFrom = reader.IsDBNull(11) ? DateOnly.MaxValue : reader.GetFieldValue<DateOnly>(11),
                Dealing = Eligibility.ReadDealing(reader, 12, provider, unit),
            };
            state.Grants.Add(grant.Id, grant);
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            if (!state.UnitYears.TryGetValue(reader.GetInt64(0), out var unitYear))
            {
                // Held by another session: its deductions wait for a transaction that waits for it.
                continue;
            }

            state.Figures.Add(unitYear.Id, UnitYears.ReadFigures(reader, 1, unitYear.UnitUscc, unitYear.Year));
            state.ChainHeads.Add(unitYear.Id, reader.GetFieldValue<byte[]>(5));
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            state.Invoices.TryAdd((reader.GetString(0), reader.GetString(1)), new EarlierDeduction(reader.GetInt64(2), reader.GetInt64(3)));
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var record = new IdempotencyRow
            {
                Caller = reader.GetString(0),
                RequestId = reader.GetString(1),
                Method = reader.GetString(2),
                RequestHash = reader.GetFieldValue<byte[]>(3),
                Outcome = reader.GetString(4),
                Message = reader.IsDBNull(5) ? null : reader.GetString(5),
                Response = reader.IsDBNull(6) ? null : reader.GetFieldValue<byte[]>(6),
            };
            state.Earlier[(record.Caller, record.RequestId)] = record;
        }

        if (await reader.NextResultAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                state.Ids.Enqueue((reader.GetInt64(0), reader.GetInt64(1)));
            }
        }

        return state;
    }

    /// <summary>The rules, applied to each deduction in arrival order against the running balances.</summary>
    private static Plan Decide(State state, IReadOnlyList<PendingDeduction> items, DateTimeOffset now)
    {
        var plan = new Plan(items.Count);
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            if (!Locked(state, item))
            {
                plan.Outcomes[i] = DeductionOutcome.NotYet;
                continue;
            }

            var key = item.Key;
            if (plan.Decided.TryGetValue(key, out var first) || state.Earlier.TryGetValue(key, out first))
            {
                plan.Outcomes[i] = Replay(first, item, state.Invoices);
                continue;
            }

            DeductionOutcome outcome;
            try
            {
                outcome = new DeductionOutcome(Apply(state, plan, item, now), null);
            }
            catch (LedgerException refusal)
            {
                outcome = new DeductionOutcome(null, refusal);
            }

            plan.Outcomes[i] = outcome;
            var record = new IdempotencyRow
            {
                Caller = key.Caller,
                RequestId = key.RequestId,
                Method = Method,
                RequestHash = item.Hash,
                Outcome = outcome.Refusal is { } r ? r.Reason.Word() : Idempotency.Ok,
                Message = outcome.Refusal?.Message,
                Response = outcome.Response?.ToByteArray(),
            };
            plan.Decided.Add(key, record);
        }

        return plan;
    }

    /// <summary>Whether the transaction holds the rows a deduction needs: its unit-year's and its grant's contract's.</summary>
    private static bool Locked(State state, PendingDeduction item) =>
        (item.UnitYearId is not { } unitYearId || state.UnitYears.ContainsKey(unitYearId))
        && (state.Grants.GetValueOrDefault(item.Request.GrantId) is not { } grant || state.Contracts.ContainsKey(grant.ContractId));

    private static DeductResponse Apply(State state, Plan plan, PendingDeduction item, DateTimeOffset now)
    {
        var request = item.Request;
        var (grant, contract, earlier) = FactsOf(state, request);
        var decision = Deductions.Decide(request.Claim, grant, contract, earlier, now);
        if (decision.Refusal is { } refusal)
        {
            throw refusal;
        }

        // Every rule passed: the deduction takes effect in the running state.
        var (requested, applied) = (decision.Requested, decision.Applied);
        var unitYear = state.UnitYears[grant!.UnitYearId];
        var head = state.ChainHeads[unitYear.Id];
        var (deductionId, entryId) = state.Ids.Dequeue();
        var deduction = new DeductionRow
        {
            Id = deductionId,
            GrantId = grant.Id,
            ProviderUscc = request.Provider,
            InvoiceNo = request.InvoiceNo,
            InvoiceAmountFen = request.InvoiceAmount.Value,
            InvoiceDate = request.InvoiceDate,
            RequestedFen = requested.Value,
            AppliedFen = applied.Value,
            CreatedAt = now,
        };
        var entry = new JournalEntryRow
        {
            Id = entryId,
            Kind = EntryKind.Deduction,
            CreatedAt = now,
            Year = grant.Year,
            UnitUscc = grant.Unit,
            ProviderUscc = request.Provider,
            GrantId = grant.Id,
            DeductionId = deductionId,
            RequestId = request.RequestId,
            Caller = request.By,
            Memo = $"invoice {request.InvoiceNo}",
        };
        entry.ChainKey = Chain.KeyOf(entry);
        entry.PrevHash = head;
        entry.Hash = Chain.HashOf(entry, [(unitYear.DeductedAccountId, applied.Value), (grant.AccountId, -applied.Value)], head);
        state.ChainHeads[unitYear.Id] = entry.Hash;
        plan.Applied.Add((deduction, entry, unitYear.DeductedAccountId, grant.AccountId));

        grant.BalanceFen = checked(grant.BalanceFen - applied.Value);
        contract!.InvoicedFen = checked(contract.InvoicedFen + request.InvoiceAmount.Value);
        state.Invoices.Add((request.Provider, request.InvoiceNo), new EarlierDeduction(deductionId, grant.Id));
        var before = state.Figures[unitYear.Id];
        var figures = before with { GrantedOpen = before.GrantedOpen - applied, Deducted = before.Deducted + applied };
        state.Figures[unitYear.Id] = figures;
        plan.AccountDeltas[unitYear.DeductedAccountId] = checked(plan.AccountDeltas.GetValueOrDefault(unitYear.DeductedAccountId) + applied.Value);
        plan.AccountDeltas[grant.AccountId] = checked(plan.AccountDeltas.GetValueOrDefault(grant.AccountId) - applied.Value);
        plan.ContractDeltas[contract.Id] = checked(plan.ContractDeltas.GetValueOrDefault(contract.Id) + request.InvoiceAmount.Value);

        return new DeductResponse
        {
            DeductionId = deductionId,
            RequestedFen = requested.Value,
            AppliedFen = applied.Value,
            GrantRemainingFen = grant.BalanceFen,
            UnitYear = figures.ToApi(),
            Receipt = entry.ToReceipt(),
        };
    }

    /// <summary>What <see cref="Deductions.Decide"/> reads of the state for one deduction: its grant, the grant's
    /// contract, and the deduction that already took its invoice number. The real call and the dry run both pick them so.</summary>
    private static (GrantFacts? Grant, ContractFacts? Contract, EarlierDeduction? Earlier) FactsOf(State state, DeductionRequest request)
    {
        var grant = state.Grants.GetValueOrDefault(request.GrantId);
        var contract = grant is null ? null : state.Contracts.GetValueOrDefault(grant.ContractId);
        EarlierDeduction? earlier = state.Invoices.TryGetValue((request.Provider, request.InvoiceNo), out var taken) ? taken : null;
        return (grant, contract, earlier);
    }

    /// <summary>The first outcome of a request id again. A DUPLICATE_INVOICE is recorded as its reason and message only;
    /// it names the earlier deduction again from this batch's own lookup of the invoice (the same request, so the same
    /// invoice, and a deduction is never edited or removed, so the same deduction).</summary>
    private static DeductionOutcome Replay(IdempotencyRow first, PendingDeduction item, Dictionary<(string, string), EarlierDeduction> invoices)
    {
        try
        {
            return new DeductionOutcome(Idempotency.Replay<DeductResponse>(first, Method, item.Hash), null, Replayed: true);
        }
        catch (LedgerException refusal) when (refusal.Reason == Reason.DuplicateInvoice
            && invoices.TryGetValue((item.Request.Provider, item.Request.InvoiceNo), out var earlier))
        {
            return new DeductionOutcome(null, Deductions.DuplicateInvoice(item.Request.Provider, item.Request.InvoiceNo, earlier, refusal.Message), Replayed: true);
        }
        catch (LedgerException refusal)
        {
            return new DeductionOutcome(null, refusal, Replayed: true);
        }
    }

    /// <summary>Every write of the batch, then COMMIT, in one round trip. The balance and contract totals are guarded
    /// by the tables' checks (never negative, never past the contract), so any violation fails the statement, which
    /// makes PostgreSQL skip the rest of the batch, COMMIT included.</summary>
    private static async Task WriteAndCommitAsync(NpgsqlConnection connection, Plan plan, DateTimeOffset now, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(connection);
        if (plan.Applied.Count > 0)
        {
            var deductions = plan.Applied.Select(a => a.Deduction).ToList();
            Add(batch,
                """
                INSERT INTO deductions (id, grant_id, provider_uscc, invoice_no, invoice_amount_fen, invoice_date, requested_fen, applied_fen, created_at)
                SELECT d.id, d.grant_id, d.provider_uscc, d.invoice_no, d.invoice_amount_fen, d.invoice_date, d.requested_fen, d.applied_fen, $9
                FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::date[], $7::bigint[], $8::bigint[])
                  AS d(id, grant_id, provider_uscc, invoice_no, invoice_amount_fen, invoice_date, requested_fen, applied_fen)
                """,
                deductions.Select(d => d.Id).ToArray(), deductions.Select(d => d.GrantId).ToArray(), deductions.Select(d => d.ProviderUscc).ToArray(),
                deductions.Select(d => d.InvoiceNo).ToArray(), deductions.Select(d => d.InvoiceAmountFen).ToArray(),
                deductions.Select(d => d.InvoiceDate).ToArray(), deductions.Select(d => d.RequestedFen).ToArray(),
                deductions.Select(d => d.AppliedFen).ToArray(), deductions[0].CreatedAt);

            var entries = plan.Applied.Select(a => a.Entry).ToList();
            Add(batch,
                $"""
                INSERT INTO journal_entries (id, kind, created_at, year, unit_uscc, provider_uscc, grant_id, deduction_id, request_id, caller, memo,
                                             chain_key, prev_hash, hash)
                SELECT e.id, {(short)EntryKind.Deduction}, $12, e.year, e.unit_uscc, e.provider_uscc, e.grant_id, e.deduction_id, e.request_id,
                       e.caller, e.memo, e.chain_key, e.prev_hash, e.hash
                FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[],
                            $10::text[], $11::bytea[], $13::bytea[])
                  AS e(id, year, unit_uscc, provider_uscc, grant_id, deduction_id, request_id, caller, memo, chain_key, prev_hash, hash)
                """,
                entries.Select(e => e.Id).ToArray(), entries.Select(e => e.Year).ToArray(), entries.Select(e => e.UnitUscc!).ToArray(),
                entries.Select(e => e.ProviderUscc!).ToArray(), entries.Select(e => e.GrantId!.Value).ToArray(),
                entries.Select(e => e.DeductionId!.Value).ToArray(), entries.Select(e => e.RequestId).ToArray(), entries.Select(e => e.Caller).ToArray(),
                entries.Select(e => e.Memo).ToArray(), entries.Select(e => e.ChainKey).ToArray(), entries.Select(e => e.PrevHash).ToArray(),
                entries[0].CreatedAt, entries.Select(e => e.Hash).ToArray());

            Add(batch,
                """
                INSERT INTO postings (entry_id, account_id, amount_fen)
                SELECT p.entry_id, p.account_id, p.amount_fen FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS p(entry_id, account_id, amount_fen)
                """,
                plan.Applied.SelectMany(a => new[] { a.Entry.Id, a.Entry.Id }).ToArray(),
                plan.Applied.SelectMany(a => new[] { a.DebitAccount, a.CreditAccount }).ToArray(),
                plan.Applied.SelectMany(a => new[] { a.Deduction.AppliedFen, -a.Deduction.AppliedFen }).ToArray());

            // One statement per table. Every account and contract here belongs to a unit-year this transaction has
            // locked (the contracts it has locked too), so no other writer can hold one of their rows: the order the
            // rows are updated in cannot deadlock.
            Add(batch,
                "UPDATE accounts SET balance_fen = balance_fen + ($2::bigint[])[array_position($1::bigint[], id)] WHERE id = ANY($1)",
                plan.AccountDeltas.Keys.ToArray(), plan.AccountDeltas.Values.ToArray());
            Add(batch,
                "UPDATE contracts SET invoiced_fen = invoiced_fen + ($2::bigint[])[array_position($1::bigint[], id)] WHERE id = ANY($1)",
                plan.ContractDeltas.Keys.ToArray(), plan.ContractDeltas.Values.ToArray());
        }

        var records = plan.Decided.Values;
        if (records.Count > 0)
        {
            // A plain insert: should a call reusing one of these ids for something else have committed meanwhile, the
            // unique key fails the batch, and the one-by-one path answers REQUEST_ID_REUSED.
            Add(batch,
                """
                INSERT INTO idempotency_records (caller, request_id, method, request_hash, outcome, message, response, created_at)
                SELECT o.caller, o.request_id, $6, o.request_hash, o.outcome, o.message, o.response, $7
                FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $8::bytea[]) AS o(caller, request_id, request_hash, outcome, message, response)
                """,
                records.Select(r => r.Caller).ToArray(), records.Select(r => r.RequestId).ToArray(), records.Select(r => r.RequestHash).ToArray(),
                records.Select(r => r.Outcome!).ToArray(), records.Select(r => r.Message).ToArray(), Method, now,
                records.Select(r => r.Response).ToArray());
        }

        Add(batch, "COMMIT");
        await batch.ExecuteNonQueryAsync(ct);
    }

    private static async Task RollBackQuietlyAsync(NpgsqlConnection connection)
    {
        if (connection.State != System.Data.ConnectionState.Open)
        {
            return;
        }

        try
        {
            await using var rollback = new NpgsqlCommand("ROLLBACK", connection);
            await rollback.ExecuteNonQueryAsync(CancellationToken.None);
        }
        catch (NpgsqlException)
        {
            // A broken connection is discarded by the pool; PostgreSQL rolls its transaction back.
        }
    }

    private static void Add(NpgsqlBatch batch, string sql, params object?[] parameters)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = parameter ?? DBNull.Value });
        }

        batch.BatchCommands.Add(command);
    }
}
