using System.Runtime.CompilerServices;
using Grpc.Core;

namespace QuotaLedger.Client;

public sealed partial class QuotaLedgerClient
{
    /// <inheritdoc />
    public async Task<BatchInfo> OpenBatchAsync(int year, DateTimeOffset closesAt, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.OpenBatchRequest { RequestId = requestId ?? NewRequestId(), Year = year, ClosesAt = Stamp(closesAt) };
        var r = await CallAsync(s_openBatch, request.RequestId, o => _redemption.OpenBatchAsync(request, o), cancellationToken);
        return new BatchInfo(r.BatchId, r.Year, r.OpenedAt.ToDateTimeOffset(), r.ClosesAt.ToDateTimeOffset());
    }

    /// <inheritdoc />
    public async Task<RedemptionInfo> SubmitRedemptionAsync(long batchId, string unitUscc, Fen amount, IEnumerable<EvidenceItem> evidence,
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.SubmitRequest
        {
            RequestId = requestId ?? NewRequestId(), BatchId = batchId, UnitUscc = unitUscc, AmountFen = amount.Value,
            Evidence = { evidence.Select(e => new V1.Evidence { Kind = (V1.EvidenceKind)e.Kind, Reference = e.Reference, Sha256 = e.Sha256 }) },
        };
        return Map.From(await CallAsync(s_submit, request.RequestId, o => _redemption.SubmitAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task<RedemptionInfo> ReviewRedemptionAsync(long redemptionId, Fen approved, string reviewer, string reason,
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ReviewRequest { RequestId = requestId ?? NewRequestId(), RedemptionId = redemptionId, ApprovedFen = approved.Value, Reviewer = reviewer, Reason = reason };
        return Map.From(await CallAsync(s_review, request.RequestId, o => _redemption.ReviewAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task<RedemptionInfo> DisburseAsync(long redemptionId, string paymentRef, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.DisburseRequest { RequestId = requestId ?? NewRequestId(), RedemptionId = redemptionId, PaymentRef = paymentRef };
        return Map.From(await CallAsync(s_disburse, request.RequestId, o => _redemption.DisburseAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
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

        var r = await CallAsync(s_clawBack, request.RequestId, o => _redemption.ClawBackAsync(request, o), cancellationToken);
        return new ClawBackResult(r.ClawBackId, r.OriginalEntryId, r.EntryId, new Fen(r.AmountFen), r.PartyUscc, (Standing)r.Standing);
    }

    /// <inheritdoc />
    public async Task<RedemptionInfo> GetRedemptionAsync(long redemptionId, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getRedemption, null, o => _redemption.GetRedemptionAsync(new V1.GetRedemptionRequest { RedemptionId = redemptionId }, o), cancellationToken));

    /// <inheritdoc />
    public async IAsyncEnumerable<RedemptionInfo> ListRedemptionsAsync(long? batchId = null, string? unitUscc = null, int? year = null, int pageSize = 0,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string? token = null;
        do
        {
            var page = await ListRedemptionsPageAsync(batchId, unitUscc, year, pageSize, token, cancellationToken);
            foreach (var redemption in page.Items)
            {
                yield return redemption;
            }

            token = page.NextPageToken;
        }
        while (token is not null);
    }

    /// <inheritdoc />
    public async Task<Page<RedemptionInfo>> ListRedemptionsPageAsync(long? batchId = null, string? unitUscc = null, int? year = null, int pageSize = 0,
        string? pageToken = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ListRedemptionsRequest { BatchId = batchId ?? 0, UnitUscc = unitUscc ?? "", Year = year ?? 0, PageSize = pageSize, PageToken = pageToken ?? "" };
        var r = await CallAsync(s_listRedemptions, null, o => _redemption.ListRedemptionsAsync(request, o), cancellationToken);
        return new Page<RedemptionInfo>([.. r.Redemptions.Select(Map.From)], r.NextPageToken.Length == 0 ? null : r.NextPageToken);
    }

    /// <inheritdoc />
    public async Task<JournalVerdict> VerifyJournalAsync(CancellationToken cancellationToken = default) =>
        await VerifyJournalAsync(checkpointId: 0, cancellationToken);

    /// <inheritdoc />
    public async Task<JournalVerdict> VerifyJournalAsync(long checkpointId, CancellationToken cancellationToken = default)
    {
        var r = await CallAsync(s_verifyJournal, null, o => _admin.VerifyJournalAsync(new V1.VerifyJournalRequest { CheckpointId = checkpointId }, o), cancellationToken);
        return new JournalVerdict(r.Ok, r.EntriesChecked, r.FirstBadEntryId == 0 ? null : r.FirstBadEntryId, r.FirstBadAccountId == 0 ? null : r.FirstBadAccountId,
            r.Problem, r.CheckpointId == 0 ? null : r.CheckpointId);
    }

    /// <inheritdoc />
    public async Task<CheckpointInfo> MakeCheckpointAsync(string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.MakeCheckpointRequest { RequestId = requestId ?? NewRequestId() };
        return Map.From(await CallAsync(s_makeCheckpoint, request.RequestId, o => _admin.MakeCheckpointAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task ExportJournalAsync(TextWriter entries, TextWriter checkpoints, CancellationToken cancellationToken = default)
    {
        try
        {
            using var call = _admin.ListCheckpoints(new V1.ListCheckpointsRequest(), cancellationToken: cancellationToken);
            await foreach (var checkpoint in call.ResponseStream.ReadAllAsync(cancellationToken))
            {
                await checkpoints.WriteLineAsync(Google.Protobuf.JsonFormatter.Default.Format(checkpoint));
            }
        }
        catch (RpcException error)
        {
            throw StreamFailure(s_listCheckpoints, error, attempts: 1, cancellationToken);
        }

        // The entries resume after the last one written if the stream breaks off, so none is written twice.
        await foreach (var entry in StreamEntriesAsync(new V1.ListEntriesRequest(), cancellationToken))
        {
            await entries.WriteLineAsync(Google.Protobuf.JsonFormatter.Default.Format(entry));
        }
    }
}
