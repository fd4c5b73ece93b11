using System.Globalization;

namespace QuotaLedger.Client;

/// <summary>Translations from the wire messages to the client's types.</summary>
internal static class Map
{
    /// <summary>Bytes as lower-case hex (.NET 8 has only the upper-case conversion).</summary>
    private static string Hex(ReadOnlySpan<byte> bytes) =>
#if NET9_0_OR_GREATER
        Convert.ToHexStringLower(bytes);
#else
        string.Create(bytes.Length * 2, Convert.ToHexString(bytes), (chars, upper) => upper.AsSpan().ToLowerInvariant(chars));
#endif

    public static string Date(DateOnly date) => date.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    public static LedgerReceipt? From(V1.Receipt? r) => r is null ? null : new(r.EntryId, Hex(r.EntryHash.Span), r.ChainKey);

    public static CheckpointInfo From(V1.Checkpoint c) => new(c.CheckpointId, c.Decoded.Sequence, c.Decoded.CreatedAt.ToDateTimeOffset(), c.KeyId,
        c.Decoded.Entries, c.Decoded.Heads.Count, Hex(c.Digest.Span));

    /// <summary>A closing; its body's parts are empty when the answer left the body out (ListClosings).</summary>
    public static ClosingInfo From(V1.Closing c)
    {
        var body = c.Decoded ?? new V1.ClosingBody();
        return new(c.ClosingId, c.Year, c.Month, c.ClosedAt.ToDateTimeOffset(), c.ClosedBy, c.CheckpointId, Hex(c.Digest.Span), body.Entries,
            new Fen(body.SettledFen), body.SettlementEntryId == 0 ? null : body.SettlementEntryId,
            [.. body.Figures.Select(f => new ClosingFigure((ClosingScope)f.Scope, f.Year, NullIfEmpty(f.Party), (AccountKind)f.AccountKind, new Fen(f.OpeningFen),
                [.. f.Movements.Select(m => new ClosingMovement((EntryKind)m.Kind, new Fen(m.Fen)))], new Fen(f.ClosingFen)))],
            [.. body.ProgramYears.Select(From)],
            [.. body.UnitYears.Select(u => new UnitYearFigures(u.UnitUscc, u.Year, new Fen(u.CapFen), new Fen(u.GrantedOpenFen), new Fen(u.DeductedFen),
                new Fen(u.RedeemedFen), new Fen(u.HeadroomFen)))],
            [.. c.Corrections.Select(k => new ClosingCorrection(k.EntryId, (EntryKind)k.Kind, k.CreatedAt.ToDateTimeOffset(), k.ReversesEntryId, k.Year,
                NullIfEmpty(k.UnitUscc), new Fen(k.AmountFen), k.Memo))]);
    }

    public static DateOnly Date(string date) => DateOnly.ParseExact(date, "yyyy-MM-dd", CultureInfo.InvariantCulture);

    public static UnitYearFigures From(V1.UnitYear u) =>
        new(u.UnitUscc, u.Year, new Fen(u.CapFen), new Fen(u.GrantedOpenFen), new Fen(u.DeductedFen), new Fen(u.RedeemedFen), new Fen(u.HeadroomFen));

    public static GrantDetails From(V1.GrantInfo g) => new(g.GrantId, g.ProviderUscc, g.UnitUscc, g.ContractNo, g.Year, g.RatioBp,
        new Fen(g.AmountFen), new Fen(g.RemainingFen), new Fen(g.DeductedFen), new Fen(g.ReturnedFen), (GrantStatus)g.Status,
        g.GrantedAt.ToDateTimeOffset(), g.ExpiresAt.ToDateTimeOffset(), g.GiftedFromGrantId == 0 ? null : g.GiftedFromGrantId, new Fen(g.ClawedBackFen));

    public static DeductionDetails From(V1.Deduction d) => new(d.DeductionId, d.GrantId, d.ProviderUscc, d.UnitUscc, d.Year, d.InvoiceNo,
        new Fen(d.InvoiceAmountFen), Date(d.InvoiceDate), new Fen(d.RequestedFen), new Fen(d.AppliedFen), d.CreatedAt.ToDateTimeOffset(), d.EntryId,
        d.RequestId, new Fen(d.ClawedBackFen));

    public static Explanation From(V1.Explanation e) => new(e.WouldApply, LedgerReasons.Parse(e.Reason), e.Reason, e.Message, new Fen(e.RequestedFen),
        new Fen(e.AppliedFen), new Fen(e.ContractQuotaRemainingFen), new Fen(e.ContractUninvoicedFen), new Fen(e.UnitYearHeadroomFen), new Fen(e.PoolFen),
        new Fen(e.GrantBalanceFen), e.ExpiresAt?.ToDateTimeOffset(), e.RatioBp, NullIfEmpty(e.UnitUscc), e.Year, e.EvaluatedAt?.ToDateTimeOffset() ?? DateTimeOffset.MinValue);

    public static AlertRules From(V1.AlertRules r) =>
        new(r.Year, [.. r.UnitYearCapBp], r.PoolLowBp, r.GrantExpiryDays, new Fen(r.GrantUnusedFen), r.RedemptionPendingDays, r.Defaults);

    public static AlertInfo From(V1.Alert a) => new(a.AlertId, a.Year, (AlertKind)(int)a.Kind, a.ThresholdBp, a.ThresholdDays, NullIfEmpty(a.UnitUscc),
        NullIfEmpty(a.ProviderUscc), a.GrantId == 0 ? null : a.GrantId, a.RedemptionId == 0 ? null : a.RedemptionId, new Fen(a.FigureFen), new Fen(a.LimitFen),
        new Fen(a.BaseFen), a.CreatedAt.ToDateTimeOffset(), a.EntryId == 0 ? null : a.EntryId);

    public static ProviderInfo From(V1.Provider p) =>
        new(p.ProviderUscc, p.Name, [.. p.Licences], (Standing)p.Standing, p.RegisteredAt.ToDateTimeOffset());

    public static UnitInfo From(V1.Unit u) => new(u.UnitUscc, u.Name, (UnitKind)u.Kind, u.Sme, [.. u.MaterialRefs], (Standing)u.Standing, u.Approved,
        [.. u.Reviews.Select(r => new UnitReviewInfo(r.ProviderUscc, r.Approved, r.Reason, r.ReviewedAt.ToDateTimeOffset()))], u.RegisteredAt.ToDateTimeOffset(),
        [.. u.Materials.Select(m => new UnitMaterial((MaterialKind)m.Kind, m.Reference))], u.OpcConfirmed, [.. u.Residents.Select(From)]);

    public static ResidencyInfo From(V1.Residency r) =>
        new(r.ResidentUscc, (ResidencyStatus)r.Status, r.Reason, r.RecordedAt?.ToDateTimeOffset() ?? DateTimeOffset.MinValue);

    public static ContractInfo From(V1.Contract c) => new(
        new ContractTerms(c.ContractNo, c.ProviderUscc, c.UnitUscc, c.Accelerator, c.SelfControllable, (ServiceMode)c.ServiceMode, new Fen(c.UnitPriceFen),
            new Fen(c.AmountFen), c.Purpose, c.UsesInnovationVoucher, Date(c.SignedOn)),
        new Fen(c.GrantedFen), new Fen(c.InvoicedFen), c.RegisteredAt.ToDateTimeOffset());

    public static YearPolicy From(V1.YearPolicy p) => new(p.Year, p.SelfControllableRatioBp, p.OtherRatioBp, p.SmeBonusBp,
        new Fen(p.UnitYearCapFen), new Fen(p.UnitYearFloorFen), new Fen(p.YearTotalFen), p.ValidityMonths,
        p.EffectiveFrom.Length == 0 ? null : Date(p.EffectiveFrom));

    public static ProgramYearFigures From(V1.ProgramYear p) => new(p.Year, new Fen(p.FundedFen), new Fen(p.PoolFen), new Fen(p.GrantedOpenFen),
        new Fen(p.DeductedFen), new Fen(p.ReclaimedFen), new Fen(p.RedeemedFen), new Fen(p.DisbursedFen), new Fen(p.YearTotalFen), new Fen(p.ReceivableFen),
        new Fen(p.ClawedBackFen));

    public static JournalEntryInfo From(V1.JournalEntry e) => new(e.EntryId, (EntryKind)e.Kind, e.CreatedAt.ToDateTimeOffset(), e.Year,
        NullIfEmpty(e.UnitUscc), NullIfEmpty(e.ProviderUscc), e.GrantId == 0 ? null : e.GrantId, e.SourceId, e.RequestId, e.Caller, e.Memo,
        NullIfEmpty(e.CounterpartyUscc), e.CounterpartyGrantId == 0 ? null : e.CounterpartyGrantId,
        [.. e.Postings.Select(p => new PostingInfo(p.AccountId, (AccountKind)p.AccountKind, new Fen(p.DebitFen), new Fen(p.CreditFen)))])
    {
        Cursor = NullIfEmpty(e.Cursor),
    };

    public static LedgerEvent From(V1.WatchEvent e) => new(e.Cursor, e.Entry is { } entry ? From(entry) : null, e.Alert is { } alert ? From(alert) : null);

    public static V1.WatchRequest ToRequest(WatchFilter f) => new()
    {
        UnitUscc = f.UnitUscc ?? "",
        ProviderUscc = f.ProviderUscc ?? "",
        GrantId = f.GrantId ?? 0,
        Year = f.Year ?? 0,
    };

    public static RedemptionInfo From(V1.Redemption r) => new(r.RedemptionId, r.BatchId, r.UnitUscc, r.Year, new Fen(r.RequestedFen),
        new Fen(r.ApprovedFen), new Fen(r.DisbursedFen), new Fen(r.ClawedBackFen), (RedemptionState)r.State,
        [.. r.Evidence.Select(e => new EvidenceItem((EvidenceKind)e.Kind, e.Reference, e.Sha256))], r.Reviewer, r.ReviewReason, r.PaymentRef,
        new Fen(r.OutstandingFen));

    public static V1.ListEntriesRequest ToRequest(EntryFilter f) => new()
    {
        UnitUscc = f.UnitUscc ?? "",
        ProviderUscc = f.ProviderUscc ?? "",
        GrantId = f.GrantId ?? 0,
        Year = f.Year ?? 0,
        From = f.From is { } from ? QuotaLedgerClient.Stamp(from) : null,
        To = f.To is { } to ? QuotaLedgerClient.Stamp(to) : null,
        AfterEntryId = f.AfterEntryId ?? 0,
        AfterCursor = f.AfterCursor ?? "",
        CommitOrder = f.CommitOrder,
        PageSize = f.PageSize is { } size
            ? size > 0 ? size : throw new ArgumentOutOfRangeException(nameof(f), size, "EntryFilter.PageSize must be positive (null for all).")
            : 0,
    };

    private static string? NullIfEmpty(string value) => value.Length == 0 ? null : value;
}
