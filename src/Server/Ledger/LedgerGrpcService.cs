using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AccountKind = QuotaLedger.Server.Storage.AccountKind;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Server.Ledger;

/// <summary>What provider billing systems call: Grant (Art 9) and Deduct (Art 10), and the reads that go with them.</summary>
internal sealed class LedgerGrpcService(LedgerDb db, Idempotency idempotency, DeductionQueue deductions, TimeProvider time) : LedgerService.LedgerServiceBase
{
    public override Task<GrantResponse> Grant(GrantRequest request, ServerCallContext context)
    {
        var by = Access.RequireSelf(context, Role.Provider, request.ProviderUscc).ScopeFor(Callers.Provider(request.ProviderUscc));
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var contractNo = Validate.Text(request.ContractNo, "contract_no", maxLength: 64);
        var amount = Validate.Amount(request.AmountFen, "amount_fen");

        return idempotency.RunAsync(by, request.RequestId, nameof(Grant), request,
            ct => GrantAsync(provider, contractNo, amount, request.RequestId, by, ct), context.CancellationToken);
    }

    public override Task<DeductResponse> Deduct(DeductRequest request, ServerCallContext context)
    {
        var by = Access.RequireSelf(context, Role.Provider, request.ProviderUscc).ScopeFor(Callers.Provider(request.ProviderUscc));
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var grantId = Validate.Id(request.GrantId, "grant_id");
        var invoiceNo = Validate.Text(request.InvoiceNo, "invoice_no", maxLength: 64);
        var invoiceAmount = Validate.Amount(request.InvoiceAmountFen, "invoice_amount_fen");
        var invoiceDate = Validate.Date(request.InvoiceDate, "invoice_date");
        if (invoiceDate > ChinaCalendar.DateOf(time.GetUtcNow()))
        {
            throw new LedgerException(Reason.InvalidArgument, $"invoice_date {request.InvoiceDate} is in the future.");
        }

        Validate.RequestId(request.RequestId);
        return deductions.DeductAsync(new DeductionRequest(request, by, provider, grantId, invoiceNo, invoiceAmount, invoiceDate), context.CancellationToken);
    }

    public override Task<ReleaseResponse> Release(ReleaseRequest request, ServerCallContext context)
    {
        var by = Access.RequireSelf(context, Role.Provider, request.ProviderUscc).ScopeFor(Callers.Provider(request.ProviderUscc));
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var grantId = Validate.Id(request.GrantId, "grant_id");
        var statementRef = Validate.Text(request.StatementRef, "statement_ref");

        return idempotency.RunAsync(by, request.RequestId, nameof(Release), request, async ct =>
        {
            var (_, grant) = await Grants.LockOwnAsync(db, provider, grantId, ct);

            var now = time.GetUtcNow();
            EnsureOpen(grant, now, "release");
            var released = await GrantReturns.CloseAsync(db, grant, GrantState.Released, request.RequestId, by, now,
                $"released, joint statement {statementRef}", statementRef, ct);
            return new ReleaseResponse
            {
                GrantId = grantId,
                ReleasedFen = released.Value,
                UnitYear = (await UnitYears.FiguresAsync(db, grant.UnitUscc, grant.Year, now, ct)).ToApi(),
            };
        }, context.CancellationToken);
    }

    public override Task<GiftResponse> Gift(GiftRequest request, ServerCallContext context)
    {
        var by = Access.RequireSelf(context, Role.Unit, request.OperatorUscc).ScopeFor(Callers.Unit(request.OperatorUscc));
        var operatorUscc = Validate.Uscc(request.OperatorUscc, "operator_uscc");
        var grantId = Validate.Id(request.GrantId, "grant_id");
        var resident = Validate.Uscc(request.ResidentUscc, "resident_uscc");
        var amount = Validate.Amount(request.AmountFen, "amount_fen");

        return idempotency.RunAsync(by, request.RequestId, nameof(Gift), request,
            ct => Gifts.GiveAsync(db, time.GetUtcNow(), request.RequestId, by, operatorUscc, grantId, resident, amount, ct), context.CancellationToken);
    }

    public override async Task<GrantInfo> GetGrant(GetGrantRequest request, ServerCallContext context)
    {
        var grantId = Validate.Id(request.GrantId, "grant_id");
        var info = await Grants.InfoAsync(db, grantId, time.GetUtcNow(), context.CancellationToken) ?? throw UnknownGrant(grantId);
        Access.EnsureParty(Access.CallerOf(context), info.ProviderUscc, info.UnitUscc);
        return info;
    }

    public override async Task<V1.UnitYear> GetUnitYear(GetUnitYearRequest request, ServerCallContext context)
    {
        var unit = Validate.Uscc(request.UnitUscc, "unit_uscc");
        var year = Validate.Year(request.Year);
        var ct = context.CancellationToken;
        if (!await db.Units.AnyAsync(u => u.Uscc == unit, ct))
        {
            throw new LedgerException(Reason.UnknownUnit, $"No unit is registered with USCC {unit}.");
        }

        // A unit reads its own unit-years; a provider those of the units it has a contract with.
        var caller = Access.CallerOf(context);
        var contracted = caller.Has(Role.Provider) && await db.Contracts.AnyAsync(c => c.ProviderUscc == caller.Uscc && c.UnitUscc == unit, ct);
        Access.EnsureParty(caller, providerUscc: contracted ? caller.Uscc : "", unitUscc: unit);

        return (await UnitYears.FiguresAsync(db, unit, year, time.GetUtcNow(), ct)).ToApi();
    }

    public override Task<PingResponse> Ping(PingRequest request, ServerCallContext context) => Task.FromResult(new PingResponse());

    public override Task ListEntries(ListEntriesRequest request, IServerStreamWriter<JournalEntry> responseStream, ServerCallContext context)
    {
        // A provider's statement is its own entries; a unit's its own (gifts it received included).
        var caller = Access.CallerOf(context);
        if (!Access.ReadsAll(caller))
        {
            if (caller.Has(Role.Provider))
            {
                Access.EnsureOwn(caller, request.ProviderUscc.Length > 0 ? request.ProviderUscc : caller.Uscc);
                request.ProviderUscc = caller.Uscc;
            }
            else
            {
                Access.RequireSelf(context, Role.Unit, request.UnitUscc.Length > 0 ? request.UnitUscc : caller.Uscc);
                request.UnitUscc = caller.Uscc;
            }
        }

        return Statements.StreamAsync(db, request, responseStream, context.CancellationToken);
    }

    private async Task<GrantResponse> GrantAsync(string provider, string contractNo, Fen amount, string requestId, string by, CancellationToken ct)
    {
        var contract = await db.Contracts.AsNoTracking().SingleOrDefaultAsync(c => c.ProviderUscc == provider && c.ContractNo == contractNo, ct);
        if (contract is null)
        {
            throw await db.Providers.AnyAsync(p => p.Uscc == provider, ct)
                ? new LedgerException(Reason.UnknownContract, $"Provider {provider} has no contract '{contractNo}'; call RegisterContract first.")
                : new LedgerException(Reason.UnknownProvider, $"No provider is registered with USCC {provider}.");
        }

        if (contract.UsesInnovationVoucher)
        {
            throw new LedgerException(Reason.InnovationVoucherConflict,
                $"Contract '{contractNo}' already enjoys the science-and-technology innovation voucher, so it gets no compute-voucher quota (Art 15).");
        }

        var approval = await db.UnitReviews.AsNoTracking()
            .Where(r => r.ProviderUscc == provider && r.UnitUscc == contract.UnitUscc)
            .OrderByDescending(r => r.Id)
            .Select(r => (bool?)r.Approved)
            .FirstOrDefaultAsync(ct);
        if (approval is not true)
        {
            throw new LedgerException(Reason.UnitNotApproved,
                $"Unit {contract.UnitUscc} has no approved qualification review from provider {provider} (Art 7); call ReviewUnit first.");
        }

        await Eligibility.EnsureGoodStandingAsync(db, provider, contract.UnitUscc, ct);
        await Eligibility.EnsureNotRelatedAsync(db, provider, contract.UnitUscc, ct);

        var now = time.GetUtcNow();
        var year = ChinaCalendar.YearOf(now);
        var policy = await Policies.FindAsync(db, year, ct)
            ?? throw new LedgerException(Reason.BudgetExhausted, $"There is no policy for {year}, so it has no budget; the bureau must call SetYearPolicy and FundBudget first.");
        var sme = await db.Units.Where(u => u.Uscc == contract.UnitUscc).Select(u => u.Sme).SingleAsync(ct);

        var unitYear = await UnitYears.LockOrCreateAsync(db, contract.UnitUscc, year, ct);

        var ratio = policy.RatioFor(contract.SelfControllable, sme);
        var quota = VoucherPolicy.ContractQuota(new Fen(contract.AmountFen), ratio);
        var committedOnContract = await db.Contracts
            .Where(c => c.Id == contract.Id && c.GrantedFen + amount.Value <= quota.Value)
            .ExecuteUpdateAsync(s => s.SetProperty(c => c.GrantedFen, c => c.GrantedFen + amount.Value), ct);
        if (committedOnContract == 0)
        {
            throw new LedgerException(Reason.ContractQuotaExceeded,
                $"Contract '{contractNo}' allows {quota} of quota ({contract.AmountFen} fen at {ratio}); {amount} more would exceed it.");
        }

        var before = await UnitYears.FiguresAsync(db, contract.UnitUscc, year, now, ct);
        if (!UnitYearCap.Allows(before.Cap, before.GrantedOpen, before.Deducted, amount))
        {
            throw new LedgerException(Reason.UnitYearCapExceeded,
                $"Unit {contract.UnitUscc} has committed {before.GrantedOpen + before.Deducted} of its {before.Cap} cap for {year}; at most {before.Headroom} more can be granted.");
        }

        var poolId = await db.Accounts.Where(a => a.Kind == AccountKind.Pool && a.Year == year).Select(a => (long?)a.Id).SingleOrDefaultAsync(ct)
            ?? throw new LedgerException(Reason.BudgetExhausted, $"The {year} budget pool has not been funded.");

        var grant = new GrantRow
        {
            ContractId = contract.Id,
            ProviderUscc = provider,
            UnitUscc = contract.UnitUscc,
            Year = year,
            UnitYearId = unitYear.Id,
            Account = new AccountRow { Kind = AccountKind.Grant, Year = year },
            RatioBp = ratio.Value,
            AmountFen = amount.Value,
            GrantedAt = now,
            ExpiresAt = policy.ExpiryOf(now),
        };
        db.Grants.Add(grant);
        await db.SaveChangesAsync(ct);

        await Journal.PostAsync(db, new JournalEntryRow
        {
            Kind = EntryKind.Grant,
            CreatedAt = now,
            Year = year,
            UnitUscc = grant.UnitUscc,
            ProviderUscc = provider,
            GrantId = grant.Id,
            RequestId = requestId,
            Caller = by,
            Memo = $"grant on contract {contractNo}",
        },
        [
            Leg.Debit(grant.AccountId, AccountKind.Grant, amount),
            Leg.Credit(poolId, AccountKind.Pool, amount, Reason.BudgetExhausted),
        ], ct);

        return new GrantResponse
        {
            GrantId = grant.Id,
            AmountFen = amount.Value,
            ExpiresAt = grant.ExpiresAt.ToTimestamp(),
            GrantedAt = now.ToTimestamp(),
            RatioBp = ratio.Value,
            UnitYear = (before with { GrantedOpen = before.GrantedOpen + amount }).ToApi(),
        };
    }

    /// <summary>The validity rule, checked at the call whatever the expiry pass has done: a grant past its expiry, or
    /// released, accepts nothing.</summary>
    internal static void EnsureOpen(GrantRow grant, DateTimeOffset now, string what)
    {
        switch (Grants.StatusOf(grant, grant.Account!.BalanceFen, now))
        {
            case GrantStatus.Expired:
                throw new LedgerException(Reason.GrantExpired, $"Grant {grant.Id} expired at {grant.ExpiresAt:u} and accepts no {what} (Art 10).");
            case GrantStatus.Released:
                throw new LedgerException(Reason.GrantClosed, $"Grant {grant.Id} was released and accepts no {what}.");
        }
    }

    internal static LedgerException UnknownGrant(long grantId) => new(Reason.UnknownGrant, $"There is no grant {grantId}.");
}
