using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using AlertKind = QuotaLedger.Server.Storage.AlertKind;

namespace QuotaLedger.Server.Alerts;

/// <summary>The alert rules per year and the alerts they raised (see alerts.proto).</summary>
internal sealed class AlertGrpcService(LedgerDb db, Idempotency idempotency, TimeProvider time) : AlertService.AlertServiceBase
{
    private const int DefaultPageSize = 100;
    private const int MaxPageSize = 1_000;

    public override Task<V1.AlertRules> SetAlertRules(SetAlertRulesRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var rules = AlertRules.FromApi(request.Rules);
        return idempotency.RunAsync(by, request.RequestId, nameof(SetAlertRules), request, async ct =>
        {
            var now = time.GetUtcNow();
            var row = await db.AlertRules.SingleOrDefaultAsync(r => r.Year == rules.Year, ct);
            if (row is null)
            {
                row = new AlertRuleRow { Year = rules.Year };
                db.AlertRules.Add(row);
            }

            row.UnitYearCapBp = [.. rules.UnitYearCapBp];
            row.PoolLowBp = rules.PoolLowBp;
            row.GrantExpiryDays = rules.GrantExpiryDays;
            row.GrantUnusedFen = rules.GrantUnused.Value;
            row.RedemptionPendingDays = rules.RedemptionPendingDays;
            row.UpdatedAt = now;
            await db.SaveChangesAsync(ct);
            return AlertRules.FromRow(row).ToApi();
        }, context.CancellationToken);
    }

    public override async Task<V1.AlertRules> GetAlertRules(GetAlertRulesRequest request, ServerCallContext context)
    {
        Access.RequireReader(context);
        var year = Validate.Year(request.Year);
        return (await AlertRules.ForYearAsync(db, year, context.CancellationToken)).ToApi();
    }

    public override Task<RunAlertPassResponse> RunAlertPass(RunAlertPassRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        return idempotency.RunAsync(by, request.RequestId, nameof(RunAlertPass), request, async ct =>
        {
            var outcome = await AlertPass.RunAsync(db, time.GetUtcNow(), ct);
            return new RunAlertPassResponse { GrantExpiring = outcome.GrantExpiring, RedemptionPending = outcome.RedemptionPending };
        }, context.CancellationToken);
    }

    public override async Task<ListAlertsResponse> ListAlerts(ListAlertsRequest request, ServerCallContext context)
    {
        var caller = Access.RequireReader(context);
        var unit = request.UnitUscc.Length > 0 ? Validate.Uscc(request.UnitUscc, "unit_uscc") : "";
        var provider = request.ProviderUscc.Length > 0 ? Validate.Uscc(request.ProviderUscc, "provider_uscc") : "";
        var year = request.Year != 0 ? Validate.Year(request.Year) : 0;
        var kind = request.Kind switch
        {
            V1.AlertKind.Unspecified => (AlertKind?)null,
            V1.AlertKind.UnitYearCap => AlertKind.UnitYearCap,
            V1.AlertKind.PoolLow => AlertKind.PoolLow,
            V1.AlertKind.GrantExpiring => AlertKind.GrantExpiring,
            V1.AlertKind.RedemptionPending => AlertKind.RedemptionPending,
            _ => throw new LedgerException(Reason.InvalidArgument, $"kind {request.Kind} is not an alert kind."),
        };
        var pageSize = Validate.PageSize(request.PageSize, whenZero: DefaultPageSize, max: MaxPageSize);
        var filters = $"{year}|{(short?)kind}|{unit}|{provider}";
        var after = PageToken.LastId(request.PageToken, filters);

        var query = Visible(db.Alerts.AsNoTracking(), caller).Where(a => a.Id > after);
        if (year != 0)
        {
            query = query.Where(a => a.Year == year);
        }

        if (kind is { } k)
        {
            query = query.Where(a => a.Kind == k);
        }

        if (unit.Length > 0)
        {
            query = query.Where(a => a.UnitUscc == unit);
        }

        if (provider.Length > 0)
        {
            query = query.Where(a => a.ProviderUscc == provider);
        }

        // One more than the page: whether a next page exists, without a count.
        var rows = await query.OrderBy(a => a.Id).Take(pageSize + 1).ToListAsync(context.CancellationToken);
        var page = rows.Take(pageSize).ToList();
        return new ListAlertsResponse
        {
            Alerts = { page.Select(ToApi) },
            NextPageToken = rows.Count > pageSize ? PageToken.After(page[^1].Id, filters) : "",
        };
    }

    /// <summary>What the caller may see: everything for the bureau and experts; for a provider, the alerts about its own
    /// grants and the unit-year alerts of units it has a contract with; for a unit, its own. Filters narrow this, never
    /// widen it: a filter naming someone else's unit or provider simply finds nothing.</summary>
    private IQueryable<AlertRow> Visible(IQueryable<AlertRow> alerts, Caller caller)
    {
        if (caller.IsDevelopment || Access.ReadsAll(caller))
        {
            return alerts;
        }

        var self = caller.Uscc;
        var asProvider = caller.Has(Role.Provider);
        var asUnit = caller.Has(Role.Unit);
        var dealtWith = db.Contracts.Where(c => c.ProviderUscc == self).Select(c => c.UnitUscc);
        return alerts.Where(a =>
            (asProvider && (a.ProviderUscc == self || (a.Kind == AlertKind.UnitYearCap && dealtWith.Contains(a.UnitUscc!))))
            || (asUnit && a.UnitUscc == self));
    }

    /// <summary>An alert as the API shows it (ListAlerts and Watch).</summary>
    public static Alert ToApi(AlertRow row) => new()
    {
        AlertId = row.Id,
        Year = row.Year,
        Kind = (V1.AlertKind)(int)row.Kind,
        ThresholdBp = row.ThresholdBp,
        ThresholdDays = row.ThresholdDays,
        UnitUscc = row.UnitUscc ?? "",
        ProviderUscc = row.ProviderUscc ?? "",
        GrantId = row.GrantId ?? 0,
        RedemptionId = row.RedemptionId ?? 0,
        FigureFen = row.FigureFen,
        LimitFen = row.LimitFen,
        BaseFen = row.BaseFen,
        CreatedAt = row.CreatedAt.ToTimestamp(),
        EntryId = row.EntryId ?? 0,
    };
}
