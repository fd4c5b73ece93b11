using System.Runtime.CompilerServices;

namespace QuotaLedger.Client;

public sealed partial class QuotaLedgerClient
{
    /// <inheritdoc />
    public async Task<AlertRules> SetAlertRulesAsync(AlertRules rules, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.SetAlertRulesRequest
        {
            RequestId = requestId ?? NewRequestId(),
            Rules = new V1.AlertRules
            {
                Year = rules.Year, UnitYearCapBp = { rules.UnitYearCapBp }, PoolLowBp = rules.PoolLowBp, GrantExpiryDays = rules.GrantExpiryDays,
                GrantUnusedFen = rules.GrantUnused.Value, RedemptionPendingDays = rules.RedemptionPendingDays,
            },
        };
        return Map.From(await CallAsync(s_setAlertRules, request.RequestId, o => _alerts.SetAlertRulesAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task<AlertRules> GetAlertRulesAsync(int year, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getAlertRules, null, o => _alerts.GetAlertRulesAsync(new V1.GetAlertRulesRequest { Year = year }, o), cancellationToken));

    /// <inheritdoc />
    public async IAsyncEnumerable<AlertInfo> ListAlertsAsync(AlertFilter? filter = null, int pageSize = 0, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var request = new V1.ListAlertsRequest
        {
            Year = filter?.Year ?? 0, Kind = (V1.AlertKind)(int)(filter?.Kind ?? 0), UnitUscc = filter?.UnitUscc ?? "", ProviderUscc = filter?.ProviderUscc ?? "",
            PageSize = pageSize,
        };
        do
        {
            var page = await CallAsync(s_listAlerts, null, o => _alerts.ListAlertsAsync(request, o), cancellationToken);
            foreach (var alert in page.Alerts)
            {
                yield return Map.From(alert);
            }

            request.PageToken = page.NextPageToken;
        }
        while (request.PageToken.Length > 0);
    }

    /// <inheritdoc />
    public async Task<AlertPassResult> RunAlertPassAsync(string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.RunAlertPassRequest { RequestId = requestId ?? NewRequestId() };
        var r = await CallAsync(s_runAlertPass, request.RequestId, o => _alerts.RunAlertPassAsync(request, o), cancellationToken);
        return new AlertPassResult(r.GrantExpiring, r.RedemptionPending);
    }
}
