using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using ResidencyStatus = QuotaLedger.Server.Storage.ResidencyStatus;
using UnitKind = QuotaLedger.Server.Storage.UnitKind;

namespace QuotaLedger.Server.Registry;

/// <summary>OPC communities (Art 12.4, 15): an operator's status and its list of resident one-person companies. The
/// operator declares, the bureau confirms (POLICY.md, Decision); every step is a new row, so the lists keep their
/// history and the latest row of an operator, or of an operator and a resident, is in force.</summary>
internal static class OpcCommunity
{
    public static async Task<bool> OperatorConfirmedAsync(LedgerDb db, string operatorUscc, CancellationToken ct) =>
        await db.OpcOperatorConfirmations.Where(c => c.OperatorUscc == operatorUscc)
            .OrderByDescending(c => c.Id).Select(c => (bool?)c.Confirmed).FirstOrDefaultAsync(ct) ?? false;

    /// <summary><see cref="OperatorConfirmedAsync"/> in SQL: whether the operator in SQL expression
    /// <paramref name="operatorUscc"/> (a bpchar) is confirmed now, by its latest row.</summary>
    public static string OperatorConfirmedSql(string operatorUscc) =>
        $"coalesce((SELECT c.confirmed FROM opc_operator_confirmations c WHERE c.operator_uscc = {operatorUscc} ORDER BY c.id DESC LIMIT 1), false)";

    /// <summary><see cref="ResidencyAsync"/> in SQL: the status of the resident in SQL expression
    /// <paramref name="residentUscc"/> on the list of the operator in <paramref name="operatorUscc"/> (both bpchar), by
    /// the latest row of the pair; null when it was never listed.</summary>
    public static string ResidencySql(string operatorUscc, string residentUscc) =>
        $"(SELECT r.status FROM opc_residents r WHERE r.operator_uscc = {operatorUscc} AND r.resident_uscc = {residentUscc} ORDER BY r.id DESC LIMIT 1)";

    /// <summary>Where the resident stands on the operator's list now; null when it was never listed.</summary>
    public static Task<ResidencyStatus?> ResidencyAsync(LedgerDb db, string operatorUscc, string residentUscc, CancellationToken ct) =>
        db.OpcResidents.Where(r => r.OperatorUscc == operatorUscc && r.ResidentUscc == residentUscc)
            .OrderByDescending(r => r.Id).Select(r => (ResidencyStatus?)r.Status).FirstOrDefaultAsync(ct);

    /// <summary>Each resident the operator ever listed, as it now stands.</summary>
    public static async Task<List<OpcResidentRow>> ResidentsAsync(LedgerDb db, string operatorUscc, CancellationToken ct)
    {
        var rows = await db.OpcResidents.AsNoTracking().Where(r => r.OperatorUscc == operatorUscc).OrderBy(r => r.Id).ToListAsync(ct);
        return [.. rows.GroupBy(r => r.ResidentUscc).Select(g => g.Last()).OrderBy(r => r.ResidentUscc, StringComparer.Ordinal)];
    }

    /// <summary>Records a step of a residency, after checking it follows from where the residency stands.</summary>
    public static async Task<AddResidentOpcResponse> RecordAsync(LedgerDb db, string operatorUscc, string residentUscc, ResidencyStatus next,
        string reason, DateTimeOffset now, string requestId, string by, CancellationToken ct)
    {
        await EnsureOperatorAndResidentAsync(db, operatorUscc, residentUscc, ct);
        var current = await ResidencyAsync(db, operatorUscc, residentUscc, ct);
        var allowed = next switch
        {
            // Declaring again is a no-op while listed; after a refusal or an end it lists the resident anew.
            ResidencyStatus.Declared => true,
            ResidencyStatus.Confirmed or ResidencyStatus.Rejected => current is ResidencyStatus.Declared or ResidencyStatus.Confirmed or ResidencyStatus.Rejected,
            _ => current is ResidencyStatus.Declared or ResidencyStatus.Confirmed,
        };
        if (!allowed)
        {
            throw new LedgerException(Reason.NotResident, $"{residentUscc} is not on {operatorUscc}'s list; the operator declares it with AddResidentOpc first.");
        }

        if (!(next == ResidencyStatus.Declared && current is ResidencyStatus.Declared or ResidencyStatus.Confirmed) && current != next)
        {
            db.OpcResidents.Add(new OpcResidentRow
            {
                OperatorUscc = operatorUscc, ResidentUscc = residentUscc, Status = next, Reason = reason, RecordedAt = now, RequestId = requestId, Caller = by,
            });
            await db.SaveChangesAsync(ct);
        }

        return await ListAsync(db, operatorUscc, ct);
    }

    public static async Task<AddResidentOpcResponse> ListAsync(LedgerDb db, string operatorUscc, CancellationToken ct)
    {
        var residents = await ResidentsAsync(db, operatorUscc, ct);
        return new AddResidentOpcResponse
        {
            OperatorUscc = operatorUscc,
            ResidentUsccs = { residents.Where(r => r.Status is ResidencyStatus.Declared or ResidencyStatus.Confirmed).Select(r => r.ResidentUscc) },
            Residents = { residents.Select(ToApi) },
        };
    }

    public static async Task ConfirmOperatorAsync(LedgerDb db, string operatorUscc, bool confirm, string reason, DateTimeOffset now,
        string requestId, string by, CancellationToken ct)
    {
        var kind = await db.Units.Where(u => u.Uscc == operatorUscc).Select(u => (UnitKind?)u.Kind).SingleOrDefaultAsync(ct)
            ?? throw new LedgerException(Reason.UnknownUnit, $"No unit is registered with USCC {operatorUscc}.");
        if (kind != UnitKind.OpcOperator)
        {
            throw new LedgerException(Reason.InvalidArgument, $"Unit {operatorUscc} did not register as an OPC_OPERATOR; there is no status to confirm.");
        }

        if (await OperatorConfirmedAsync(db, operatorUscc, ct) != confirm)
        {
            db.OpcOperatorConfirmations.Add(new OpcOperatorConfirmationRow
            {
                OperatorUscc = operatorUscc, Confirmed = confirm, Reason = reason, RecordedAt = now, RequestId = requestId, Caller = by,
            });
            await db.SaveChangesAsync(ct);
        }
    }

    public static Residency ToApi(OpcResidentRow row) => new()
    {
        ResidentUscc = row.ResidentUscc,
        Status = (V1.ResidencyStatus)row.Status,
        Reason = row.Reason,
        RecordedAt = row.RecordedAt.ToTimestamp(),
    };

    private static async Task EnsureOperatorAndResidentAsync(LedgerDb db, string operatorUscc, string residentUscc, CancellationToken ct)
    {
        var kinds = await db.Units.Where(u => u.Uscc == operatorUscc || u.Uscc == residentUscc).ToDictionaryAsync(u => u.Uscc, u => u.Kind, ct);
        foreach (var uscc in new[] { operatorUscc, residentUscc })
        {
            if (!kinds.ContainsKey(uscc))
            {
                throw new LedgerException(Reason.UnknownUnit, $"No unit is registered with USCC {uscc}; call RegisterUnit first.");
            }
        }

        if (kinds[operatorUscc] != UnitKind.OpcOperator)
        {
            throw new LedgerException(Reason.InvalidArgument, $"Unit {operatorUscc} is not registered as an OPC_OPERATOR, so it keeps no list of residents.");
        }

        if (kinds[residentUscc] != UnitKind.Enterprise)
        {
            throw new LedgerException(Reason.InvalidArgument,
                $"Unit {residentUscc} is a {kinds[residentUscc]}; a resident of an OPC community is a one-person company, an ENTERPRISE.");
        }
    }
}
