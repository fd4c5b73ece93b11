using Google.Rpc;
using Grpc.Core;

namespace QuotaLedger.Client;

/// <summary>The stable reason words of the QuotaLedger API, as an enum.</summary>
public enum LedgerReason
{
    /// <summary>No reason word came with the error (a transport failure, say).</summary>
    Unknown,
    /// <summary>INVALID_USCC: a USCC failed its check character.</summary>
    InvalidUscc,
    /// <summary>INVALID_AMOUNT: an amount is not a positive whole number of fen in range.</summary>
    InvalidAmount,
    /// <summary>INVALID_ARGUMENT: another field is malformed; the message names it.</summary>
    InvalidArgument,
    /// <summary>UNKNOWN_UNIT.</summary>
    UnknownUnit,
    /// <summary>UNKNOWN_PROVIDER.</summary>
    UnknownProvider,
    /// <summary>UNKNOWN_CONTRACT.</summary>
    UnknownContract,
    /// <summary>UNKNOWN_GRANT.</summary>
    UnknownGrant,
    /// <summary>UNKNOWN_BATCH.</summary>
    UnknownBatch,
    /// <summary>UNKNOWN_REDEMPTION.</summary>
    UnknownRedemption,
    /// <summary>DUPLICATE_INVOICE: the provider has already deducted this invoice number.</summary>
    DuplicateInvoice,
    /// <summary>REQUEST_ID_REUSED: the request id was used for a different request.</summary>
    RequestIdReused,
    /// <summary>ALREADY_REGISTERED.</summary>
    AlreadyRegistered,
    /// <summary>UNIT_NOT_APPROVED: the provider has not approved the unit's qualification.</summary>
    UnitNotApproved,
    /// <summary>PARTY_SUSPENDED: a party is suspended or blacklisted.</summary>
    PartySuspended,
    /// <summary>RELATED_PARTIES.</summary>
    RelatedParties,
    /// <summary>INNOVATION_VOUCHER_CONFLICT.</summary>
    InnovationVoucherConflict,
    /// <summary>CONTRACT_QUOTA_EXCEEDED.</summary>
    ContractQuotaExceeded,
    /// <summary>UNIT_YEAR_CAP_EXCEEDED.</summary>
    UnitYearCapExceeded,
    /// <summary>BUDGET_EXHAUSTED.</summary>
    BudgetExhausted,
    /// <summary>YEAR_TOTAL_EXCEEDED.</summary>
    YearTotalExceeded,
    /// <summary>GRANT_EXPIRED.</summary>
    GrantExpired,
    /// <summary>GRANT_CLOSED: the grant was released.</summary>
    GrantClosed,
    /// <summary>GRANT_EMPTY.</summary>
    GrantEmpty,
    /// <summary>INVOICE_EXCEEDS_CONTRACT.</summary>
    InvoiceExceedsContract,
    /// <summary>BELOW_YEAR_FLOOR.</summary>
    BelowYearFloor,
    /// <summary>REDEMPTION_EXCEEDS_DEDUCTED.</summary>
    RedemptionExceedsDeducted,
    /// <summary>BATCH_CLOSED.</summary>
    BatchClosed,
    /// <summary>NOT_TRANSFERABLE.</summary>
    NotTransferable,
    /// <summary>NOT_YOUR_RESOURCE.</summary>
    NotYourResource,
    /// <summary>ROLE_REQUIRED.</summary>
    RoleRequired,
    /// <summary>UNAUTHENTICATED.</summary>
    Unauthenticated,
    /// <summary>RATE_LIMITED: over the caller's rate limit (retried by the client).</summary>
    RateLimited,
    /// <summary>YEAR_NOT_OPEN: the year has no policy, or the day (of the call, or of the invoice) is before the policy takes effect.</summary>
    YearNotOpen,
    /// <summary>ALREADY_DECIDED: a second review of one application, or a second disbursement.</summary>
    AlreadyDecided,
    /// <summary>NOT_RESIDENT: a gift to a unit that is not a bureau-confirmed resident on the operator's list.</summary>
    NotResident,
    /// <summary>OVERLOADED: the server refused to take the call (its queue is full, or it is stopping); nothing was applied. Retried by the client.</summary>
    Overloaded,
    /// <summary>STORE_UNAVAILABLE: the database could not be reached, or the outcome is not known yet. Retried by the client with the same request id.</summary>
    StoreUnavailable,
    /// <summary>UNKNOWN_DEDUCTION: no such deduction (by id, or by the provider's invoice number).</summary>
    UnknownDeduction,
}

/// <summary>The ledger answered and refused the call: a definite answer, with a reason word. Nothing was applied by it, and the
/// same request will be refused again (fix the request, or the state it depends on). A failure that is not a refusal is
/// never this type: an unknown outcome is <see cref="QuotaLedgerUnavailableException"/>, a cancellation is
/// <see cref="OperationCanceledException"/>.</summary>
public sealed class QuotaLedgerException : Exception
{
    /// <summary>A refusal as a test double or an adapter would make one (the client makes them from the server's answers).</summary>
    /// <param name="reason">The reason.</param>
    /// <param name="message">The server's message.</param>
    /// <param name="statusCode">The gRPC status; by default the one the API contract gives the reason.</param>
    /// <param name="metadata">The ErrorInfo's metadata, e.g. <c>deductionId</c> for <see cref="LedgerReason.DuplicateInvoice"/>.</param>
    /// <param name="requestId">The request id of the refused call.</param>
    public QuotaLedgerException(LedgerReason reason, string message, StatusCode? statusCode = null, IReadOnlyDictionary<string, string>? metadata = null,
        string? requestId = null)
        : base(message)
    {
        Reason = reason;
        ReasonWord = LedgerReasons.Word(reason);
        StatusCode = statusCode ?? LedgerReasons.Status(reason);
        ServerMessage = message;
        Metadata = metadata ?? EmptyMetadata;
        RequestId = requestId;
    }

    internal QuotaLedgerException(RpcException error, string? requestId)
        : base(error.Status.Detail, error)
    {
        StatusCode = error.StatusCode;
        ServerMessage = error.Status.Detail;
        var info = error.GetRpcStatus()?.GetDetail<ErrorInfo>();
        ReasonWord = info?.Reason ?? "";
        Reason = LedgerReasons.Parse(ReasonWord);
        Metadata = info is null || info.Metadata.Count == 0 ? EmptyMetadata : new Dictionary<string, string>(info.Metadata);
        RequestId = requestId;
    }

    /// <summary>The reason, typed.</summary>
    public LedgerReason Reason { get; }

    /// <summary>The reason word as the server sent it (e.g. "GRANT_EMPTY"), empty when there was none.</summary>
    public string ReasonWord { get; }

    /// <summary>The gRPC status code.</summary>
    public StatusCode StatusCode { get; }

    /// <summary>The server's message, meant for a person.</summary>
    public string ServerMessage { get; }

    /// <summary>The refusal's details from its <c>google.rpc.ErrorInfo</c> metadata (empty when none). A refused duplicate
    /// invoice names the deduction that took it: <c>deductionId</c>, <c>grantId</c>, <c>invoiceNo</c>.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The request id of the refused call (null for a read).</summary>
    public string? RequestId { get; }

    /// <summary>For <see cref="LedgerReason.DuplicateInvoice"/>: the deduction that already took the invoice.</summary>
    public long? ExistingDeductionId =>
        Metadata.TryGetValue("deductionId", out var id) && long.TryParse(id, System.Globalization.CultureInfo.InvariantCulture, out var value) ? value : null;

    private static readonly IReadOnlyDictionary<string, string> EmptyMetadata = new Dictionary<string, string>();
}

/// <summary>The ledger gave no definite answer: it could not be reached, it stayed overloaded, the call's deadline passed,
/// or it failed inside (INTERNAL). This is not a refusal: the invoice (or grant, or any write) was not judged by the
/// ledger's rules. Retry later with <see cref="RequestId"/>: the ledger then applies the call once, or answers what it
/// already applied.</summary>
public sealed class QuotaLedgerUnavailableException : Exception
{
    /// <summary>An unavailable answer as a test double or an adapter would make one.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="requestId">The request id to retry with (null for a read).</param>
    /// <param name="outcomeUnknown">Whether the call may have been applied.</param>
    /// <param name="attempts">How many attempts were made.</param>
    /// <param name="statusCode">The last attempt's gRPC status.</param>
    /// <param name="reason">The last attempt's reason, if it had one.</param>
    /// <param name="innerException">The last attempt's error.</param>
    public QuotaLedgerUnavailableException(string message, string? requestId, bool outcomeUnknown, int attempts = 1,
        StatusCode statusCode = StatusCode.Unavailable, LedgerReason reason = LedgerReason.Unknown, Exception? innerException = null)
        : base(message, innerException)
    {
        RequestId = requestId;
        OutcomeUnknown = outcomeUnknown;
        Attempts = attempts;
        StatusCode = statusCode;
        Reason = reason;
        ReasonWord = LedgerReasons.Word(reason);
    }

    /// <summary>The request id to retry with: the same id makes the retry apply the call at most once in all. Null for a read.</summary>
    public string? RequestId { get; }

    /// <summary>True when the call may have been applied (an attempt reached the ledger and its answer was lost, timed out,
    /// or said the outcome is not known yet); false when every attempt was turned away before anything was applied
    /// (<see cref="LedgerReason.Overloaded"/>, <see cref="LedgerReason.RateLimited"/>, or no connection at all).</summary>
    public bool OutcomeUnknown { get; }

    /// <summary>How many attempts were made.</summary>
    public int Attempts { get; }

    /// <summary>The last attempt's gRPC status.</summary>
    public StatusCode StatusCode { get; }

    /// <summary>The last attempt's reason, if the server gave one (<see cref="LedgerReason.StoreUnavailable"/>,
    /// <see cref="LedgerReason.Overloaded"/>, <see cref="LedgerReason.RateLimited"/>).</summary>
    public LedgerReason Reason { get; }

    /// <summary>The last attempt's reason word (e.g. "STORE_UNAVAILABLE"), empty when it had none.</summary>
    public string ReasonWord { get; }
}

/// <summary>The reason words and their statuses, as the API contract gives them.</summary>
internal static class LedgerReasons
{
    public static LedgerReason Parse(string word) =>
        word.Length > 0 && Enum.TryParse<LedgerReason>(word.Replace("_", "", StringComparison.Ordinal), ignoreCase: true, out var reason) ? reason : LedgerReason.Unknown;

    public static string Word(LedgerReason reason) =>
        reason == LedgerReason.Unknown ? "" : string.Concat(reason.ToString().Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : char.ToUpperInvariant(c).ToString()));

    public static StatusCode Status(LedgerReason reason) => reason switch
    {
        LedgerReason.InvalidUscc or LedgerReason.InvalidAmount or LedgerReason.InvalidArgument => StatusCode.InvalidArgument,
        LedgerReason.UnknownUnit or LedgerReason.UnknownProvider or LedgerReason.UnknownContract or LedgerReason.UnknownGrant
            or LedgerReason.UnknownBatch or LedgerReason.UnknownRedemption or LedgerReason.UnknownDeduction => StatusCode.NotFound,
        LedgerReason.DuplicateInvoice or LedgerReason.RequestIdReused or LedgerReason.AlreadyRegistered => StatusCode.AlreadyExists,
        LedgerReason.NotYourResource or LedgerReason.RoleRequired => StatusCode.PermissionDenied,
        LedgerReason.Unauthenticated => StatusCode.Unauthenticated,
        LedgerReason.RateLimited => StatusCode.ResourceExhausted,
        LedgerReason.Overloaded or LedgerReason.StoreUnavailable => StatusCode.Unavailable,
        LedgerReason.Unknown => StatusCode.Unknown,
        _ => StatusCode.FailedPrecondition,
    };
}
