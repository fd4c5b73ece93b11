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
}

/// <summary>A call the ledger refused or could not complete: the typed reason, the gRPC status, the server's message.</summary>
public sealed class QuotaLedgerException : Exception
{
    internal QuotaLedgerException(RpcException error)
        : base(error.Status.Detail, error)
    {
        StatusCode = error.StatusCode;
        ServerMessage = error.Status.Detail;
        var status = error.GetRpcStatus();
        ReasonWord = status?.GetDetail<ErrorInfo>()?.Reason ?? "";
        Reason = Parse(ReasonWord);
        RetryAfter = status?.GetDetail<RetryInfo>()?.RetryDelay?.ToTimeSpan();
    }

    /// <summary>The reason, typed.</summary>
    public LedgerReason Reason { get; }

    /// <summary>The reason word as the server sent it (e.g. "GRANT_EMPTY"), empty when there was none.</summary>
    public string ReasonWord { get; }

    /// <summary>The gRPC status code.</summary>
    public StatusCode StatusCode { get; }

    /// <summary>The server's message, meant for a person.</summary>
    public string ServerMessage { get; }

    /// <summary>The server's hint of when to try again, if it gave one.</summary>
    public TimeSpan? RetryAfter { get; }

    private static LedgerReason Parse(string word) =>
        Enum.TryParse<LedgerReason>(word.Replace("_", "", StringComparison.Ordinal), ignoreCase: true, out var reason) ? reason : LedgerReason.Unknown;
}
