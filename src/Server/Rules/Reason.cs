using Grpc.Core;

namespace QuotaLedger.Server.Rules;

/// <summary>The stable reason words of the API contract (API.md). The name of each member, in
/// SCREAMING_SNAKE_CASE, is the word clients see in <c>google.rpc.ErrorInfo.reason</c>.</summary>
public enum Reason
{
    InvalidUscc,
    InvalidAmount,
    InvalidArgument,
    UnknownUnit,
    UnknownProvider,
    UnknownContract,
    UnknownGrant,
    UnknownBatch,
    UnknownRedemption,
    DuplicateInvoice,
    RequestIdReused,
    AlreadyRegistered,
    UnitNotApproved,
    PartySuspended,
    RelatedParties,
    InnovationVoucherConflict,
    ContractQuotaExceeded,
    UnitYearCapExceeded,
    BudgetExhausted,
    YearTotalExceeded,
    GrantExpired,
    GrantClosed,
    GrantEmpty,
    InvoiceExceedsContract,
    BelowYearFloor,
    RedemptionExceedsDeducted,
    BatchClosed,
    NotTransferable,
    NotYourResource,
    RoleRequired,
    Unauthenticated,
    YearNotOpen,
    AlreadyDecided,
    NotResident,

    /// <summary>Admission refused: the queue is full or the server is stopping; nothing was applied.</summary>
    Overloaded,

    /// <summary>The database could not be reached, or the transaction's outcome is not known yet.</summary>
    StoreUnavailable,

    /// <summary>Not in API.md's table: the per-caller rate limit (RESOURCE_EXHAUSTED, with a retry hint).</summary>
    RateLimited,

    /// <summary>Not in API.md's table (added with GetDeduction): no deduction the caller may read (NOT_FOUND).</summary>
    UnknownDeduction,

    /// <summary>A JSON body or query that does not parse, a value of the wrong type, an unknown field or enum value: the
    /// field is named in <c>ErrorInfo.metadata</c> (INVALID_ARGUMENT).</summary>
    MalformedRequest,

    /// <summary>A message or body over <c>Requests:MaxBodyBytes</c> (RESOURCE_EXHAUSTED; HTTP 413 over JSON).</summary>
    RequestTooLarge,
    /// <summary>A checkpoint asked for that is not there (NOT_FOUND): never verified against another one instead.</summary>
    UnknownCheckpoint,

    /// <summary>An entry dated inside a closed month or year, or a closed period closed again (FAILED_PRECONDITION).</summary>
    PeriodClosed,

    /// <summary>Not in API.md's table: a period that cannot close yet (FAILED_PRECONDITION): it has not ended, the month
    /// before it is open, or the year's grants still hold quota.</summary>
    PeriodNotReady,

    /// <summary>Not in API.md's table: a closing asked for that is not there (NOT_FOUND).</summary>
    UnknownClosing,
}

public static class ReasonExtensions
{
    public static string Word(this Reason reason) => reason switch
    {
        Reason.InvalidUscc => "INVALID_USCC",
        Reason.InvalidAmount => "INVALID_AMOUNT",
        Reason.InvalidArgument => "INVALID_ARGUMENT",
        Reason.UnknownUnit => "UNKNOWN_UNIT",
        Reason.UnknownProvider => "UNKNOWN_PROVIDER",
        Reason.UnknownContract => "UNKNOWN_CONTRACT",
        Reason.UnknownGrant => "UNKNOWN_GRANT",
        Reason.UnknownBatch => "UNKNOWN_BATCH",
        Reason.UnknownRedemption => "UNKNOWN_REDEMPTION",
        Reason.DuplicateInvoice => "DUPLICATE_INVOICE",
        Reason.RequestIdReused => "REQUEST_ID_REUSED",
        Reason.AlreadyRegistered => "ALREADY_REGISTERED",
        Reason.UnitNotApproved => "UNIT_NOT_APPROVED",
        Reason.PartySuspended => "PARTY_SUSPENDED",
        Reason.RelatedParties => "RELATED_PARTIES",
        Reason.InnovationVoucherConflict => "INNOVATION_VOUCHER_CONFLICT",
        Reason.ContractQuotaExceeded => "CONTRACT_QUOTA_EXCEEDED",
        Reason.UnitYearCapExceeded => "UNIT_YEAR_CAP_EXCEEDED",
        Reason.BudgetExhausted => "BUDGET_EXHAUSTED",
        Reason.YearTotalExceeded => "YEAR_TOTAL_EXCEEDED",
        Reason.GrantExpired => "GRANT_EXPIRED",
        Reason.GrantClosed => "GRANT_CLOSED",
        Reason.GrantEmpty => "GRANT_EMPTY",
        Reason.InvoiceExceedsContract => "INVOICE_EXCEEDS_CONTRACT",
        Reason.BelowYearFloor => "BELOW_YEAR_FLOOR",
        Reason.RedemptionExceedsDeducted => "REDEMPTION_EXCEEDS_DEDUCTED",
        Reason.BatchClosed => "BATCH_CLOSED",
        Reason.NotTransferable => "NOT_TRANSFERABLE",
        Reason.NotYourResource => "NOT_YOUR_RESOURCE",
        Reason.RoleRequired => "ROLE_REQUIRED",
        Reason.Unauthenticated => "UNAUTHENTICATED",
        Reason.YearNotOpen => "YEAR_NOT_OPEN",
        Reason.AlreadyDecided => "ALREADY_DECIDED",
        Reason.NotResident => "NOT_RESIDENT",
        Reason.Overloaded => "OVERLOADED",
        Reason.StoreUnavailable => "STORE_UNAVAILABLE",
        Reason.RateLimited => "RATE_LIMITED",
        Reason.UnknownDeduction => "UNKNOWN_DEDUCTION",
        Reason.MalformedRequest => "MALFORMED_REQUEST",
        Reason.RequestTooLarge => "REQUEST_TOO_LARGE",
        Reason.UnknownCheckpoint => "UNKNOWN_CHECKPOINT",
        Reason.PeriodClosed => "PERIOD_CLOSED",
        Reason.PeriodNotReady => "PERIOD_NOT_READY",
        Reason.UnknownClosing => "UNKNOWN_CLOSING",
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, null),
    };

    public static StatusCode Status(this Reason reason) => reason switch
    {
        Reason.InvalidUscc or Reason.InvalidAmount or Reason.InvalidArgument or Reason.MalformedRequest => StatusCode.InvalidArgument,
        Reason.UnknownUnit or Reason.UnknownProvider or Reason.UnknownContract or Reason.UnknownGrant
            or Reason.UnknownBatch or Reason.UnknownRedemption or Reason.UnknownDeduction or Reason.UnknownCheckpoint
            or Reason.UnknownClosing => StatusCode.NotFound,
        Reason.DuplicateInvoice or Reason.RequestIdReused or Reason.AlreadyRegistered => StatusCode.AlreadyExists,
        Reason.NotYourResource or Reason.RoleRequired => StatusCode.PermissionDenied,
        Reason.Unauthenticated => StatusCode.Unauthenticated,
        Reason.RateLimited or Reason.RequestTooLarge => StatusCode.ResourceExhausted,
        Reason.Overloaded or Reason.StoreUnavailable => StatusCode.Unavailable,
        _ => StatusCode.FailedPrecondition,
    };

    public static bool TryParseWord(string word, out Reason reason)
    {
        foreach (var candidate in Enum.GetValues<Reason>())
        {
            if (candidate.Word() == word)
            {
                reason = candidate;
                return true;
            }
        }

        reason = default;
        return false;
    }
}

/// <summary>A refusal the API reports with a stable reason word. The one exception type of the project's rules;
/// <c>ErrorInterceptor</c> turns it into the gRPC status with <c>ErrorInfo</c>.</summary>
public sealed class LedgerException(Reason reason, string message) : Exception(message)
{
    public Reason Reason { get; } = reason;

    /// <summary>When to try again, for a refusal that passes (the rate limit).</summary>
    public TimeSpan? RetryAfter { get; init; }

    /// <summary>What the refusal names, for a program to act on: <c>google.rpc.ErrorInfo.metadata</c>, keys in
    /// lowerCamelCase (AIP-193), e.g. the earlier deduction of a DUPLICATE_INVOICE.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = EmptyMetadata;

    private static readonly IReadOnlyDictionary<string, string> EmptyMetadata = new Dictionary<string, string>();
}
