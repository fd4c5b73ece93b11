using System.Security.Cryptography;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;
using RedemptionState = QuotaLedger.Server.Storage.RedemptionState;

namespace QuotaLedger.Server.Redemption;

/// <summary>Redemption (Art 12, 13): the bureau opens a batch, a unit applies for what it deducted, an expert reviews,
/// the bureau pays. Each step is a balanced entry on the unit-year's accounts, under the unit-year's lock:
/// Deducted → Pending on application, Pending → Redeemed (approved) and back to Deducted (the rest) on review,
/// Redeemed → Disbursed on payment.</summary>
internal sealed class RedemptionGrpcService(LedgerDb db, Idempotency idempotency, TimeProvider time) : RedemptionService.RedemptionServiceBase
{
    /// <summary>ListRedemptions' page when page_size is 0, and the most one page holds (redemption.proto says so).</summary>
    /// <remarks>The default is the maximum, so a client written before pages (which reads one response) gets what it
    /// got then: up to 1,000.</remarks>
    private const int DefaultPageSize = 1_000;
    private const int MaxPageSize = 1_000;

    /// <summary>The kinds of evidence Art 12 asks the unit for; the platform statement the ledger adds itself.</summary>
    private static readonly EvidenceKind[] s_requiredEvidence =
    [
        EvidenceKind.ApplicationForm, EvidenceKind.Qualification, EvidenceKind.Contract, EvidenceKind.RdProof,
        EvidenceKind.Invoice, EvidenceKind.PaymentProof, EvidenceKind.UsageLog,
    ];

    public override Task<Batch> OpenBatch(OpenBatchRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var year = Validate.Year(request.Year);
        var closesAt = (request.ClosesAt is { } given ? Validate.Instant(given, "closes_at") : (DateTimeOffset?)null)
            ?? throw new LedgerException(Reason.InvalidArgument, "closes_at is required.");
        if (closesAt <= time.GetUtcNow())
        {
            throw new LedgerException(Reason.InvalidArgument, "closes_at must be in the future.");
        }

        return idempotency.RunAsync(by, request.RequestId, nameof(OpenBatch), request, async ct =>
        {
            _ = await Policies.FindAsync(db, year, ct)
                ?? throw new LedgerException(Reason.YearNotOpen, $"There is no policy for {year}, so there is nothing to redeem; call SetYearPolicy first.");
            var batch = new RedemptionBatchRow { Year = year, OpenedAt = time.GetUtcNow(), ClosesAt = closesAt };
            db.RedemptionBatches.Add(batch);
            await db.SaveChangesAsync(ct);
            return ToApi(batch);
        }, context.CancellationToken);
    }

    public override Task<V1.Redemption> Submit(SubmitRequest request, ServerCallContext context)
    {
        var by = Access.RequireSelf(context, Role.Unit, request.UnitUscc).ScopeFor(Callers.Unit(request.UnitUscc));
        var batchId = Validate.Id(request.BatchId, "batch_id");
        var unit = Validate.Uscc(request.UnitUscc, "unit_uscc");
        var amount = Validate.Amount(request.AmountFen, "amount_fen");
        var evidence = ValidateEvidence(request.Evidence);

        return idempotency.RunAsync(by, request.RequestId, nameof(Submit), request, async ct =>
        {
            var batch = await db.RedemptionBatches.AsNoTracking().SingleOrDefaultAsync(b => b.Id == batchId, ct)
                ?? throw new LedgerException(Reason.UnknownBatch, $"There is no redemption batch {batchId}.");
            var now = time.GetUtcNow();
            if (now >= batch.ClosesAt)
            {
                throw new LedgerException(Reason.BatchClosed, $"Batch {batchId} closed at {batch.ClosesAt:u}.");
            }

            if (!await db.Units.AnyAsync(u => u.Uscc == unit, ct))
            {
                throw new LedgerException(Reason.UnknownUnit, $"No unit is registered with USCC {unit}.");
            }

            await UnitYears.LockOrCreateAsync(db, unit, batch.Year, ct);
            await Eligibility.EnsureUnitInGoodStandingAsync(db, unit, ct);
            var policy = await Policies.FindAsync(db, batch.Year, ct)
                ?? throw new LedgerException(Reason.YearNotOpen, $"There is no policy for {batch.Year}.");
            var figures = await UnitYears.FiguresAsync(db, unit, batch.Year, now, ct);
            if (figures.Deducted < policy.UnitYearFloor)
            {
                throw new LedgerException(Reason.BelowYearFloor,
                    $"Unit {unit} deducted {figures.Deducted} in {batch.Year}, under the year's floor of {policy.UnitYearFloor}; it cannot apply (Art 6).");
            }

            var accounts = await UnitYears.RedemptionAccountsAsync(db, unit, batch.Year, ct);
            var available = await db.Accounts.Where(a => a.Id == accounts[AccountKind.Deducted]).Select(a => a.BalanceFen).SingleAsync(ct);
            if (amount.Value > available)
            {
                throw new LedgerException(Reason.RedemptionExceedsDeducted,
                    $"Unit {unit} may apply for at most {new Fen(available)} in {batch.Year}: what it deducted, less what is applied for or redeemed.");
            }

            var row = new RedemptionRow
            {
                BatchId = batchId,
                UnitUscc = unit,
                Year = batch.Year,
                RequestedFen = amount.Value,
                OutstandingFen = amount.Value,
                SubmittedAt = now,
                Evidence = [.. evidence, await PlatformStatementAsync(unit, batch.Year, ct)],
            };
            db.Redemptions.Add(row);
            await db.SaveChangesAsync(ct);
            var entry = Entry(EntryKind.RedemptionSubmitted, row, now, request.RequestId, by, $"redemption {row.Id} applied for");
            await Journal.PostAsync(db, entry,
            [
                Leg.Debit(accounts[AccountKind.Pending], AccountKind.Pending, amount),
                Leg.Credit(accounts[AccountKind.Deducted], AccountKind.Deducted, amount, Reason.RedemptionExceedsDeducted),
            ], ct);
            await db.Redemptions.Where(r => r.Id == row.Id).ExecuteUpdateAsync(s => s.SetProperty(r => r.SubmittedEntryId, entry.Id), ct);
            return WithReceipt(await LoadAsync(row.Id, ct), entry);
        }, context.CancellationToken);
    }

    public override Task<V1.Redemption> Review(ReviewRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Expert).ScopeFor(Callers.Bureau);
        var redemptionId = Validate.Id(request.RedemptionId, "redemption_id");
        if (request.ApprovedFen < 0)
        {
            throw new LedgerException(Reason.InvalidAmount, "approved_fen must be 0 or more.");
        }

        var reviewer = Validate.Text(request.Reviewer, "reviewer");
        var reason = Validate.Text(request.Reason, "reason");

        return idempotency.RunAsync(by, request.RequestId, nameof(Review), request, async ct =>
        {
            var (row, accounts) = await LockAsync(redemptionId, ct);
            if (row.State != RedemptionState.Submitted)
            {
                throw new LedgerException(Reason.AlreadyDecided, $"Redemption {redemptionId} was already reviewed; a review is final.");
            }

            // Standing is checked at every step of redemption: a unit blacklisted since it applied is refused.
            await Eligibility.EnsureUnitInGoodStandingAsync(db, row.UnitUscc, ct);
            var held = new Fen(row.OutstandingFen);
            if (request.ApprovedFen > held.Value)
            {
                throw new LedgerException(Reason.InvalidAmount, $"At most the {held} the application holds (applied for, less any claw-back) can be approved.");
            }

            var now = time.GetUtcNow();
            var approved = new Fen(request.ApprovedFen);
            var rest = held - approved;
            var legs = new List<Leg>();
            if (approved.IsPositive)
            {
                legs.Add(Leg.Debit(accounts[AccountKind.Redeemed], AccountKind.Redeemed, approved));
                legs.Add(Leg.Credit(accounts[AccountKind.Pending], AccountKind.Pending, approved));
            }

            if (rest.IsPositive)
            {
                // The unapproved part returns to what the unit may apply for again.
                legs.Add(Leg.Debit(accounts[AccountKind.Deducted], AccountKind.Deducted, rest));
                legs.Add(Leg.Credit(accounts[AccountKind.Pending], AccountKind.Pending, rest));
            }

            JournalEntryRow? entry = null;
            if (legs.Count > 0)
            {
                entry = Entry(EntryKind.RedemptionReviewed, row, now, request.RequestId, by, $"redemption {row.Id} reviewed by {reviewer}: {approved} approved");
                await Journal.PostAsync(db, entry, legs, ct);
            }

            var decided = await db.Redemptions.Where(r => r.Id == row.Id && r.State == RedemptionState.Submitted).ExecuteUpdateAsync(s => s
                .SetProperty(r => r.State, RedemptionState.Reviewed)
                .SetProperty(r => r.ApprovedFen, approved.Value)
                .SetProperty(r => r.OutstandingFen, approved.Value)
                .SetProperty(r => r.Reviewer, reviewer)
                .SetProperty(r => r.ReviewReason, reason)
                .SetProperty(r => r.ReviewedAt, now)
                .SetProperty(r => r.ReviewedEntryId, entry == null ? null : entry.Id), ct);
            if (decided != 1)
            {
                throw new InvalidOperationException($"Redemption {row.Id} changed under its unit-year lock.");
            }

            return WithReceipt(await LoadAsync(row.Id, ct), entry);
        }, context.CancellationToken);
    }

    public override Task<V1.Redemption> Disburse(DisburseRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var redemptionId = Validate.Id(request.RedemptionId, "redemption_id");
        var paymentRef = Validate.Text(request.PaymentRef, "payment_ref");

        return idempotency.RunAsync(by, request.RequestId, nameof(Disburse), request, async ct =>
        {
            var (row, accounts) = await LockAsync(redemptionId, ct);
            if (row.State == RedemptionState.Disbursed)
            {
                throw new LedgerException(Reason.AlreadyDecided, $"Redemption {redemptionId} was already disbursed; it is paid once.");
            }

            if (row.State != RedemptionState.Reviewed)
            {
                throw new LedgerException(Reason.InvalidArgument, $"Redemption {redemptionId} is not reviewed yet; an expert reviews it first.");
            }

            await Eligibility.EnsureUnitInGoodStandingAsync(db, row.UnitUscc, ct);
            var payable = new Fen(row.OutstandingFen);
            if (!payable.IsPositive)
            {
                throw new LedgerException(Reason.InvalidAmount,
                    $"Nothing of redemption {redemptionId} is payable: {new Fen(row.ApprovedFen ?? 0)} was approved, {new Fen(row.ClawedBackFen)} clawed back.");
            }

            var now = time.GetUtcNow();
            var entry = Entry(EntryKind.Disbursement, row, now, request.RequestId, by, $"redemption {row.Id} paid, {paymentRef}");
            await Journal.PostAsync(db, entry,
            [
                Leg.Debit(accounts[AccountKind.Disbursed], AccountKind.Disbursed, payable),
                Leg.Credit(accounts[AccountKind.Redeemed], AccountKind.Redeemed, payable),
            ], ct);
            await db.Redemptions.Where(r => r.Id == row.Id).ExecuteUpdateAsync(s => s
                .SetProperty(r => r.State, RedemptionState.Disbursed)
                .SetProperty(r => r.DisbursedFen, payable.Value)
                .SetProperty(r => r.PaymentRef, paymentRef)
                .SetProperty(r => r.DisbursedAt, now)
                .SetProperty(r => r.DisbursementEntryId, entry.Id), ct);
            return WithReceipt(await LoadAsync(row.Id, ct), entry);
        }, context.CancellationToken);
    }

    public override Task<ClawBackResponse> ClawBack(ClawBackRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var amount = Validate.Amount(request.AmountFen, "amount_fen");
        var reason = Validate.Text(request.Reason, "reason");
        var party = request.PartyUscc.Length > 0 ? Validate.Uscc(request.PartyUscc, "party_uscc") : null;
        var standing = request.Standing.FromApi(unspecified: PartyStanding.Blacklisted);
        if (request.TargetCase == ClawBackRequest.TargetOneofCase.None)
        {
            throw new LedgerException(Reason.InvalidArgument, "Name what to claw back: deduction_id, grant_id or redemption_id.");
        }

        return idempotency.RunAsync(by, request.RequestId, nameof(ClawBack), request,
            ct => ClawBacks.ReverseAsync(db, request, amount, reason, party, standing, time.GetUtcNow(), by, ct), context.CancellationToken);
    }

    public override async Task<V1.Redemption> GetRedemption(GetRedemptionRequest request, ServerCallContext context)
    {
        var caller = Access.Require(context, Role.Bureau, Role.Expert, Role.Unit);
        var redemptionId = Validate.Id(request.RedemptionId, "redemption_id");
        var redemption = await LoadOrDefaultAsync(redemptionId, context.CancellationToken);
        // The same answer whether it does not exist or is another unit's.
        return redemption is not null && Access.MayRead(caller, providerUscc: "", redemption.UnitUscc)
            ? redemption
            : throw new LedgerException(Reason.UnknownRedemption, $"There is no redemption {redemptionId} the caller may read.");
    }

    public override async Task<ListRedemptionsResponse> ListRedemptions(ListRedemptionsRequest request, ServerCallContext context)
    {
        var caller = Access.Require(context, Role.Bureau, Role.Expert, Role.Unit);
        var unit = request.UnitUscc;
        if (!Access.ReadsAll(caller))
        {
            Access.RequireSelf(context, Role.Unit, unit.Length > 0 ? unit : caller.Uscc);
            unit = caller.Uscc;
        }

        var pageSize = Validate.PageSize(request.PageSize, whenZero: DefaultPageSize, max: MaxPageSize);
        var filters = $"{request.BatchId}|{unit}|{request.Year}";
        var after = PageToken.LastId(request.PageToken, filters);
        var query = db.Redemptions.AsNoTracking().Include(r => r.Evidence).Where(r => r.Id > after);
        if (request.BatchId != 0)
        {
            query = query.Where(r => r.BatchId == request.BatchId);
        }

        if (unit.Length > 0)
        {
            query = query.Where(r => r.UnitUscc == unit);
        }

        if (request.Year != 0)
        {
            query = query.Where(r => r.Year == request.Year);
        }

        // One more than the page: whether a next page exists, without a count.
        var rows = await query.OrderBy(r => r.Id).Take(pageSize + 1).ToListAsync(context.CancellationToken);
        var page = rows.Take(pageSize).ToList();
        return new ListRedemptionsResponse
        {
            Redemptions = { page.Select(ToApi) },
            NextPageToken = rows.Count > pageSize ? PageToken.After(page[^1].Id, filters) : "",
        };
    }

    /// <summary>Locks the redemption's unit-year, then reads the redemption and the unit-year's accounts.</summary>
    private async Task<(RedemptionRow Row, Dictionary<AccountKind, long> Accounts)> LockAsync(long redemptionId, CancellationToken ct)
    {
        var key = await db.Redemptions.AsNoTracking().Where(r => r.Id == redemptionId).Select(r => new { r.UnitUscc, r.Year }).SingleOrDefaultAsync(ct)
            ?? throw new LedgerException(Reason.UnknownRedemption, $"There is no redemption {redemptionId}.");
        await UnitYears.LockOrCreateAsync(db, key.UnitUscc, key.Year, ct);
        var row = await db.Redemptions.AsNoTracking().SingleAsync(r => r.Id == redemptionId, ct);
        return (row, await UnitYears.RedemptionAccountsAsync(db, key.UnitUscc, key.Year, ct));
    }

    private async Task<V1.Redemption> LoadAsync(long redemptionId, CancellationToken ct) =>
        (await LoadOrDefaultAsync(redemptionId, ct))!;

    private async Task<V1.Redemption?> LoadOrDefaultAsync(long redemptionId, CancellationToken ct) =>
        await db.Redemptions.AsNoTracking().Include(r => r.Evidence).SingleOrDefaultAsync(r => r.Id == redemptionId, ct) is { } row ? ToApi(row) : null;

    /// <summary>The platform statement (Art 12.6), generated by the ledger: a digest of every entry of the unit's statement
    /// for the year so far, its own chain's and the gifts it received from an operator's chain, in entry order.</summary>
    private async Task<EvidenceRow> PlatformStatementAsync(string unit, int year, CancellationToken ct)
    {
        var hashes = await db.JournalEntries.AsNoTracking()
            .Where(e => e.Year == year && (e.UnitUscc == unit || e.CounterpartyUscc == unit))
            .OrderBy(e => e.Id)
            .Select(e => new { e.Id, e.Hash }).ToListAsync(ct);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var entry in hashes)
        {
            sha.AppendData(entry.Hash);
        }

        return new EvidenceRow
        {
            Kind = (short)EvidenceKind.PlatformStatement,
            Reference = $"quotaledger:statement/{unit}/{year}?through-entry={(hashes.Count > 0 ? hashes[^1].Id : 0)}",
            Sha256 = Convert.ToHexStringLower(sha.GetHashAndReset()),
        };
    }

    private static List<EvidenceRow> ValidateEvidence(IEnumerable<Evidence> evidence)
    {
        var rows = new List<EvidenceRow>();
        foreach (var item in evidence)
        {
            if (item.Kind is EvidenceKind.Unspecified or EvidenceKind.PlatformStatement || !Enum.IsDefined(item.Kind))
            {
                throw new LedgerException(Reason.InvalidArgument, $"evidence kind {item.Kind} is not one a unit submits; the ledger adds the platform statement itself.");
            }

            if (item.Sha256.Length != 64 || !item.Sha256.All(Uri.IsHexDigit))
            {
                throw new LedgerException(Reason.InvalidArgument, $"evidence sha256 of '{item.Reference}' must be 64 hex characters.");
            }

            rows.Add(new EvidenceRow { Kind = (short)item.Kind, Reference = Validate.Text(item.Reference, "evidence reference"), Sha256 = item.Sha256.ToLowerInvariant() });
        }

        var missing = s_requiredEvidence.Where(k => rows.All(r => r.Kind != (short)k)).ToList();
        if (missing.Count > 0)
        {
            throw new LedgerException(Reason.InvalidArgument, $"evidence lacks {string.Join(", ", missing)} (Art 12).");
        }

        return rows.Count <= 64 ? rows : throw new LedgerException(Reason.InvalidArgument, "At most 64 evidence items are accepted.");
    }

    private static V1.Redemption WithReceipt(V1.Redemption redemption, JournalEntryRow? entry)
    {
        redemption.Receipt = entry?.ToReceipt();
        return redemption;
    }

    private static JournalEntryRow Entry(EntryKind kind, RedemptionRow row, DateTimeOffset now, string requestId, string by, string memo) => new()
    {
        Kind = kind,
        CreatedAt = now,
        Year = row.Year,
        UnitUscc = row.UnitUscc,
        RequestId = requestId,
        Caller = by,
        Memo = memo,
    };

    private static Batch ToApi(RedemptionBatchRow batch) => new()
    {
        BatchId = batch.Id,
        Year = batch.Year,
        OpenedAt = batch.OpenedAt.ToTimestamp(),
        ClosesAt = batch.ClosesAt.ToTimestamp(),
    };

    internal static V1.Redemption ToApi(RedemptionRow row) => new()
    {
        RedemptionId = row.Id,
        BatchId = row.BatchId,
        UnitUscc = row.UnitUscc,
        Year = row.Year,
        RequestedFen = row.RequestedFen,
        ApprovedFen = row.ApprovedFen ?? 0,
        DisbursedFen = row.DisbursedFen,
        ClawedBackFen = row.ClawedBackFen,
        OutstandingFen = row.OutstandingFen,
        State = (V1.RedemptionState)row.State,
        Evidence = { row.Evidence.OrderBy(e => e.Id).Select(e => new Evidence { Kind = (EvidenceKind)e.Kind, Reference = e.Reference, Sha256 = e.Sha256 }) },
        Reviewer = row.Reviewer ?? "",
        ReviewReason = row.ReviewReason ?? "",
        PaymentRef = row.PaymentRef ?? "",
        SubmittedAt = row.SubmittedAt.ToTimestamp(),
        ReviewedAt = row.ReviewedAt?.ToTimestamp(),
        DisbursedAt = row.DisbursedAt?.ToTimestamp(),
    };
}
