using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Redemption;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Server.Ledger;

/// <summary>How a deduction is looked up: by its id, or by the provider's invoice number (unique per provider).</summary>
internal readonly record struct DeductionKey(long? Id, string? Provider, string? InvoiceNo)
{
    /// <summary>The key a GetDeduction request sets: exactly one of deduction_id and provider_uscc with invoice_no.</summary>
    public static DeductionKey Of(GetDeductionRequest request)
    {
        var byInvoice = request.ProviderUscc.Length > 0 || request.InvoiceNo.Length > 0;
        if (request.DeductionId != 0 && byInvoice)
        {
            throw new LedgerException(Reason.InvalidArgument,
                "Set either deduction_id or provider_uscc with invoice_no, not both.");
        }

        if (request.DeductionId != 0)
        {
            return new DeductionKey(Validate.Id(request.DeductionId, "deduction_id"), null, null);
        }

        if (!byInvoice)
        {
            throw new LedgerException(Reason.InvalidArgument,
                "Set deduction_id, or provider_uscc with invoice_no, to name the deduction.");
        }

        return new DeductionKey(null, Validate.Uscc(request.ProviderUscc, "provider_uscc"), Validate.Text(request.InvoiceNo, "invoice_no", maxLength: 64));
    }

    public override string ToString() => Id is { } id ? $"deduction {id}" : $"deduction of provider {Provider}'s invoice '{InvoiceNo}'";
}

/// <summary>The read of one deduction, with what was clawed back from it and the entry it posted.</summary>
internal static class DeductionReads
{
    public static async Task<Deduction?> InfoAsync(LedgerDb db, DeductionKey key, CancellationToken ct)
    {
        var deductions = db.Deductions.AsNoTracking();
        deductions = key.Id is { } id
            ? deductions.Where(d => d.Id == id)
            : deductions.Where(d => d.ProviderUscc == key.Provider && d.InvoiceNo == key.InvoiceNo);
        var row = await deductions
            .Select(d => new
            {
                Deduction = d,
                Grant = db.Grants.Where(g => g.Id == d.GrantId).Select(g => new { g.UnitUscc, g.Year }).Single(),
                EntryId = db.JournalEntries.Where(e => e.DeductionId == d.Id && e.Kind == EntryKind.Deduction).Select(e => e.Id).Single(),
                RequestId = db.JournalEntries.Where(e => e.DeductionId == d.Id && e.Kind == EntryKind.Deduction).Select(e => e.RequestId).Single(),
                ClawedBackFen = db.ClawBacks.Where(c => c.TargetKind == ClawBacks.DeductionTarget && c.TargetId == d.Id).Sum(c => c.AmountFen),
            })
            .SingleOrDefaultAsync(ct);
        if (row is null)
        {
            return null;
        }

        var deduction = row.Deduction;
        return new Deduction
        {
            DeductionId = deduction.Id,
            GrantId = deduction.GrantId,
            ProviderUscc = deduction.ProviderUscc,
            UnitUscc = row.Grant.UnitUscc,
            Year = row.Grant.Year,
            InvoiceNo = deduction.InvoiceNo,
            InvoiceAmountFen = deduction.InvoiceAmountFen,
            InvoiceDate = deduction.InvoiceDate.ToApiDate(),
            RequestedFen = deduction.RequestedFen,
            AppliedFen = deduction.AppliedFen,
            CreatedAt = deduction.CreatedAt.ToTimestamp(),
            EntryId = row.EntryId,
            RequestId = row.RequestId,
            ClawedBackFen = row.ClawedBackFen,
        };
    }

    public static LedgerException Unknown(DeductionKey key) =>
        new(Reason.UnknownDeduction, $"There is no {key} the caller may read.");

    /// <summary>The deductions of the year's grants per day (China time) on which they were applied: how many, and what
    /// they applied (before any claw-back), the days in order; days without a deduction are left out.</summary>
    public static Task<List<DeductionDay>> PerDayAsync(LedgerDb db, int year, CancellationToken ct) =>
        db.QueryListAsync(
            $"""
            SELECT (d.created_at AT TIME ZONE '{ChinaCalendar.ZoneId}')::date AS day, count(*)::int, coalesce(sum(d.applied_fen), 0)::bigint
            FROM deductions d JOIN grants g ON g.id = d.grant_id
            WHERE g.year = $1
            GROUP BY day ORDER BY day
            """,
            r => new DeductionDay(r.GetFieldValue<DateOnly>(0), r.GetInt32(1), new Fen(r.GetInt64(2))),
            ct,
            year);
}

/// <summary>A day's deductions: how many were applied, and what they applied.</summary>
internal sealed record DeductionDay(DateOnly Day, int Count, Fen Applied);

