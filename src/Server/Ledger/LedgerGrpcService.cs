using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Engine;
using QuotaLedger.Server.Feed;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Ledger;

/// <summary>What provider billing systems call: Grant (Art 9) and Deduct (Art 10), and the reads that go with them.</summary>
internal sealed class LedgerGrpcService(
    LedgerDb db, WriteQueue engine, LedgerDatabase database, FeedHub feed, WatchOptions watch, DeductionOptions engineOptions,
    TimeProvider time, ILogger<LedgerGrpcService> logger)
    : LedgerService.LedgerServiceBase
{
    public override Task<GrantResponse> Grant(GrantRequest request, ServerCallContext context)
    {
        var call = GrantCallOf(request, context);
        if (request.DryRun)
        {
            // No request id is claimed, checked or recorded: the real call may use it afterwards.
            return ExplainGrantAsync(call, request, context.CancellationToken);
        }

        return GrantAsync(call, request, context.CancellationToken);
    }

    /// <summary>The caller's authority over the grant and its fields, checked as every Grant checks them.</summary>
    private static GrantCall GrantCallOf(GrantRequest request, ServerCallContext context)
    {
        var by = Access.RequireSelf(context, Role.Provider, request.ProviderUscc).ScopeFor(Callers.Provider(request.ProviderUscc));
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var contractNo = Validate.Text(request.ContractNo, "contract_no", maxLength: 64);
        var amount = Validate.Amount(request.AmountFen, "amount_fen");
        return new GrantCall(provider, contractNo, amount, request.RequestId, by);
    }

    public override async Task<GrantManyResponse> GrantMany(GrantManyRequest request, ServerCallContext context)
    {
        BulkItems.CheckCount(request.Items.Count, engineOptions.MaxBulkItems);
        var (refusals, valid) = BulkItems.Check(request.Items, item =>
        {
            var call = GrantCallOf(item, context);
            BulkItems.CheckItem(item.DryRun, item.RequestId, "Grant");
            return (call, item);
        });
        var answers = await engine.GrantManyAsync([.. valid.Select(v => v.Item)], time.GetUtcNow(), SweepDueGrantsAsync, context.CancellationToken);
        var outcomes = BulkItems.Outcomes<GrantResponse>(refusals, valid.Select(v => v.Index), answers, logger, context.Method);
        var (applied, refused) = BulkItems.Count(outcomes);
        return new GrantManyResponse
        {
            Outcomes = { outcomes.Select(o => o.Applied is { } done ? new GrantOutcome { Applied = done } : new GrantOutcome { Refused = o.Refused }) },
            Applied = applied,
            Refused = refused,
        };
    }

    private Task<GrantResponse> ExplainGrantAsync(GrantCall call, GrantRequest request, CancellationToken ct) =>
        engine.ExplainAsync(call, request, time.GetUtcNow(), ct);

    private async Task<GrantResponse> GrantAsync(GrantCall call, GrantRequest request, CancellationToken ct)
    {
        Validate.RequestId(call.RequestId);
        return await engine.GrantAsync(call, request, time.GetUtcNow(), SweepDueGrantsAsync, ct);
    }

    /// <summary>Expiry takes effect at expires_at: the rules count what due grants of the contract and the year hold as
    /// the contract's and the pool's again, and the expiry pass moves it there before the grant is queued, so the rows
    /// the grant writes hold it too. One probe of the open grants past their expiry when there are none.</summary>
    private async Task SweepDueGrantsAsync(GrantTarget target, Fen amount, DateTimeOffset now, CancellationToken ct)
    {
        if (await Expiry.AnyDueAsync(db, target.ContractId, target.Year, now, ct))
        {
            await Expiry.SweepBeforeGrantAsync(db, engine, target.ContractId, target.Year, amount, now, logger, ct);
            db.ChangeTracker.Clear();
        }
    }

    public override Task<DeductResponse> Deduct(DeductRequest request, ServerCallContext context)
    {
        var deduction = DeductionOf(request, context);
        if (request.DryRun)
        {
            // Not through the queue, no lock, no request id: a prediction read from one snapshot.
            return engine.ExplainAsync(deduction, context.CancellationToken);
        }

        Validate.RequestId(request.RequestId);
        return engine.DeductAsync(deduction, context.CancellationToken);
    }

    /// <summary>The caller's authority over the deduction and its fields, checked as every Deduct checks them.</summary>
    private DeductionRequest DeductionOf(DeductRequest request, ServerCallContext context)
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

        return new DeductionRequest(request, by, provider, grantId, invoiceNo, invoiceAmount, invoiceDate);
    }

    public override async Task<DeductManyResponse> DeductMany(DeductManyRequest request, ServerCallContext context)
    {
        BulkItems.CheckCount(request.Items.Count, engineOptions.MaxBulkItems);
        var (refusals, valid) = BulkItems.Check(request.Items, item =>
        {
            var deduction = DeductionOf(item, context);
            BulkItems.CheckItem(item.DryRun, item.RequestId, "Deduct");
            return deduction;
        });
        var answers = await engine.DeductManyAsync([.. valid.Select(v => v.Item)], context.CancellationToken);
        var outcomes = BulkItems.Outcomes<DeductResponse>(refusals, valid.Select(v => v.Index), answers, logger, context.Method);
        var (applied, refused) = BulkItems.Count(outcomes);
        return new DeductManyResponse
        {
            Outcomes = { outcomes.Select(o => o.Applied is { } done ? new DeductOutcome { Applied = done } : new DeductOutcome { Refused = o.Refused }) },
            Applied = applied,
            Refused = refused,
        };
    }

    public override Task<ReleaseResponse> Release(ReleaseRequest request, ServerCallContext context)
    {
        var by = Access.RequireSelf(context, Role.Provider, request.ProviderUscc).ScopeFor(Callers.Provider(request.ProviderUscc));
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var grantId = Validate.Id(request.GrantId, "grant_id");
        var statementRef = Validate.Text(request.StatementRef, "statement_ref");

        Validate.RequestId(request.RequestId);
        return engine.ReleaseAsync(new ReleaseCall(provider, grantId, statementRef, request.RequestId, by), request, context.CancellationToken);
    }

    public override Task<GiftResponse> Gift(GiftRequest request, ServerCallContext context)
    {
        var by = Access.RequireSelf(context, Role.Unit, request.OperatorUscc).ScopeFor(Callers.Unit(request.OperatorUscc));
        var operatorUscc = Validate.Uscc(request.OperatorUscc, "operator_uscc");
        var grantId = Validate.Id(request.GrantId, "grant_id");
        var resident = Validate.Uscc(request.ResidentUscc, "resident_uscc");
        var amount = Validate.Amount(request.AmountFen, "amount_fen");

        Validate.RequestId(request.RequestId);
        return engine.GiftAsync(new GiftCall(operatorUscc, grantId, resident, amount, request.RequestId, by), request, context.CancellationToken);
    }

    public override async Task<GrantInfo> GetGrant(GetGrantRequest request, ServerCallContext context)
    {
        var caller = Access.RequireReader(context);
        var grantId = Validate.Id(request.GrantId, "grant_id");
        var now = time.GetUtcNow();
        var info = Validate.AsOf(request.AsOf, now) is { } asOf
            ? await Grants.InfoAsOfAsync(db, grantId, asOf, context.CancellationToken)
            : await Grants.InfoAsync(db, grantId, now, context.CancellationToken);
        return info is not null && Access.MayRead(caller, info.ProviderUscc, info.UnitUscc) ? info : throw Grants.Unknown(grantId);
    }

    public override async Task<Deduction> GetDeduction(GetDeductionRequest request, ServerCallContext context)
    {
        var caller = Access.RequireReader(context);
        var key = DeductionKey.Of(request);
        var deduction = await DeductionReads.InfoAsync(db, key, context.CancellationToken);
        // The same answer whether it does not exist or is not the caller's to read, as for a grant or a contract.
        return deduction is not null && Access.MayRead(caller, deduction.ProviderUscc, deduction.UnitUscc) ? deduction : throw DeductionReads.Unknown(key);
    }

    public override async Task<V1.UnitYear> GetUnitYear(GetUnitYearRequest request, ServerCallContext context)
    {
        var caller = Access.RequireReader(context);
        var unit = Validate.Uscc(request.UnitUscc, "unit_uscc");
        var year = Validate.Year(request.Year);
        var now = time.GetUtcNow();
        var asOf = Validate.AsOf(request.AsOf, now);
        var ct = context.CancellationToken;

        // A unit reads its own unit-years; a provider those of the units it has a contract with. Anything else answers as
        // an unknown unit would, so a caller learns nothing of units that are not its business.
        var contracted = caller.Has(Role.Provider) && await db.Contracts.AnyAsync(c => c.ProviderUscc == caller.Uscc && c.UnitUscc == unit, ct);
        if (!Access.MayRead(caller, providerUscc: contracted ? caller.Uscc : "", unitUscc: unit) || !await db.Units.AnyAsync(u => u.Uscc == unit, ct))
        {
            throw new LedgerException(Reason.UnknownUnit, $"There is no unit {unit} the caller may read.");
        }

        // As GetProgramYear: a year without a policy has no cap and no figures to show, not a cap of 0.
        if (!await db.YearPolicies.AnyAsync(p => p.Year == year, ct))
        {
            throw new LedgerException(Reason.YearNotOpen, $"There is no policy for {year}, so unit {unit} has no figures for it; the bureau sets one with SetYearPolicy.");
        }

        var figures = asOf is { } then
            ? await UnitYears.FiguresAsOfAsync(db, unit, year, then, ct)
            : await UnitYears.FiguresAsync(db, unit, year, now, ct);
        return figures.ToApi();
    }

    public override Task<PingResponse> Ping(PingRequest request, ServerCallContext context) => Task.FromResult(new PingResponse());

    public override Task ListEntries(ListEntriesRequest request, IServerStreamWriter<JournalEntry> responseStream, ServerCallContext context)
    {
        (request.UnitUscc, request.ProviderUscc) = EntryFilter.ScopeToCaller(context, request.UnitUscc, request.ProviderUscc);
        return Statements.StreamAsync(db, database.DataSource, request, EntryFilter.Of(request), responseStream, context.CancellationToken);
    }

    /// <summary>The response header that names a watch's starting cursor.</summary>
    public const string StartCursorHeader = "quotaledger-start-cursor";

    public override async Task Watch(WatchRequest request, IServerStreamWriter<WatchEvent> responseStream, ServerCallContext context)
    {
        (request.UnitUscc, request.ProviderUscc) = EntryFilter.ScopeToCaller(context, request.UnitUscc, request.ProviderUscc);
        var filter = EntryFilter.Of(request);
        if (request.FromNow && request.AfterCursor.Length > 0)
        {
            throw new LedgerException(Reason.InvalidArgument, "Set after_cursor or from_now, not both.");
        }

        var after = request.AfterCursor.Length > 0 ? FeedPosition.Parse(request.AfterCursor, "after_cursor")
            : request.FromNow ? await CommitOrder.EndAsync(database.DataSource, context.CancellationToken)
            : FeedPosition.Start;
        // Tells the client the watch has its starting place, and which (for from_now, what "now" is), before any event
        // comes: a client that reconnects before the first event resumes from it.
        await context.WriteResponseHeadersAsync([new Metadata.Entry(StartCursorHeader, after.Cursor)]);
        await Watcher.RunAsync(feed, database.DataSource, watch, filter, after, responseStream, context.CancellationToken);
    }
}
