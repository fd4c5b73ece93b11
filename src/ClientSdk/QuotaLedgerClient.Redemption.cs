using Grpc.Core;

namespace QuotaLedger.Client;

public sealed partial class QuotaLedgerClient
{
    /// <summary>Opens a redemption batch for a year (the bureau).</summary>
    /// <param name="year">The year.</param>
    /// <param name="closesAt">When applications close.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<BatchInfo> OpenBatchAsync(int year, DateTimeOffset closesAt, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.OpenBatchRequest { RequestId = requestId ?? NewRequestId(), Year = year, ClosesAt = Stamp(closesAt) };
        var r = await CallAsync(o => _redemption.OpenBatchAsync(request, o), cancellationToken);
        return new BatchInfo(r.BatchId, r.Year, r.OpenedAt.ToDateTimeOffset(), r.ClosesAt.ToDateTimeOffset());
    }

    /// <summary>A unit applies to redeem part of what it deducted, with its evidence (Art 12).</summary>
    /// <param name="batchId">The open batch.</param>
    /// <param name="unitUscc">The unit (the caller).</param>
    /// <param name="amount">How much.</param>
    /// <param name="evidence">One item at least of each kind but the platform statement, which the ledger adds.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<RedemptionInfo> SubmitRedemptionAsync(long batchId, string unitUscc, Fen amount, IEnumerable<EvidenceItem> evidence,
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.SubmitRequest
        {
            RequestId = requestId ?? NewRequestId(), BatchId = batchId, UnitUscc = unitUscc, AmountFen = amount.Value,
            Evidence = { evidence.Select(e => new V1.Evidence { Kind = (V1.EvidenceKind)e.Kind, Reference = e.Reference, Sha256 = e.Sha256 }) },
        };
        return Map.From(await CallAsync(o => _redemption.SubmitAsync(request, o), cancellationToken));
    }

    /// <summary>An expert's review: approve all, part or none.</summary>
    /// <param name="redemptionId">The redemption.</param>
    /// <param name="approved">What is approved.</param>
    /// <param name="reviewer">Who reviews.</param>
    /// <param name="reason">Why.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<RedemptionInfo> ReviewRedemptionAsync(long redemptionId, Fen approved, string reviewer, string reason,
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ReviewRequest { RequestId = requestId ?? NewRequestId(), RedemptionId = redemptionId, ApprovedFen = approved.Value, Reviewer = reviewer, Reason = reason };
        return Map.From(await CallAsync(o => _redemption.ReviewAsync(request, o), cancellationToken));
    }

    /// <summary>Pays the approved amount, once (the bureau).</summary>
    /// <param name="redemptionId">The redemption.</param>
    /// <param name="paymentRef">The payment's reference.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<RedemptionInfo> DisburseAsync(long redemptionId, string paymentRef, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.DisburseRequest { RequestId = requestId ?? NewRequestId(), RedemptionId = redemptionId, PaymentRef = paymentRef };
        return Map.From(await CallAsync(o => _redemption.DisburseAsync(request, o), cancellationToken));
    }

    /// <summary>Reverses a deduction, a grant's open quota or a disbursement with new entries, and sets a party's standing (Art 17).</summary>
    /// <param name="target">What kind of thing <paramref name="targetId"/> names.</param>
    /// <param name="targetId">The deduction, grant or redemption.</param>
    /// <param name="amount">How much.</param>
    /// <param name="reason">Why.</param>
    /// <param name="partyUscc">Whose standing to set; the unit concerned when omitted.</param>
    /// <param name="standing">The standing to set; BLACKLISTED when omitted.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<ClawBackResult> ClawBackAsync(ClawBackTarget target, long targetId, Fen amount, string reason, string? partyUscc = null,
        Standing? standing = null, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ClawBackRequest
        {
            RequestId = requestId ?? NewRequestId(), AmountFen = amount.Value, Reason = reason, PartyUscc = partyUscc ?? "",
            Standing = standing is { } s ? (V1.Standing)s : V1.Standing.Unspecified,
        };
        switch (target)
        {
            case ClawBackTarget.Deduction:
                request.DeductionId = targetId;
                break;
            case ClawBackTarget.Grant:
                request.GrantId = targetId;
                break;
            default:
                request.RedemptionId = targetId;
                break;
        }

        var r = await CallAsync(o => _redemption.ClawBackAsync(request, o), cancellationToken);
        return new ClawBackResult(r.ClawBackId, r.OriginalEntryId, r.EntryId, new Fen(r.AmountFen), r.PartyUscc, (Standing)r.Standing);
    }

    /// <summary>A redemption.</summary>
    /// <param name="redemptionId">The redemption.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<RedemptionInfo> GetRedemptionAsync(long redemptionId, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(o => _redemption.GetRedemptionAsync(new V1.GetRedemptionRequest { RedemptionId = redemptionId }, o), cancellationToken));

    /// <summary>Redemptions, filtered by batch, unit and year (each optional).</summary>
    /// <param name="batchId">The batch, or null.</param>
    /// <param name="unitUscc">The unit, or null.</param>
    /// <param name="year">The year, or null.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<IReadOnlyList<RedemptionInfo>> ListRedemptionsAsync(long? batchId = null, string? unitUscc = null, int? year = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ListRedemptionsRequest { BatchId = batchId ?? 0, UnitUscc = unitUscc ?? "", Year = year ?? 0 };
        return [.. (await CallAsync(o => _redemption.ListRedemptionsAsync(request, o), cancellationToken)).Redemptions.Select(Map.From)];
    }

    /// <summary>Recomputes every journal chain and account balance; names the first entry or account that does not match.</summary>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<JournalVerdict> VerifyJournalAsync(CancellationToken cancellationToken = default) =>
        await VerifyJournalAsync(checkpointId: 0, cancellationToken);

    /// <summary>Recomputes the journal against a signed checkpoint (0: the latest; -1: none).</summary>
    /// <param name="checkpointId">The checkpoint.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<JournalVerdict> VerifyJournalAsync(long checkpointId, CancellationToken cancellationToken = default)
    {
        var r = await CallAsync(o => _admin.VerifyJournalAsync(new V1.VerifyJournalRequest { CheckpointId = checkpointId }, o), cancellationToken);
        return new JournalVerdict(r.Ok, r.EntriesChecked, r.FirstBadEntryId == 0 ? null : r.FirstBadEntryId, r.FirstBadAccountId == 0 ? null : r.FirstBadAccountId,
            r.Problem, r.CheckpointId == 0 ? null : r.CheckpointId);
    }

    /// <summary>Signs a checkpoint of the journal now (the bureau).</summary>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<CheckpointInfo> MakeCheckpointAsync(string? requestId = null, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(o => _admin.MakeCheckpointAsync(new V1.MakeCheckpointRequest { RequestId = requestId ?? NewRequestId() }, o), cancellationToken));

    /// <summary>Writes the whole journal and every signed checkpoint, one JSON object per line each (the API's
    /// JournalEntry and Checkpoint), for an auditor to check offline with <c>dotnet QuotaLedger.Server.dll audit</c>.
    /// Needs the bureau's or an expert's rights.</summary>
    /// <param name="entries">Where the entries go.</param>
    /// <param name="checkpoints">Where the checkpoints go.</param>
    /// <param name="cancellationToken">Stops the export.</param>
    public async Task ExportJournalAsync(TextWriter entries, TextWriter checkpoints, CancellationToken cancellationToken = default)
    {
        try
        {
            using (var call = _admin.ListCheckpoints(new V1.ListCheckpointsRequest(), cancellationToken: cancellationToken))
            {
                await foreach (var checkpoint in call.ResponseStream.ReadAllAsync(cancellationToken))
                {
                    await checkpoints.WriteLineAsync(Google.Protobuf.JsonFormatter.Default.Format(checkpoint));
                }
            }

            using var stream = _ledger.ListEntries(new V1.ListEntriesRequest(), cancellationToken: cancellationToken);
            await foreach (var entry in stream.ResponseStream.ReadAllAsync(cancellationToken))
            {
                await entries.WriteLineAsync(Google.Protobuf.JsonFormatter.Default.Format(entry));
            }
        }
        catch (RpcException error)
        {
            throw new QuotaLedgerException(error);
        }
    }
}
