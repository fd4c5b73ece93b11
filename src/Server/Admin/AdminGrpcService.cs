using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Engine;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.Server.Telemetry;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Server.Admin;

/// <summary>The bureau's calls: the year's policy, funding the pool (Art 6), and the books.</summary>
internal sealed class AdminGrpcService(
    LedgerDb db,
    Idempotency idempotency,
    TimeProvider time,
    IServiceScopeFactory scopes,
    WriteQueue engine,
    LedgerDatabase database,
    CheckpointSigner signer,
    LedgerMetrics metrics,
    ILogger<AdminGrpcService> logger)
    : AdminService.AdminServiceBase
{
    public override Task<YearPolicy> SetYearPolicy(SetYearPolicyRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var year = Validate.Year(request.Year);
        if (year < VoucherPolicy.MeasuresTakeEffect.Year)
        {
            throw new LedgerException(Reason.InvalidArgument,
                $"year {year} is before the measures took effect on {VoucherPolicy.MeasuresTakeEffect:yyyy-MM-dd} (Art 19); there is no policy to set for it.");
        }

        var keepEffectiveFrom = request.EffectiveFrom.Length == 0;
        var policy = new VoucherPolicy(
            request.Year,
            new BasisPoints(request.SelfControllableRatioBp),
            new BasisPoints(request.OtherRatioBp),
            new BasisPoints(request.SmeBonusBp),
            new Fen(request.UnitYearCapFen),
            new Fen(request.UnitYearFloorFen),
            new Fen(request.YearTotalFen),
            request.ValidityMonths,
            request.EffectiveFrom.Length == 0 ? VoucherPolicy.DefaultEffectiveFrom(year) : Validate.Date(request.EffectiveFrom, "effective_from"));
        policy.EnsureCoherent();

        return idempotency.RunAsync(by, request.RequestId, nameof(SetYearPolicy), request, async ct =>
        {
            // The policy row first, then the funding: the order FundBudget takes them in, so a concurrent funding either
            // commits first (and is seen below) or waits and is checked against the new total. (A year without a policy
            // has no funding: FundBudget needs the policy.)
            // Without an effective_from the year keeps the date it has; a new year gets the default.
            var current = await Policies.LockAsync(db, policy.Year, ct, forUpdate: true);
            if (keepEffectiveFrom && current is not null)
            {
                policy = policy with { EffectiveFrom = current.EffectiveFrom };
            }

            var funded = await LockFundingAsync(policy.Year, ct);
            if (YearTotal.Refusal(policy.Year, policy.YearTotal, funded, more: Fen.Zero) is { } belowFunded)
            {
                throw belowFunded;
            }

            var now = time.GetUtcNow();
            await db.Database.ExecuteSqlAsync(
                $"""
                INSERT INTO year_policies (year, self_controllable_ratio_bp, other_ratio_bp, sme_bonus_bp, unit_year_cap_fen,
                                           unit_year_floor_fen, year_total_fen, validity_months, effective_from, updated_at)
                VALUES ({policy.Year}, {policy.SelfControllableRatio.Value}, {policy.OtherRatio.Value}, {policy.SmeBonus.Value},
                        {policy.UnitYearCap.Value}, {policy.UnitYearFloor.Value}, {policy.YearTotal.Value}, {policy.ValidityMonths},
                        {policy.EffectiveFrom}, {now})
                ON CONFLICT (year) DO UPDATE SET
                  self_controllable_ratio_bp = excluded.self_controllable_ratio_bp, other_ratio_bp = excluded.other_ratio_bp,
                  sme_bonus_bp = excluded.sme_bonus_bp, unit_year_cap_fen = excluded.unit_year_cap_fen,
                  unit_year_floor_fen = excluded.unit_year_floor_fen, year_total_fen = excluded.year_total_fen,
                  validity_months = excluded.validity_months, effective_from = excluded.effective_from, updated_at = excluded.updated_at
                """, ct);
            return ToApi(policy, now);
        }, context.CancellationToken);
    }

    public override async Task<YearPolicy> GetYearPolicy(GetYearPolicyRequest request, ServerCallContext context)
    {
        Access.RequireReader(context);
        var year = Validate.Year(request.Year);
        var row = await db.YearPolicies.AsNoTracking().SingleOrDefaultAsync(p => p.Year == year, context.CancellationToken)
            ?? throw new LedgerException(Reason.YearNotOpen, $"There is no policy for {year}; the bureau sets one with SetYearPolicy.");
        return ToApi(Policies.ToPolicy(row), row.UpdatedAt);
    }

    public override Task<ProgramYear> FundBudget(FundBudgetRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var year = Validate.Year(request.Year);
        var amount = Validate.Amount(request.AmountFen, "amount_fen");

        return idempotency.RunAsync(by, request.RequestId, nameof(FundBudget), request, async ct =>
        {
            // The policy row is locked first (SetYearPolicy's order), so the total checked is the one in force when this commits.
            var policy = await Policies.LockAsync(db, year, ct)
                ?? throw new LedgerException(Reason.YearNotOpen, $"There is no policy for {year}, so nothing may be funded; call SetYearPolicy first.");

            await db.Database.ExecuteSqlAsync(
                $"""
                INSERT INTO accounts (kind, year, balance_fen)
                VALUES ({(short)AccountKind.Funding}, {year}, 0), ({(short)AccountKind.Pool}, {year}, 0)
                ON CONFLICT DO NOTHING
                """, ct);
            var funded = await LockFundingAsync(year, ct);
            if (YearTotal.Refusal(year, policy.YearTotal, funded, amount) is { } overTotal)
            {
                throw overTotal;
            }

            var accounts = await db.Accounts.AsNoTracking()
                .Where(a => a.Year == year && (a.Kind == AccountKind.Funding || a.Kind == AccountKind.Pool))
                .ToDictionaryAsync(a => a.Kind, a => a.Id, ct);
            var entry = new JournalEntryRow
            {
                Kind = EntryKind.Funding,
                CreatedAt = time.GetUtcNow(),
                Year = year,
                RequestId = request.RequestId,
                Caller = by,
                Memo = $"budget funding {year}",
            };
            await Journal.PostAsync(db, entry,
            [
                Leg.Debit(accounts[AccountKind.Pool], AccountKind.Pool, amount),
                Leg.Credit(accounts[AccountKind.Funding], AccountKind.Funding, amount),
            ], ct);
            var figures = await ProgramYears.LiveAsync(db, year, policy, time.GetUtcNow(), ct);
            figures.Receipt = entry.ToReceipt();
            return figures;
        }, context.CancellationToken);
    }

    public override async Task<ProgramYear> GetProgramYear(GetProgramYearRequest request, ServerCallContext context)
    {
        Access.Require(context, Role.Bureau, Role.Expert);
        var year = Validate.Year(request.Year);
        var now = time.GetUtcNow();
        return await ProgramYears.ReadAsync(db, year, Validate.AsOf(request.AsOf, now), now, context.CancellationToken);
    }

    public override Task<TrialBalanceResponse> TrialBalance(TrialBalanceRequest request, ServerCallContext context)
    {
        Access.Require(context, Role.Bureau, Role.Expert);
        if (request.Year != 0)
        {
            Validate.Year(request.Year);
        }

        return Books.TrialBalanceAsync(database, request.Year, context.CancellationToken);
    }

    public override Task<SetStandingResponse> SetStanding(SetStandingRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var uscc = Validate.Uscc(request.Uscc, "uscc");
        var standing = request.Standing.FromApi(unspecified: null);
        var reason = Validate.Text(request.Reason, "reason");

        return idempotency.RunAsync(by, request.RequestId, nameof(SetStanding), request, async ct =>
        {
            var now = time.GetUtcNow();
            var change = await Standings.SetAsync(db, uscc, standing, reason, now, request.RequestId, by, ct);
            await db.SaveChangesAsync(ct);
            return new SetStandingResponse
            {
                Uscc = uscc,
                Standing = request.Standing,
                PreviousStanding = change.Previous.ToApi(),
                Parties = { change.Parties },
                ChangedAt = now.ToTimestamp(),
            };
        }, context.CancellationToken);
    }

    public override Task<ExpireDueGrantsResponse> ExpireDueGrants(ExpireDueGrantsRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        return idempotency.RecordAfterAsync(by, request.RequestId, nameof(ExpireDueGrants), request, async ct =>
        {
            // The pass reads on a connection of its own, and the engine closes the grants in its transactions; the
            // answer is recorded once the pass is done, so a duplicate sent meanwhile runs a pass that finds nothing
            // left, and both get the answer recorded first.
            await using var scope = scopes.CreateAsyncScope();
            var passDb = scope.ServiceProvider.GetRequiredService<LedgerDb>();
            var outcome = await Expiry.ExpireDueAsync(passDb, engine, time.GetUtcNow(), request.RequestId, by, LedgerMetrics.Triggers.Request, metrics, logger, ct);
            return new ExpireDueGrantsResponse { ExpiredGrants = outcome.ExpiredGrants, ReturnedFen = outcome.Returned.Value, FailedGrants = outcome.Failed };
        }, context.CancellationToken);
    }

    public override Task<VerifyJournalResponse> VerifyJournal(VerifyJournalRequest request, ServerCallContext context)
    {
        Access.Require(context, Role.Bureau, Role.Expert);
        return JournalVerification.VerifyAsync(database, signer, request.CheckpointId, context.CancellationToken);
    }

    public override Task<Checkpoint> MakeCheckpoint(MakeCheckpointRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        // The checkpoint is made on a connection of its own; this call's transaction holds the request id, so a retry
        // gets the same checkpoint.
        return idempotency.RunAsync(by, request.RequestId, nameof(MakeCheckpoint), request, async ct =>
            Checkpoints.ToApi(await Checkpoints.MakeAsync(database, signer, time.GetUtcNow(), ct)), context.CancellationToken);
    }

    public override async Task<Checkpoint> GetCheckpoint(GetCheckpointRequest request, ServerCallContext context)
    {
        Access.Require(context, Role.Bureau, Role.Expert);
        var ct = context.CancellationToken;
        var row = request.CheckpointId == 0
            ? await db.Checkpoints.AsNoTracking().OrderByDescending(c => c.Id).FirstOrDefaultAsync(ct)
            : await db.Checkpoints.AsNoTracking().SingleOrDefaultAsync(c => c.Id == request.CheckpointId, ct);
        return row is null
            ? throw (request.CheckpointId == 0
                ? new LedgerException(Reason.InvalidArgument, "No checkpoint has been made yet; the bureau calls MakeCheckpoint, or the server makes one every Checkpoints:Interval.")
                : JournalVerification.UnknownCheckpoint(request.CheckpointId))
            : Checkpoints.ToApi(row);
    }

    public override async Task ListCheckpoints(ListCheckpointsRequest request, IServerStreamWriter<Checkpoint> responseStream, ServerCallContext context)
    {
        Access.Require(context, Role.Bureau, Role.Expert);
        var after = request.AfterCheckpointId;
        while (true)
        {
            var page = await db.Checkpoints.AsNoTracking().Where(c => c.Id > after).OrderBy(c => c.Id).Take(20).ToListAsync(context.CancellationToken);
            if (page.Count == 0)
            {
                return;
            }

            foreach (var row in page)
            {
                await responseStream.WriteAsync(Checkpoints.ToApi(row), context.CancellationToken);
            }

            after = page[^1].Id;
        }
    }

    public override Task<Closing> ClosePeriod(ClosePeriodRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var period = Period.Of(request.Year, request.Month);
        return ClosePeriodAsync(request, by, period, context.CancellationToken);
    }

    private async Task<Closing> ClosePeriodAsync(ClosePeriodRequest request, string by, Period period, CancellationToken cancellationToken)
    {
        // The expiry pass first, before the request id is claimed (a claim held open for a long pass would sit idle in
        // its transaction until PostgreSQL ended it), as ExpireDueGrants runs it: what fell due in the period goes back
        // to its pool before the year is settled. Expiring what is due is what the background pass does every minute
        // anyway, so a close that is then refused or replayed leaves nothing of its own behind.
        await using (var scope = scopes.CreateAsyncScope())
        {
            var passDb = scope.ServiceProvider.GetRequiredService<LedgerDb>();
            await Expiry.ExpireDueAsync(passDb, engine, time.GetUtcNow(), request.RequestId, by, LedgerMetrics.Triggers.Request, metrics, logger,
                cancellationToken);
        }

        return await idempotency.RunAsync(by, request.RequestId, nameof(ClosePeriod), request, async ct =>
        {
            var now = time.GetUtcNow();
            var previous = await Closings.CheckReadyAsync(db, period, now, ct);
            if (period.IsYear)
            {
                await Closings.CheckYearSpentAsync(db, period.Year, ct);
            }

            // A checkpoint of everything so far, outside the close's lock, so the one that seals the closing signs little.
            await Checkpoints.MakeAsync(database, signer, now, ct);
            return await Closings.CloseAsync(db, signer, database.Options, period, previous, now, request.RequestId, by, logger, ct);
        }, cancellationToken);
    }

    public override Task<Closing> GetClosing(GetClosingRequest request, ServerCallContext context)
    {
        Access.Require(context, Role.Bureau, Role.Expert);
        return Closings.ReadAsync(db, Period.Of(request.Year, request.Month), context.CancellationToken);
    }

    public override async Task<ListClosingsResponse> ListClosings(ListClosingsRequest request, ServerCallContext context)
    {
        Access.Require(context, Role.Bureau, Role.Expert);
        if (request.Year != 0)
        {
            Validate.Year(request.Year);
        }

        return new ListClosingsResponse { Closings = { await Closings.ListAsync(db, request.Year, context.CancellationToken) } };
    }

    public override Task ExportPeriod(ExportPeriodRequest request, IServerStreamWriter<ExportLine> responseStream, ServerCallContext context)
    {
        Access.Require(context, Role.Bureau, Role.Expert);
        var period = Period.Of(request.Year, request.Month);
        return Closings.ExportAsync(db, database.DataSource, period,
            line => responseStream.WriteAsync(new ExportLine { Line = line }, context.CancellationToken), context.CancellationToken);
    }

    /// <summary>Locks the year's funding account (when there is one) and returns what has been funded.</summary>
    private async Task<Fen> LockFundingAsync(int year, CancellationToken ct)
    {
        var balance = await db.Accounts
            .FromSql($"SELECT * FROM accounts WHERE kind = {(short)AccountKind.Funding} AND year = {year} AND unit_uscc IS NULL FOR UPDATE")
            .AsNoTracking()
            .Select(a => (long?)a.BalanceFen)
            .SingleOrDefaultAsync(ct);
        return new Fen(balance ?? 0);
    }

    private static YearPolicy ToApi(VoucherPolicy policy, DateTimeOffset updatedAt) => new()
    {
        Year = policy.Year,
        SelfControllableRatioBp = policy.SelfControllableRatio.Value,
        OtherRatioBp = policy.OtherRatio.Value,
        SmeBonusBp = policy.SmeBonus.Value,
        UnitYearCapFen = policy.UnitYearCap.Value,
        UnitYearFloorFen = policy.UnitYearFloor.Value,
        YearTotalFen = policy.YearTotal.Value,
        ValidityMonths = policy.ValidityMonths,
        EffectiveFrom = policy.EffectiveFrom.ToApiDate(),
        UpdatedAt = updatedAt.ToTimestamp(),
    };
}
