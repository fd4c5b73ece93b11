using Google.Rpc;
using Grpc.Core;

namespace QuotaLedger.Client;

/// <summary>The stable reason words of the QuotaLedger API, as an enum.</summary>
public enum LedgerReason
{
    /// <summary>No reason word came with the error (a transport failure, say).</summary>
    Unknown,
    /// <summary>INVALID_USCC: A USCC field is not a valid 18-character Unified Social Credit Code (alphabet or check character). <b>What to do:</b> Fix the USCC and send it with a new request id.</summary>
    InvalidUscc,
    /// <summary>INVALID_AMOUNT: An amount is outside 1 to 10^12 fen, or a rule cannot use it: the voucher share rounds to 0, more than the target holds, nothing payable, or a floor outside 0 to cap. <b>What to do:</b> Fix the amount and send it with a new request id.</summary>
    InvalidAmount,
    /// <summary>INVALID_ARGUMENT: Any other field is missing or malformed, and the message names it. Also: Disburse before Review. <b>What to do:</b> Fix the request as the message says, and use a new request id.</summary>
    InvalidArgument,
    /// <summary>UNKNOWN_UNIT: No unit is registered with that USCC, or it is not one the caller may read. For SetStanding and ClawBack: no unit or provider. <b>What to do:</b> Check the USCC, or register the unit first (RegisterUnit).</summary>
    UnknownUnit,
    /// <summary>UNKNOWN_PROVIDER: No provider is registered with that USCC. <b>What to do:</b> Register the provider first (RegisterProvider).</summary>
    UnknownProvider,
    /// <summary>UNKNOWN_CONTRACT: The provider has no contract with that number, or none the caller may read. <b>What to do:</b> Check <c>contract_no</c>, or register the contract first (RegisterContract).</summary>
    UnknownContract,
    /// <summary>UNKNOWN_GRANT: There is no grant with that id, or none the caller may read. <b>What to do:</b> Check <c>grant_id</c>; do not retry unchanged.</summary>
    UnknownGrant,
    /// <summary>UNKNOWN_BATCH: There is no redemption batch with that id. <b>What to do:</b> Check <c>batch_id</c>, or wait for the bureau to open a batch.</summary>
    UnknownBatch,
    /// <summary>UNKNOWN_REDEMPTION: There is no redemption with that id, or none the caller may read. <b>What to do:</b> Check <c>redemption_id</c>; do not retry unchanged.</summary>
    UnknownRedemption,
    /// <summary>DUPLICATE_INVOICE: This provider has already deducted this invoice number; an invoice is accepted once. <b>What to do:</b> Do not resend. The refusal's <c>ErrorInfo</c> metadata names the deduction that took it (<c>deductionId</c>, <c>grantId</c>, <c>invoiceNo</c>; <c>ExistingDeductionId</c> in the SDK): read it with GetDeduction.</summary>
    DuplicateInvoice,
    /// <summary>REQUEST_ID_REUSED: This caller already used the request id for a different request (another method or other content). <b>What to do:</b> Use a new id for a new request; to retry, resend the original request unchanged.</summary>
    RequestIdReused,
    /// <summary>ALREADY_REGISTERED: That provider, unit, or contract number is already registered. <b>What to do:</b> Read the existing record (GetProvider, GetUnit, GetContract); do not retry.</summary>
    AlreadyRegistered,
    /// <summary>UNIT_NOT_APPROVED: The provider's latest qualification review of the unit does not approve it (Art 7). <b>What to do:</b> The provider approves the unit with ReviewUnit; then retry with a new request id.</summary>
    UnitNotApproved,
    /// <summary>PARTY_SUSPENDED: The provider or the unit is suspended or blacklisted (Art 4, 5, 17). <b>What to do:</b> Do not retry until the bureau restores GOOD standing.</summary>
    PartySuspended,
    /// <summary>RELATED_PARTIES: Provider and unit are declared related, or one USCC is both, so they may not deal (Art 5.6). <b>What to do:</b> Do not retry; only the bureau can end a declared relation (EndRelatedParty).</summary>
    RelatedParties,
    /// <summary>INNOVATION_VOUCHER_CONFLICT: The contract already uses the innovation voucher, so it gets no compute-voucher quota (Art 15). <b>What to do:</b> Do not retry.</summary>
    InnovationVoucherConflict,
    /// <summary>CONTRACT_QUOTA_EXCEEDED: The grant would take the contract past its amount × ratio. <b>What to do:</b> Grant at most the remainder the message gives, with a new request id.</summary>
    ContractQuotaExceeded,
    /// <summary>UNIT_YEAR_CAP_EXCEEDED: The unit-year's open grants plus deductions plus this amount would pass the year's cap. <b>What to do:</b> Ask for at most the headroom (GetUnitYear), or wait until grants expire or are released.</summary>
    UnitYearCapExceeded,
    /// <summary>BUDGET_EXHAUSTED: The year's pool is unfunded or holds less than the amount asked. <b>What to do:</b> Ask for less, or wait for the bureau to fund the pool (FundBudget).</summary>
    BudgetExhausted,
    /// <summary>YEAR_TOTAL_EXCEEDED: Funding would pass the policy's year total, or a new total is below what is already funded. <b>What to do:</b> Fund less, or raise the total with SetYearPolicy.</summary>
    YearTotalExceeded,
    /// <summary>GRANT_EXPIRED: The grant is past its <c>expires_at</c> and accepts no more (Art 10). <b>What to do:</b> Do not retry; get a new grant.</summary>
    GrantExpired,
    /// <summary>GRANT_CLOSED: The grant was released and accepts no more. <b>What to do:</b> Do not retry; get a new grant.</summary>
    GrantClosed,
    /// <summary>GRANT_EMPTY: The grant holds nothing more to deduct, or less than the amount to give or claw back. <b>What to do:</b> Get a new grant, or ask for no more than the grant's <c>remaining_fen</c>.</summary>
    GrantEmpty,
    /// <summary>INVOICE_EXCEEDS_CONTRACT: With this invoice, the invoices against the grant's contract would pass the contract amount. <b>What to do:</b> Do not retry; check the invoice against the contract.</summary>
    InvoiceExceedsContract,
    /// <summary>BELOW_YEAR_FLOOR: The unit deducted less in the year than the policy's floor, so it cannot apply (Art 6). <b>What to do:</b> Apply once the year's deductions reach the floor, with a new request id.</summary>
    BelowYearFloor,
    /// <summary>REDEMPTION_EXCEEDS_DEDUCTED: The amount is more than the unit deducted and has not yet applied for or redeemed. For ClawBack: the deduction has since been applied for. <b>What to do:</b> Apply for less. For ClawBack, claw back the application instead.</summary>
    RedemptionExceedsDeducted,
    /// <summary>BATCH_CLOSED: The batch's <c>closes_at</c> has passed. <b>What to do:</b> Submit to a batch that is still open.</summary>
    BatchClosed,
    /// <summary>NOT_TRANSFERABLE: Quota cannot be transferred; the only exception is a gift by a bureau-confirmed OPC operator to another unit (Art 15). <b>What to do:</b> Do not retry.</summary>
    NotTransferable,
    /// <summary>NOT_YOUR_RESOURCE: The caller acts for, or reads, a party other than itself (another party's grant answers UNKNOWN_GRANT instead). <b>What to do:</b> Do not retry; act only for your own USCC and grants.</summary>
    NotYourResource,
    /// <summary>ROLE_REQUIRED: The caller's credentials lack the role the call needs (the message names it). <b>What to do:</b> Call with credentials that carry that role.</summary>
    RoleRequired,
    /// <summary>UNAUTHENTICATED: The call carries no valid client certificate or bearer token, or did not come over TLS. <b>What to do:</b> Fix the credentials and call the https:// address.</summary>
    Unauthenticated,
    /// <summary>RATE_LIMITED: The caller is over its rate limit, or its address had too many failed authentications. <b>What to do:</b> Wait for the delay in <c>RetryInfo</c>, then retry (the same request id is fine).</summary>
    RateLimited,
    /// <summary>YEAR_NOT_OPEN: The year has no policy, or the date (today, or the invoice's date) is before the policy's <c>effective_from</c> (Art 19). <b>What to do:</b> Wait until the bureau sets the year's policy or it takes effect; an invoice dated earlier never qualifies.</summary>
    YearNotOpen,
    /// <summary>ALREADY_DECIDED: The redemption was already reviewed, or already disbursed; each happens once. <b>What to do:</b> Do not retry; read the outcome with GetRedemption.</summary>
    AlreadyDecided,
    /// <summary>NOT_RESIDENT: The resident is not confirmed on the operator's list (Gift), or is not on the list at all (Confirm/RemoveResidentOpc). <b>What to do:</b> The operator declares it (AddResidentOpc) and the bureau confirms it; then retry with a new request id.</summary>
    NotResident,
    /// <summary>OVERLOADED: Admission was refused (deduction queue full, server stopping, database connection pool exhausted); nothing was applied. <b>What to do:</b> Retry with the same request id after a backoff (the SDK does; what is left is a <c>QuotaLedgerUnavailableException</c>).</summary>
    Overloaded,
    /// <summary>STORE_UNAVAILABLE: The database could not be reached, or failed transiently, or a row stayed locked too long; a write's outcome may be unknown. <b>What to do:</b> Retry with the same request id: an applied call is replayed, never applied twice (the SDK does; what is left is a <c>QuotaLedgerUnavailableException</c> with <c>OutcomeUnknown</c>).</summary>
    StoreUnavailable,
    /// <summary>UNKNOWN_DEDUCTION: There is no deduction with that id (or that provider's invoice number), or none the caller may read. <b>What to do:</b> Check the id or the invoice number; do not retry unchanged.</summary>
    UnknownDeduction,
    /// <summary>MALFORMED_REQUEST: A JSON body or query that does not parse, a value of the wrong type, an unknown field or enum value (JSON over HTTP; the field is named in the ErrorInfo's metadata, <c>field</c> and <c>problem</c>). <b>What to do:</b> Fix the field named and send it again; nothing was done.</summary>
    MalformedRequest,
    /// <summary>REQUEST_TOO_LARGE: The message or JSON body is over the server's limit (<c>Requests:MaxBodyBytes</c>, 1 MiB by default). <b>What to do:</b> Send less in one call; nothing was done.</summary>
    RequestTooLarge,
    /// <summary>UNKNOWN_CHECKPOINT: There is no checkpoint with that id (VerifyJournal, GetCheckpoint); the journal is never verified against another one instead. <b>What to do:</b> Check the id; a checkpoint you hold a copy of that the ledger no longer has was removed: report it.</summary>
    UnknownCheckpoint,
    /// <summary>PERIOD_CLOSED: The entry would be dated inside a closed month or year, or would move a closed year's quota; or the period asked to close (ClosePeriod) is already closed, under another request id. <b>What to do:</b> Do not retry. For ClosePeriod, read the closing with GetClosing; a correction of a closed period is an entry of an open month.</summary>
    PeriodClosed,
    /// <summary>PERIOD_NOT_READY: The period cannot close yet (ClosePeriod): it has not ended, the month before it is open, or the year's grants still hold quota; the message says which. <b>What to do:</b> Close the months in order once each has ended, and the year after December once its grants have expired; then close with a new request id.</summary>
    PeriodNotReady,
    /// <summary>UNKNOWN_CLOSING: That month or year is not closed (GetClosing, ExportPeriod). <b>What to do:</b> Check the year and month (0 for the year), or close the period first (ClosePeriod).</summary>
    UnknownClosing,
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
    private static readonly Dictionary<string, LedgerReason> s_byWord =
        Enum.GetValues<LedgerReason>().Where(r => r != LedgerReason.Unknown).ToDictionary(Word, r => r, StringComparer.Ordinal);

    public static LedgerReason Parse(string word) => s_byWord.GetValueOrDefault(word, LedgerReason.Unknown);

    public static string Word(LedgerReason reason) =>
        reason == LedgerReason.Unknown ? "" : string.Concat(reason.ToString().Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : char.ToUpperInvariant(c).ToString()));

    public static StatusCode Status(LedgerReason reason) => reason switch
    {
        LedgerReason.InvalidUscc or LedgerReason.InvalidAmount or LedgerReason.InvalidArgument or LedgerReason.MalformedRequest => StatusCode.InvalidArgument,
        LedgerReason.UnknownUnit or LedgerReason.UnknownProvider or LedgerReason.UnknownContract or LedgerReason.UnknownGrant
            or LedgerReason.UnknownBatch or LedgerReason.UnknownRedemption or LedgerReason.UnknownDeduction or LedgerReason.UnknownCheckpoint
            or LedgerReason.UnknownClosing => StatusCode.NotFound,
        LedgerReason.DuplicateInvoice or LedgerReason.RequestIdReused or LedgerReason.AlreadyRegistered => StatusCode.AlreadyExists,
        LedgerReason.NotYourResource or LedgerReason.RoleRequired => StatusCode.PermissionDenied,
        LedgerReason.Unauthenticated => StatusCode.Unauthenticated,
        LedgerReason.RateLimited or LedgerReason.RequestTooLarge => StatusCode.ResourceExhausted,
        LedgerReason.Overloaded or LedgerReason.StoreUnavailable => StatusCode.Unavailable,
        LedgerReason.Unknown => StatusCode.Unknown,
        _ => StatusCode.FailedPrecondition,
    };
}
