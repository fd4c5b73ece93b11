using System.Runtime.CompilerServices;
using Google.Protobuf;
using Grpc.Core;

namespace QuotaLedger.Client;

public sealed partial class QuotaLedgerClient
{
    // Bulk writes: many items in one call, each with its own request id and its own outcome.

    /// <inheritdoc />
    public Task<BulkResults<DeductionResult>> DeductManyAsync(IEnumerable<InvoiceToDeduct> invoices, CancellationToken cancellationToken = default) =>
        DeductManyAsync(Async(invoices), cancellationToken);

    /// <inheritdoc />
    public Task<BulkResults<DeductionResult>> DeductManyAsync(IAsyncEnumerable<InvoiceToDeduct> invoices, CancellationToken cancellationToken = default) =>
        RunBulkAsync(invoices, invoice => new V1.DeductRequest
        {
            RequestId = invoice.RequestId ?? NewRequestId(), ProviderUscc = invoice.ProviderUscc, GrantId = invoice.GrantId, InvoiceNo = invoice.InvoiceNo,
            InvoiceAmountFen = invoice.InvoiceAmount.Value, InvoiceDate = Map.Date(invoice.InvoiceDate),
        }, r => r.RequestId, s_deductMany,
            (items, o) => _ledger.DeductManyAsync(new V1.DeductManyRequest { Items = { items } }, o),
            response => response.Outcomes.Select(o => (o.Applied is { } r ? ToResult(r) : null, (V1.ItemRefusal?)o.Refused)),
            cancellationToken);

    /// <inheritdoc />
    public Task<BulkResults<GrantResult>> GrantManyAsync(IEnumerable<GrantToMake> grants, CancellationToken cancellationToken = default) =>
        GrantManyAsync(Async(grants), cancellationToken);

    /// <inheritdoc />
    public Task<BulkResults<GrantResult>> GrantManyAsync(IAsyncEnumerable<GrantToMake> grants, CancellationToken cancellationToken = default) =>
        RunBulkAsync(grants, grant => new V1.GrantRequest
        {
            RequestId = grant.RequestId ?? NewRequestId(), ProviderUscc = grant.ProviderUscc, ContractNo = grant.ContractNo, AmountFen = grant.Amount.Value,
        }, r => r.RequestId, s_grantMany,
            (items, o) => _ledger.GrantManyAsync(new V1.GrantManyRequest { Items = { items } }, o),
            response => response.Outcomes.Select(o => (o.Applied is { } r ? ToResult(r) : null, (V1.ItemRefusal?)o.Refused)),
            cancellationToken);

    private static DeductionResult ToResult(V1.DeductResponse r) =>
        new(r.DeductionId, new Fen(r.RequestedFen), new Fen(r.AppliedFen), new Fen(r.GrantRemainingFen), Map.From(r.UnitYear), Map.From(r.Receipt));

    private static GrantResult ToResult(V1.GrantResponse r) =>
        new(r.GrantId, new Fen(r.AmountFen), r.RatioBp, r.GrantedAt.ToDateTimeOffset(), r.ExpiresAt.ToDateTimeOffset(), Map.From(r.UnitYear), Map.From(r.Receipt));

    /// <summary>Sends the items in calls of <see cref="QuotaLedgerClientOptions.BulkItemsPerCall"/>, one call after the
    /// other (so that items of one grant keep their order across calls), and collects every item's outcome.</summary>
    private async Task<BulkResults<TResult>> RunBulkAsync<TItem, TRequest, TResponse, TResult>(
        IAsyncEnumerable<TItem> items, Func<TItem, TRequest> toRequest, Func<TRequest, string> requestIdOf, Rpc rpc,
        Func<IEnumerable<TRequest>, CallOptions, AsyncUnaryCall<TResponse>> call,
        Func<TResponse, IEnumerable<(TResult? Applied, V1.ItemRefusal? Refused)>> outcomesOf, CancellationToken cancellationToken)
        where TRequest : IMessage
        where TResult : class
    {
        var outcomes = new List<BulkItemOutcome<TResult>>();
        var chunk = new List<TRequest>(_options.BulkItemsPerCall);
        await foreach (var item in items.WithCancellation(cancellationToken))
        {
            chunk.Add(toRequest(item));
            if (chunk.Count == _options.BulkItemsPerCall)
            {
                outcomes.AddRange(await OneBulkAsync(outcomes.Count, chunk, requestIdOf, rpc, call, outcomesOf, cancellationToken));
                chunk = new List<TRequest>(_options.BulkItemsPerCall);
            }
        }

        if (chunk.Count > 0)
        {
            outcomes.AddRange(await OneBulkAsync(outcomes.Count, chunk, requestIdOf, rpc, call, outcomesOf, cancellationToken));
        }

        return new BulkResults<TResult>(outcomes);
    }

    /// <summary>One bulk call, with its retries: the whole call as any call is retried (UNAVAILABLE, a lost answer),
    /// then the items without a definite answer (UNAVAILABLE, RATE_LIMITED, INTERNAL: anything but the refusals a single
    /// call throws as <see cref="QuotaLedgerException"/>) sent again with their request ids, with backoff, up to
    /// <see cref="QuotaLedgerRetryOptions.MaxAttempts"/> rounds. An item still without one is named unresolved, with
    /// whether it may have been applied (only an admission refusal says it was not, and never undoes an earlier round's
    /// "may have been"). A whole call refused (REQUEST_TOO_LARGE, credentials) refuses its items, except those an earlier
    /// round left possibly applied.</summary>
    private async Task<List<BulkItemOutcome<TResult>>> OneBulkAsync<TRequest, TResponse, TResult>(
        int offset, List<TRequest> requests, Func<TRequest, string> requestIdOf, Rpc rpc,
        Func<IEnumerable<TRequest>, CallOptions, AsyncUnaryCall<TResponse>> call,
        Func<TResponse, IEnumerable<(TResult? Applied, V1.ItemRefusal? Refused)>> outcomesOf, CancellationToken cancellationToken)
        where TRequest : IMessage
        where TResult : class
    {
        var outcomes = new BulkItemOutcome<TResult>?[requests.Count];
        var mayHaveApplied = new bool[requests.Count];
        var pending = Enumerable.Range(0, requests.Count).ToList();
        for (var round = 1; pending.Count > 0; round++)
        {
            var sent = pending;
            // The call's own id, for its spans and logs: its first item's, with the count (items keep their own ids).
            var callId = $"{requestIdOf(requests[sent[0]])}+{sent.Count}";
            TResponse response;
            try
            {
                response = await CallAsync(rpc, callId, o => call(sent.Select(i => requests[i]), o), cancellationToken);
            }
            catch (QuotaLedgerUnavailableException unavailable) when (unavailable.Reason != LedgerReason.RequestTooLarge)
            {
                foreach (var i in sent)
                {
                    outcomes[i] = new(offset + i, requestIdOf(requests[i]), null, null, new QuotaLedgerUnavailableException(unavailable.Message, requestIdOf(requests[i]),
                        unavailable.OutcomeUnknown || mayHaveApplied[i], unavailable.Attempts, unavailable.StatusCode, unavailable.Reason, unavailable));
                }

                break;
            }
            catch (Exception refused) when (refused is QuotaLedgerException or QuotaLedgerUnavailableException { Reason: LedgerReason.RequestTooLarge })
            {
                // The call as a whole was refused (too many items, too large, a caller without credentials): each item so,
                // unless an earlier round left it possibly applied, which a refusal of the whole call says nothing about.
                var (reason, message, status, metadata) = refused is QuotaLedgerException definite
                    ? (definite.Reason, definite.ServerMessage, definite.StatusCode, definite.Metadata)
                    : (LedgerReason.RequestTooLarge, refused.Message, StatusCode.ResourceExhausted, null);
                foreach (var i in sent)
                {
                    var requestId = requestIdOf(requests[i]);
                    outcomes[i] = mayHaveApplied[i]
                        ? new(offset + i, requestId, null, null, new QuotaLedgerUnavailableException(message, requestId, outcomeUnknown: true, round, status, reason, refused))
                        : new(offset + i, requestId, null, new QuotaLedgerException(reason, message, status, metadata, requestId), null);
                }

                break;
            }

            var answered = outcomesOf(response).ToList();
            if (answered.Count != sent.Count)
            {
                // Not an answer this client can read item by item: every item sent may have been applied.
                foreach (var i in sent)
                {
                    var requestId = requestIdOf(requests[i]);
                    outcomes[i] = new(offset + i, requestId, null, null, new QuotaLedgerUnavailableException(
                        $"The ledger answered {answered.Count} outcomes for {sent.Count} items; each item's outcome is unknown. Retry with its request id.",
                        requestId, outcomeUnknown: true, round, StatusCode.Internal));
                }

                break;
            }

            pending = [];
            foreach (var (i, (applied, refusal)) in sent.Zip(answered))
            {
                var requestId = requestIdOf(requests[i]);
                if (applied is not null)
                {
                    outcomes[i] = new(offset + i, requestId, applied, null, null);
                }
                else if (refusal is null || !IsRefusal((StatusCode)refusal.Code))
                {
                    // No definite answer (UNAVAILABLE, RATE_LIMITED, INTERNAL, ...): sent again with its request id. Only
                    // an admission refusal says it was not applied.
                    var (code, reason) = refusal is null ? (StatusCode.Internal, LedgerReason.Unknown) : ((StatusCode)refusal.Code, LedgerReasons.Parse(refusal.Reason));
                    mayHaveApplied[i] |= reason != LedgerReason.Overloaded && code != StatusCode.ResourceExhausted;
                    outcomes[i] = new(offset + i, requestId, null, null, new QuotaLedgerUnavailableException(
                        refusal?.Message ?? "The ledger answered this item with neither a result nor a refusal.", requestId, mayHaveApplied[i], round, code, reason));
                    pending.Add(i);
                }
                else if (mayHaveApplied[i] && AnsweredBeforeTheRequestId((StatusCode)refusal.Code))
                {
                    // Refused before its request id was looked up (credentials, shape): an earlier round's outcome stays unknown.
                    outcomes[i] = new(offset + i, requestId, null, null, new QuotaLedgerUnavailableException(refusal.Message, requestId, outcomeUnknown: true, round,
                        (StatusCode)refusal.Code, LedgerReasons.Parse(refusal.Reason)));
                }
                else
                {
                    outcomes[i] = new(offset + i, requestId, null, ToException(refusal, requestId), null);
                }
            }

            if (pending.Count == 0 || round >= _options.Retry.MaxAttempts)
            {
                break;
            }

            await Task.Delay(Backoff(round), _options.TimeProvider, cancellationToken);
        }

        return [.. outcomes.Select(o => o!)];
    }

    private static QuotaLedgerException ToException(V1.ItemRefusal refusal, string requestId) =>
        new(LedgerReasons.Parse(refusal.Reason), refusal.Message, (StatusCode)refusal.Code,
            refusal.Metadata.Count == 0 ? null : new Dictionary<string, string>(refusal.Metadata), requestId);

    private static async IAsyncEnumerable<T> Async<T>(IEnumerable<T> items, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        foreach (var item in items)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return item;
        }

        await Task.CompletedTask;
    }
}
