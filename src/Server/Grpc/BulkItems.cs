using Google.Protobuf;
using Grpc.Core;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Grpc;

/// <summary>What DeductMany and GrantMany share: the call's own checks (which refuse the whole call, nothing tried), an
/// item's checks beyond its single call's, and each item's answer turned into its outcome as its single call's status
/// would have been (the reason word, the message, the code).</summary>
internal static partial class BulkItems
{
    /// <summary>A call with no items, or more than the limit, is refused whole.</summary>
    public static void CheckCount(int count, int limit)
    {
        if (count == 0)
        {
            throw new LedgerException(Reason.InvalidArgument, "items is empty: a bulk call carries 1 or more items.");
        }

        if (count > limit)
        {
            throw new LedgerException(Reason.RequestTooLarge,
                $"The call carries {count} items, over the limit of {limit} (Deductions:MaxBulkItems); nothing of it was tried. Send them in calls of at most {limit}.");
        }
    }

    /// <summary>An item must carry its request id, and is never a dry run (which <paramref name="single"/> explains).</summary>
    public static void CheckItem(bool dryRun, string requestId, string single)
    {
        if (dryRun)
        {
            throw new LedgerException(Reason.InvalidArgument, $"dry_run is not taken in a bulk call's item: explain it with {single}.");
        }

        Validate.RequestId(requestId);
    }

    /// <summary>Runs each item's own checks (its single call's, and <see cref="CheckItem"/>): the refusal of each that
    /// fails them, by its place, and the others as checked, with their places.</summary>
    public static (Exception?[] Refusals, List<(int Index, T Item)> Valid) Check<TItem, T>(IReadOnlyList<TItem> items, Func<TItem, T> check)
    {
        var refusals = new Exception?[items.Count];
        var valid = new List<(int Index, T Item)>(items.Count);
        for (var i = 0; i < items.Count; i++)
        {
            try
            {
                valid.Add((i, check(items[i])));
            }
            catch (LedgerException refusal)
            {
                refusals[i] = refusal;
            }
        }

        return (refusals, valid);
    }

    /// <summary>Each item's outcome in request order: its response, or its refusal (refused before it was queued,
    /// <paramref name="refusals"/>, or answered so by the engine).</summary>
    public static List<(TResponse? Applied, ItemRefusal? Refused)> Outcomes<TResponse>(
        Exception?[] refusals, IEnumerable<int> queuedAt, Task<IMessage>[] answers, ILogger logger, string method)
        where TResponse : class, IMessage
    {
        var outcomes = new (TResponse? Applied, ItemRefusal? Refused)[refusals.Length];
        foreach (var (index, answer) in queuedAt.Zip(answers))
        {
            if (answer.IsCompletedSuccessfully)
            {
                outcomes[index] = ((TResponse)answer.Result, null);
            }
            else
            {
                refusals[index] = answer.Exception?.InnerException ?? new OperationCanceledException();
            }
        }

        for (var i = 0; i < refusals.Length; i++)
        {
            if (refusals[i] is { } failure)
            {
                var refusal = RefusalOf(failure);
                outcomes[i] = (null, refusal);
                if (refusal.Code == (int)StatusCode.Internal)
                {
                    LogUnexpected(logger, failure, method, i);
                }
            }
        }

        return [.. outcomes];
    }

    public static (int Applied, int Refused) Count<TResponse>(List<(TResponse? Applied, ItemRefusal? Refused)> outcomes) =>
        (outcomes.Count(o => o.Applied is not null), outcomes.Count(o => o.Refused is not null));

    /// <summary>An item's refusal as its single call's status would carry it: a rule's or the queue's reason, the
    /// store's failure (UNAVAILABLE, retry with the same request id), or, for a bug, INTERNAL with the outcome unknown.</summary>
    private static ItemRefusal RefusalOf(Exception failure)
    {
        var known = failure as LedgerException ?? StoreFailures.Translate(failure);
        if (known is not null)
        {
            var refusal = new ItemRefusal { Reason = known.Reason.Word(), Message = known.Message, Code = (int)known.Reason.Status() };
            foreach (var (key, value) in known.Metadata)
            {
                refusal.Metadata.Add(key, value);
            }

            return refusal;
        }

        return new ItemRefusal
            {
                Code = (int)StatusCode.Internal,
                Message = "The ledger failed to complete this item, and the failure is logged. Its outcome is not known: retry it with the same request_id.",
            };
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Unexpected failure of item {Index} of {Method}")]
    private static partial void LogUnexpected(ILogger logger, Exception exception, string method, int index);
}
