using System.Collections;

namespace QuotaLedger.Client;

/// <summary>An invoice to deduct in a bulk call (<see cref="ILedgerClient.DeductManyAsync(IEnumerable{InvoiceToDeduct}, CancellationToken)"/>):
/// what <see cref="ILedgerClient.DeductAsync"/> takes.</summary>
/// <param name="ProviderUscc">The provider (the caller), which made the grant.</param>
/// <param name="GrantId">The grant.</param>
/// <param name="InvoiceNo">The invoice number; accepted once per provider.</param>
/// <param name="InvoiceAmount">The invoice amount.</param>
/// <param name="InvoiceDate">The invoice date.</param>
/// <param name="RequestId">Its idempotency key; one is made when null. Keep it to retry the item: the same id is applied at most once in all.</param>
public sealed record InvoiceToDeduct(string ProviderUscc, long GrantId, string InvoiceNo, Fen InvoiceAmount, DateOnly InvoiceDate, string? RequestId = null);

/// <summary>A grant to make in a bulk call (<see cref="ILedgerClient.GrantManyAsync(IEnumerable{GrantToMake}, CancellationToken)"/>):
/// what <see cref="ILedgerClient.GrantAsync"/> takes.</summary>
/// <param name="ProviderUscc">The granting provider (the caller).</param>
/// <param name="ContractNo">The registered contract.</param>
/// <param name="Amount">How much quota.</param>
/// <param name="RequestId">Its idempotency key; one is made when null.</param>
public sealed record GrantToMake(string ProviderUscc, string ContractNo, Fen Amount, string? RequestId = null);

/// <summary>What became of one item of a bulk call: exactly one of <see cref="Result"/> (applied, or an earlier
/// application of its request id replayed), <see cref="Refusal"/> (the ledger refused it, as the single call would
/// have been refused) and <see cref="Unavailable"/> (no definite answer: retry it with <see cref="RequestId"/>).</summary>
/// <typeparam name="TResult">The single call's result.</typeparam>
public sealed class BulkItemOutcome<TResult>
    where TResult : class
{
    internal BulkItemOutcome(int index, string requestId, TResult? result, QuotaLedgerException? refusal, QuotaLedgerUnavailableException? unavailable)
    {
        Index = index;
        RequestId = requestId;
        Result = result;
        Refusal = refusal;
        Unavailable = unavailable;
    }

    /// <summary>The item's place among those given, from 0.</summary>
    public int Index { get; }

    /// <summary>The item's request id (the one given, or the one made for it).</summary>
    public string RequestId { get; }

    /// <summary>What the ledger applied; null when it did not answer so.</summary>
    public TResult? Result { get; }

    /// <summary>The ledger's refusal of this item; null when it did not answer so.</summary>
    public QuotaLedgerException? Refusal { get; }

    /// <summary>No definite answer after the retries: <see cref="QuotaLedgerUnavailableException.OutcomeUnknown"/> says
    /// whether it may have been applied. Retry with <see cref="RequestId"/>.</summary>
    public QuotaLedgerUnavailableException? Unavailable { get; }

    /// <summary>Whether the ledger applied it.</summary>
    public bool Applied => Result is not null;
}

/// <summary>The outcomes of a bulk run, one per item in the order given, with the three kinds apart.</summary>
/// <typeparam name="TResult">The single call's result.</typeparam>
public sealed class BulkResults<TResult> : IReadOnlyList<BulkItemOutcome<TResult>>
    where TResult : class
{
    private readonly List<BulkItemOutcome<TResult>> _outcomes;

    internal BulkResults(List<BulkItemOutcome<TResult>> outcomes) => _outcomes = outcomes;

    /// <summary>The items applied.</summary>
    public IReadOnlyList<BulkItemOutcome<TResult>> Applied => [.. _outcomes.Where(o => o.Applied)];

    /// <summary>The items the ledger refused.</summary>
    public IReadOnlyList<BulkItemOutcome<TResult>> Refused => [.. _outcomes.Where(o => o.Refusal is not null)];

    /// <summary>The items without a definite answer: retry each with its request id (sending them again in a bulk call
    /// with the same ids does), which applies it once if it was not applied and answers it again if it was.</summary>
    public IReadOnlyList<BulkItemOutcome<TResult>> Unresolved => [.. _outcomes.Where(o => o.Unavailable is not null)];

    /// <inheritdoc />
    public BulkItemOutcome<TResult> this[int index] => _outcomes[index];

    /// <inheritdoc />
    public int Count => _outcomes.Count;

    /// <inheritdoc />
    public IEnumerator<BulkItemOutcome<TResult>> GetEnumerator() => _outcomes.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
