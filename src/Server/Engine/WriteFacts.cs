using System.Diagnostics;
using Npgsql;
using QuotaLedger.Server.Alerts;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Registry;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using AlertKind = QuotaLedger.Server.Storage.AlertKind;
using ResidencyStatus = QuotaLedger.Server.Storage.ResidencyStatus;
using UnitKind = QuotaLedger.Server.Storage.UnitKind;

namespace QuotaLedger.Server.Engine;

/// <summary>How <see cref="WriteFacts.ReadAsync"/> reads: waiting for the row locks, skipping rows another session
/// holds, or (a dry run) in a read-only snapshot that locks nothing.</summary>
internal enum Reading
{
    Locked,
    SkipLocked,
    Snapshot,
}

/// <summary>A year's pool as a grant reads it: its balance (running, as the batch draws from it), what due grants of the
/// year still hold (returned to it at expires_at, whether or not the expiry pass has moved it), and the year's funding.</summary>
internal sealed class PoolFacts
{
    public required long Id { get; init; }
    public required int Year { get; init; }
    public required long BalanceFen { get; set; }
    public long LapsedFen { get; set; }
    public long FundedFen { get; set; }

    /// <summary>The pool as the rules and the pool alert count it: net of expired grants.</summary>
    public Fen Available => new(BalanceFen + LapsedFen);
}

/// <summary>Everything a batch's rules read, as it stood once the locks were held. A write whose rows are missing here
/// (held by another session) is not decided.</summary>
internal sealed class WriteFacts
{
    public Dictionary<(string, string), IdempotencyRow> Earlier { get; } = [];
    public Dictionary<int, PoolFacts> Pools { get; } = [];
    public Dictionary<long, ContractFacts> Contracts { get; } = [];
    public Dictionary<long, UnitYearRow> UnitYears { get; } = [];
    public Dictionary<long, UnitYearFigures> Figures { get; } = [];
    public Dictionary<long, byte[]> ChainHeads { get; } = [];

    /// <summary>The grants deductions name, as their callers name them.</summary>
    public Dictionary<long, GrantFacts> Grants { get; } = [];

    /// <summary>The deduction that took each invoice number of the batch, by (provider, invoice number): read from the
    /// table, then added to as the batch applies its own (their ids are drawn before anything is inserted).</summary>
    public Dictionary<(string, string), EarlierDeduction> Invoices { get; } = [];

    public Dictionary<int, VoucherPolicy> Policies { get; } = [];
    public Dictionary<(string Provider, string Unit), Dealing> Dealings { get; } = [];

    /// <summary>The units that get the SME bonus (an enterprise that filed the SME declaration).</summary>
    public HashSet<string> SmeUnits { get; } = [];
    public HashSet<string> Providers { get; } = [];

    /// <summary>The units a gift names: each one's kind, and whether the bureau confirmed it an OPC community operator.</summary>
    public Dictionary<string, (UnitKind Kind, bool OperatorConfirmed)> Units { get; } = [];

    /// <summary>Where each (operator, resident) pair a gift names stands on the operator's list now, when it was ever listed.</summary>
    public Dictionary<(string Operator, string Resident), ResidencyStatus> Residencies { get; } = [];

    /// <summary>What each contract's due grants still hold: committed no longer, from expires_at on.</summary>
    public Dictionary<long, long> LapsedOnContract { get; } = [];
    public Dictionary<int, AlertRules> AlertRulesByYear { get; } = [];

    /// <summary>The arming of each alert threshold the batch may cross, by (year, kind, subject, bp); a missing one is armed.</summary>
    public Dictionary<(int, AlertKind, string, int), bool> Armed { get; } = [];

    /// <summary>Ids drawn for the batch, each taken as a write is applied: entries in decision order, so that a
    /// chain's entries are in id order as its links are.</summary>
    public Queue<long> EntryIds { get; } = new();
    public Queue<long> DeductionIds { get; } = new();
    public Queue<(long Grant, long Account)> GrantIds { get; } = new();

    /// <summary>From sending the first round trip until every row was locked and read.</summary>
    public TimeSpan LockWait { get; set; }

    /// <summary>Whether the transaction holds every row the write needs.</summary>
    public bool Holds(PendingWrite item) => item switch
    {
        PendingDeduction d => (d.UnitYearId is not { } unitYearId || UnitYears.ContainsKey(unitYearId))
            && (Grants.GetValueOrDefault(d.Request.GrantId) is not { } grant || Contracts.ContainsKey(grant.ContractId)),
        PendingGrant g => g.Target is not { } target || HoldsAll(target.Year, target.ContractId, target.UnitYearId),
        PendingRelease r => r.Grant is not { } home || HoldsAll(home.Year, home.ContractId, home.UnitYearId),
        PendingExpiry e => HoldsAll(e.Home.Year, e.Home.ContractId, e.Home.UnitYearId),
        PendingGift g => g.Source is not { } source
            || (UnitYears.ContainsKey(source.UnitYearId) && Contracts.ContainsKey(source.ContractId)
                && (g.ResidentUnitYearId is not { } resident || UnitYears.ContainsKey(resident))),
        _ => false,
    };

    /// <summary>Whether the transaction holds the year's pool (when the year has one), the contract and the unit-year.</summary>
    private bool HoldsAll(int year, long contractId, long unitYearId) =>
        (Pools.ContainsKey(year) || !PoolYears.Contains(year)) && Contracts.ContainsKey(contractId) && UnitYears.ContainsKey(unitYearId);

    /// <summary>The years whose pool exists: a grant of a year never funded has no pool to lock, and is decided without.</summary>
    public HashSet<int> PoolYears { get; } = [];

    /// <summary>Reads every fact of the batch in one round trip: locks first, in <see cref="LockOrder"/>, then the reads.</summary>
    public static async Task<WriteFacts> ReadAsync(NpgsqlConnection connection, IReadOnlyList<PendingWrite> items, DateTimeOffset now, Reading reading, CancellationToken ct)
    {
        var deductions = items.OfType<PendingDeduction>().ToList();
        var grants = items.OfType<PendingGrant>().ToList();
        var releases = items.OfType<PendingRelease>().ToList();
        var expiries = items.OfType<PendingExpiry>().ToList();
        var gifts = items.OfType<PendingGift>().ToList();
        var targets = grants.Where(g => g.Target is not null).Select(g => g.Target!.Value).ToList();
        var homes = releases.Where(r => r.Grant is not null).Select(r => r.Grant!.Value).Concat(expiries.Select(e => e.Home)).ToList();
        // Each existing grant a write names, as its caller names it: a grant is read and its contract locked only with
        // the provider it was made by, so another provider's grant is neither read nor locked, and is refused as unknown.
        var named = deductions.Select(d => (d.Request.GrantId, d.Request.Provider))
            .Concat(releases.Select(r => (r.Call.GrantId, r.Call.Provider)))
            .Concat(expiries.Select(e => (e.GrantId, e.Home.Provider)))
            .Concat(gifts.Where(g => g.Source is not null).Select(g => (g.Call.GrantId, g.Source!.Value.Provider))).Distinct().ToArray();
        var namedIds = named.Select(g => g.GrantId).ToArray();
        var namedProviders = named.Select(g => g.Provider).ToArray();
        var years = targets.Select(t => t.Year).Concat(homes.Select(h => h.Year)).Distinct().Order().ToArray();
        var grantContractIds = targets.Select(t => t.ContractId).Distinct().ToArray();
        var unitYearIds = deductions.Where(d => d.UnitYearId is not null).Select(d => d.UnitYearId!.Value)
            .Concat(targets.Select(t => t.UnitYearId)).Concat(homes.Select(h => h.UnitYearId))
            .Concat(gifts.SelectMany(g => new[] { g.Source?.UnitYearId, g.ResidentUnitYearId }).OfType<long>()).Distinct().Order().ToArray();
        var locking = reading != Reading.Snapshot;
        var mode = reading switch { Reading.Locked => RowLock.Wait, Reading.SkipLocked => RowLock.Skip, _ => RowLock.None };

        await using var batch = new NpgsqlBatch(connection);
        Add(batch, locking ? "BEGIN ISOLATION LEVEL READ COMMITTED" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        // Every statement of a batch looks rows up by key. A plan made while a table was nearly empty (a sequential
        // scan, a hash join) would stay cached on this connection as the table grows to millions of rows, and the cost
        // of a batch would grow with it: this session never prefers a sequential scan, so every plan probes an index.
        Add(batch, "SET LOCAL enable_seqscan = off");
        Add(batch, LockOrder.Pools(mode), years);
        Add(batch,
            LockOrder.Contracts(mode, ContractsOfBatch),
            grantContractIds, namedIds, namedProviders);
        Add(batch, LockOrder.UnitYears(mode), unitYearIds);
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
            namedIds, namedProviders);
        Add(batch,
            $"""
            SELECT uy.id, {Ledger.UnitYears.FiguresColumns},
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
            deductions.Select(d => d.Request.Provider).ToArray(), deductions.Select(d => d.Request.InvoiceNo).ToArray());
        // Earlier outcomes of the batch's request ids. A duplicate of a write waiting here needs the same rows, so
        // whichever transaction decided it has committed before this one got their locks.
        var keys = items.Where(i => i.Recorded).Select(i => i.Key).Distinct().ToList();
        Add(batch,
            """
            SELECT r.caller, r.request_id, r.method, r.request_hash, r.outcome, r.message, r.response
            FROM unnest($1::text[], $2::text[]) AS c(caller, request_id)
            CROSS JOIN LATERAL (SELECT * FROM idempotency_records x WHERE x.caller = c.caller AND x.request_id = c.request_id LIMIT 1) r
            WHERE r.outcome IS NOT NULL
            """,
            keys.Select(k => k.Caller).ToArray(), keys.Select(k => k.RequestId).ToArray());
        // A batch of deductions alone sends none of the statements only the writes on a pool (grants, releases, expiries)
        // read (their answers are read back in the same order they are sent, so what is not sent is not read).
        var poolWork = grants.Count + releases.Count + expiries.Count > 0;
        if (poolWork)
        {
            AddGrantReads(batch, grants, targets, homes, years, now);
        }

        if (gifts.Count > 0)
        {
            AddGiftReads(batch, gifts);
        }

        // A grant's and a gift's new grant each take a grant id and an account id.
        var newGrants = targets.Count + gifts.Count(g => g.Source is not null);
        if (locking)
        {
            // A dry run draws no ids (nor could it, read-only). Entry ids come from one draw, taken in the order the
            // writes are decided: a chain's order is its entries' id order.
            Add(batch, "SELECT nextval('journal_entries_id_seq') FROM generate_series(1, $1)", items.Count);
            Add(batch, "SELECT nextval('deductions_id_seq') FROM generate_series(1, $1)", deductions.Count);
            if (newGrants > 0)
            {
                Add(batch, "SELECT nextval('grants_id_seq'), nextval('accounts_id_seq') FROM generate_series(1, $1)", newGrants);
            }
        }

        var facts = new WriteFacts();
        var sent = Stopwatch.GetTimestamp();
        await using var reader = await batch.ExecuteReaderAsync(ct);
        await facts.ReadLockedAsync(reader, ct);
        facts.LockWait = Stopwatch.GetElapsedTime(sent);
        await facts.ReadDeductionFactsAsync(reader, ct);
        if (poolWork)
        {
            await facts.ReadGrantFactsAsync(reader, ct);
        }

        if (gifts.Count > 0)
        {
            await facts.ReadGiftFactsAsync(reader, ct);
        }

        if (reading == Reading.Locked)
        {
            // Waiting, the lock statement returned every pool that existed: a year funded for the first time after it
            // is decided as unfunded then, not left undecided by the later read that saw its pool.
            facts.PoolYears.Clear();
            facts.PoolYears.UnionWith(facts.Pools.Keys);
        }

        if (locking)
        {
            await reader.NextResultAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                facts.EntryIds.Enqueue(reader.GetInt64(0));
            }

            await reader.NextResultAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                facts.DeductionIds.Enqueue(reader.GetInt64(0));
            }

            if (newGrants > 0)
            {
                await reader.NextResultAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    facts.GrantIds.Enqueue((reader.GetInt64(0), reader.GetInt64(1)));
                }
            }
        }

        return facts;
    }

    /// <summary>The contracts the batch's writes need: the grants' (<c>$1</c>), and those of the grants the deductions name (<c>$2</c>, <c>$3</c>).</summary>
    private const string ContractsOfBatch =
        """
        $1::bigint[] || ARRAY(SELECT g.contract_id FROM unnest($2::bigint[], $3::text[]) AS k(id, provider)
                              JOIN grants g ON g.id = k.id AND g.provider_uscc = k.provider::bpchar)
        """;

    private static void AddGrantReads(NpgsqlBatch batch, List<PendingGrant> grants, List<GrantTarget> targets, List<GrantHome> homes, int[] years, DateTimeOffset now)
    {
        var pairs = grants.Where(g => g.Target is not null).Select(g => (g.Call.Provider, g.Target!.Value.Unit)).Distinct().ToArray();
        // A string array alone would bind as the params array itself, one parameter per string: it goes as one object.
        Add(batch, "SELECT p.uscc FROM providers p WHERE p.uscc = ANY($1::text[]::bpchar[])", (object)grants.Select(g => g.Call.Provider).Distinct().ToArray());
        Add(batch,
            """
            SELECT p.year, p.self_controllable_ratio_bp, p.other_ratio_bp, p.sme_bonus_bp, p.unit_year_cap_fen, p.unit_year_floor_fen,
                   p.year_total_fen, p.validity_months, p.effective_from
            FROM year_policies p WHERE p.year = ANY($1)
            """,
            grants.Select(g => g.Year).Distinct().ToArray());
        Add(batch,
            $"SELECT d.provider_uscc, d.unit_uscc, {Eligibility.DealingColumns} FROM unnest($1::text[], $2::text[]) AS d(provider_uscc, unit_uscc)",
            pairs.Select(p => p.Provider).ToArray(), pairs.Select(p => p.Unit).ToArray());
        Add(batch,
            $"SELECT u.uscc FROM units u WHERE u.uscc = ANY($1::text[]::bpchar[]) AND u.sme AND u.kind = {(short)UnitKind.Enterprise}",
            (object)pairs.Select(p => p.Unit).Distinct().ToArray());
        Add(batch,
            $"""
            SELECT k.id, coalesce((SELECT sum(a.balance_fen) FROM grants g JOIN accounts a ON a.id = g.account_id
                                   WHERE g.contract_id = k.id AND g.state = {(short)GrantState.Open} AND {Ledger.Grants.DueSql("g", "$2")}), 0)::bigint
            FROM unnest($1::bigint[]) AS k(id)
            """,
            targets.Select(t => t.ContractId).Distinct().ToArray(), now);
        Add(batch,
            $"""
            SELECT y.year,
                   (SELECT p.id FROM accounts p WHERE p.kind = {(short)AccountKind.Pool} AND p.year = y.year),
                   {Ledger.Pools.LapsedSql("y.year", "$2")},
                   coalesce((SELECT f.balance_fen FROM accounts f WHERE f.kind = {(short)AccountKind.Funding} AND f.year = y.year), 0)::bigint
            FROM unnest($1::int[]) AS y(year)
            """,
            years, now);
        AddAlertStateReads(batch, years, [.. targets.Select(t => (t.Year, t.Unit)).Concat(homes.Select(h => (h.Year, h.Unit)))
            .SelectMany(t => new[] { (t.Year, AlertKind.PoolLow, ""), (t.Year, AlertKind.UnitYearCap, t.Unit) }).Distinct()]);
    }

    /// <summary>The alert rules of <paramref name="years"/> and the arming of each threshold of <paramref name="subjects"/>
    /// (year, kind, subject key): what a write that moves a watched figure needs to fire or re-arm its alerts.</summary>
    private static void AddAlertStateReads(NpgsqlBatch batch, int[] years, (int Year, AlertKind Kind, string Key)[] subjects)
    {
        Add(batch, "SELECT r.year, r.unit_year_cap_bp, r.pool_low_bp FROM alert_rules r WHERE r.year = ANY($1)", years);
        Add(batch,
            """
            SELECT s.year, s.kind, s.subject, x.threshold_bp, x.armed
            FROM unnest($1::int[], $2::smallint[], $3::text[]) AS s(year, kind, subject)
            CROSS JOIN LATERAL (SELECT a.threshold_bp, a.armed FROM alert_arming a WHERE a.year = s.year AND a.kind = s.kind AND a.subject = s.subject) x
            """,
            subjects.Select(s => s.Year).ToArray(), subjects.Select(s => (short)s.Kind).ToArray(), subjects.Select(s => s.Key).ToArray());
    }

    /// <summary>What the gift rules read beside the grant and the unit-years: the units named (kind, operator
    /// confirmation: the latest row of the operator's is in force), each residency's latest step, and how the grant's
    /// provider stands with the operator and with the resident.</summary>
    private static void AddGiftReads(NpgsqlBatch batch, List<PendingGift> gifts)
    {
        Add(batch,
            $"SELECT u.uscc, u.kind, {OpcCommunity.OperatorConfirmedSql("u.uscc")} FROM units u WHERE u.uscc = ANY($1::text[]::bpchar[])",
            (object)gifts.SelectMany(g => new[] { g.Call.Operator, g.Call.Resident }).Distinct().ToArray());
        var pairs = gifts.Select(g => (g.Call.Operator, g.Call.Resident)).Distinct().ToArray();
        Add(batch,
            $"""
            SELECT k.operator_uscc, k.resident_uscc, {OpcCommunity.ResidencySql("k.operator_uscc::bpchar", "k.resident_uscc::bpchar")}
            FROM unnest($1::text[], $2::text[]) AS k(operator_uscc, resident_uscc)
            """,
            pairs.Select(p => p.Operator).ToArray(), pairs.Select(p => p.Resident).ToArray());
        var dealings = gifts.Where(g => g.Source is not null)
            .SelectMany(g => new[] { (Provider: g.Source!.Value.Provider, Unit: g.Call.Operator), (Provider: g.Source!.Value.Provider, Unit: g.Call.Resident) })
            .Distinct().ToArray();
        Add(batch,
            $"SELECT d.provider_uscc, d.unit_uscc, {Eligibility.DealingColumns} FROM unnest($1::text[], $2::text[]) AS d(provider_uscc, unit_uscc)",
            dealings.Select(p => p.Provider).ToArray(), dealings.Select(p => p.Unit).ToArray());
        var sources = gifts.Where(g => g.Source is not null).ToList();
        AddAlertStateReads(batch, [.. sources.Select(g => g.Source!.Value.Year).Distinct()],
            [.. sources.SelectMany(g => new[] { g.Call.Operator, g.Call.Resident }.Select(unit => (g.Source!.Value.Year, AlertKind.UnitYearCap, unit))).Distinct()]);
    }

    private async Task ReadGiftFactsAsync(NpgsqlDataReader reader, CancellationToken ct)
    {
        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            Units[reader.GetString(0)] = ((UnitKind)reader.GetInt16(1), reader.GetBoolean(2));
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            if (!reader.IsDBNull(2))
            {
                Residencies[(reader.GetString(0), reader.GetString(1))] = (ResidencyStatus)reader.GetInt16(2);
            }
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var (provider, unit) = (reader.GetString(0), reader.GetString(1));
            Dealings[(provider, unit)] = Eligibility.ReadDealing(reader, 2, provider, unit);
        }

        await ReadAlertStateAsync(reader, ct);
    }

    private async Task ReadLockedAsync(NpgsqlDataReader reader, CancellationToken ct)
    {
        while (await reader.ReadAsync(ct))
        {
            var pool = new PoolFacts { Id = reader.GetInt64(0), Year = reader.GetInt32(1), BalanceFen = reader.GetInt64(2) };
            Pools.Add(pool.Year, pool);
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var contract = new ContractFacts
            {
                Id = reader.GetInt64(0),
                Provider = reader.GetString(1),
                ContractNo = reader.GetString(2),
                Unit = reader.GetString(3),
                AmountFen = reader.GetInt64(4),
                GrantedFen = reader.GetInt64(5),
                InvoicedFen = reader.GetInt64(6),
                SelfControllable = reader.GetBoolean(7),
                UsesInnovationVoucher = reader.GetBoolean(8),
            };
            Contracts.Add(contract.Id, contract);
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var unitYear = new UnitYearRow { Id = reader.GetInt64(0), UnitUscc = reader.GetString(1), Year = reader.GetInt32(2), DeductedAccountId = reader.GetInt64(3) };
            UnitYears.Add(unitYear.Id, unitYear);
        }
    }

    private async Task ReadDeductionFactsAsync(NpgsqlDataReader reader, CancellationToken ct)
    {
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
            Grants.Add(grant.Id, grant);
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            if (!UnitYears.TryGetValue(reader.GetInt64(0), out var unitYear))
            {
                // Held by another session: its writes wait for a transaction that waits for it.
                continue;
            }

            Figures.Add(unitYear.Id, Ledger.UnitYears.ReadFigures(reader, 1, unitYear.UnitUscc, unitYear.Year));
            ChainHeads.Add(unitYear.Id, reader.GetFieldValue<byte[]>(5));
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            Invoices.TryAdd((reader.GetString(0), reader.GetString(1)), new EarlierDeduction(reader.GetInt64(2), reader.GetInt64(3)));
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
            Earlier[(record.Caller, record.RequestId)] = record;
        }
    }

    private async Task ReadGrantFactsAsync(NpgsqlDataReader reader, CancellationToken ct)
    {
        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            Providers.Add(reader.GetString(0));
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var policy = Ledger.Policies.ToPolicy(new YearPolicyRow
            {
                Year = reader.GetInt32(0),
                SelfControllableRatioBp = reader.GetInt32(1),
                OtherRatioBp = reader.GetInt32(2),
                SmeBonusBp = reader.GetInt32(3),
                UnitYearCapFen = reader.GetInt64(4),
                UnitYearFloorFen = reader.GetInt64(5),
                YearTotalFen = reader.GetInt64(6),
                ValidityMonths = reader.GetInt32(7),
                EffectiveFrom = reader.GetFieldValue<DateOnly>(8),
            });
            Policies.Add(policy.Year, policy);
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var (provider, unit) = (reader.GetString(0), reader.GetString(1));
            Dealings[(provider, unit)] = Eligibility.ReadDealing(reader, 2, provider, unit);
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            SmeUnits.Add(reader.GetString(0));
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            LapsedOnContract[reader.GetInt64(0)] = reader.GetInt64(1);
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var year = reader.GetInt32(0);
            if (!reader.IsDBNull(1))
            {
                PoolYears.Add(year);
            }

            if (Pools.TryGetValue(year, out var pool))
            {
                pool.LapsedFen = reader.GetInt64(2);
                pool.FundedFen = reader.GetInt64(3);
            }
        }

        await ReadAlertStateAsync(reader, ct);
    }

    private async Task ReadAlertStateAsync(NpgsqlDataReader reader, CancellationToken ct)
    {
        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var year = reader.GetInt32(0);
            AlertRulesByYear[year] = Alerts.AlertRules.Defaults(year) with
            {
                UnitYearCapBp = reader.GetFieldValue<int[]>(1),
                PoolLowBp = reader.GetInt32(2),
                IsDefault = false,
            };
        }

        await reader.NextResultAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            Armed[(reader.GetInt32(0), (AlertKind)reader.GetInt16(1), reader.GetString(2), reader.GetInt32(3))] = reader.GetBoolean(4);
        }
    }

    public AlertRules AlertRulesOf(int year) => AlertRulesByYear.GetValueOrDefault(year) ?? Alerts.AlertRules.Defaults(year);

    internal static void Add(NpgsqlBatch batch, string sql, params object?[] parameters)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var parameter in parameters)
        {
            // A parameter given whole (its type spelt out, for an array that may hold only nulls) goes as it is.
            command.Parameters.Add(parameter as NpgsqlParameter ?? new NpgsqlParameter { Value = parameter ?? DBNull.Value });
        }

        batch.BatchCommands.Add(command);
    }
}
