namespace QuotaLedger.Client;

/// <summary>What kind of demand-side unit (Art 4).</summary>
public enum UnitKind
{
    /// <summary>An AI enterprise.</summary>
    Enterprise = 1,
    /// <summary>A research institute.</summary>
    ResearchInstitute = 2,
    /// <summary>A university.</summary>
    University = 3,
    /// <summary>An OPC community operator, which may gift quota to its resident one-person companies.</summary>
    OpcOperator = 4,
}

/// <summary>How a contract's compute is served (Art 8).</summary>
public enum ServiceMode
{
    /// <summary>Only on contracts registered before the mode was required.</summary>
    Unspecified = 0,
    /// <summary>Bare-metal servers.</summary>
    BareMetal = 1,
    /// <summary>Cloud (virtual machine) instances.</summary>
    CloudInstance = 2,
    /// <summary>Container instances.</summary>
    Container = 3,
    /// <summary>A dedicated cluster.</summary>
    DedicatedCluster = 4,
}

/// <summary>The qualification materials a unit submits (Art 7).</summary>
public enum MaterialKind
{
    /// <summary>The registration application form.</summary>
    ApplicationForm = 1,
    /// <summary>The registration certificate bearing the USCC, with the legal representative's ID.</summary>
    RegistrationCertificate = 2,
    /// <summary>The integrity pledge.</summary>
    IntegrityPledge = 3,
    /// <summary>The credit report.</summary>
    CreditReport = 4,
    /// <summary>The SME declaration, required of an SME.</summary>
    SmeDeclaration = 5,
}

/// <summary>Where a resident one-person company stands on an OPC operator's list.</summary>
public enum ResidencyStatus
{
    /// <summary>Declared by the operator, not yet confirmed by the bureau.</summary>
    Declared = 1,
    /// <summary>Confirmed by the bureau: the operator may give it quota.</summary>
    Confirmed = 2,
    /// <summary>Refused by the bureau.</summary>
    Rejected = 3,
    /// <summary>Taken off the list.</summary>
    Ended = 4,
}

/// <summary>One of a unit's qualification materials.</summary>
/// <param name="Kind">Which material.</param>
/// <param name="Reference">Where it is kept.</param>
public sealed record UnitMaterial(MaterialKind Kind, string Reference);

/// <summary>A resident on an OPC operator's list, as it now stands.</summary>
/// <param name="ResidentUscc">The resident one-person company.</param>
/// <param name="Status">Where it stands.</param>
/// <param name="Reason">Why, as recorded at the latest step.</param>
/// <param name="RecordedAt">When the latest step was recorded.</param>
public sealed record ResidencyInfo(string ResidentUscc, ResidencyStatus Status, string Reason, DateTimeOffset RecordedAt);

/// <summary>A party's standing with the bureau.</summary>
public enum Standing
{
    /// <summary>In good standing.</summary>
    Good = 1,
    /// <summary>Suspended by the bureau.</summary>
    Suspended = 2,
    /// <summary>On a credit blacklist.</summary>
    Blacklisted = 3,
}

/// <summary>A grant's status.</summary>
public enum GrantStatus
{
    /// <summary>Within validity and holding quota.</summary>
    Open = 1,
    /// <summary>Past its expiry (whether or not its rest was swept back yet).</summary>
    Expired = 2,
    /// <summary>Given up by the unit with the provider's consent.</summary>
    Released = 3,
    /// <summary>Within validity, fully deducted.</summary>
    Exhausted = 4,
}

/// <summary>What caused a journal entry.</summary>
public enum EntryKind
{
    /// <summary>The bureau funded the pool.</summary>
    Funding = 1,
    /// <summary>A provider granted quota.</summary>
    Grant = 2,
    /// <summary>A provider deducted an invoice.</summary>
    Deduction = 3,
    /// <summary>An expired grant's rest returned to the pool.</summary>
    Expiry = 4,
    /// <summary>A released grant's rest returned to the pool.</summary>
    Release = 5,
    /// <summary>An OPC operator gifted quota to a resident.</summary>
    Gift = 6,
    /// <summary>A unit applied to redeem.</summary>
    RedemptionSubmitted = 7,
    /// <summary>An expert reviewed an application.</summary>
    RedemptionReviewed = 8,
    /// <summary>The bureau paid a redemption.</summary>
    Disbursement = 9,
    /// <summary>The bureau reversed a deduction, grant or payment.</summary>
    ClawBack = 10,
    /// <summary>A year's close: what its pool did not spend, moved out of the pool to the year's settled account.</summary>
    YearSettlement = 11,
}

/// <summary>The kinds of ledger account.</summary>
public enum AccountKind
{
    /// <summary>What the bureau funded for a year (credit-normal).</summary>
    Funding = 1,
    /// <summary>The year's budget pool.</summary>
    Pool = 2,
    /// <summary>What one grant holds.</summary>
    Grant = 3,
    /// <summary>What one unit-year has had deducted and not applied to redeem.</summary>
    Deducted = 4,
    /// <summary>Applied for redemption, under review.</summary>
    Pending = 5,
    /// <summary>Approved, awaiting payment.</summary>
    Redeemed = 6,
    /// <summary>Paid out.</summary>
    Disbursed = 7,
    /// <summary>Clawed back from a payment, owed by the unit.</summary>
    Receivable = 8,
    /// <summary>What the year's pool held unspent when the year closed, settled out of it (per year).</summary>
    Settled = 9,
}

/// <summary>A registered provider.</summary>
/// <param name="Uscc">Its USCC.</param>
/// <param name="Name">Its name.</param>
/// <param name="Licences">Its telecom licences, by reference.</param>
/// <param name="Standing">Its standing.</param>
/// <param name="RegisteredAt">When it registered.</param>
public sealed record ProviderInfo(string Uscc, string Name, IReadOnlyList<string> Licences, Standing Standing, DateTimeOffset RegisteredAt);

/// <summary>A unit to register.</summary>
/// <param name="Uscc">Its USCC.</param>
/// <param name="Name">Its name.</param>
/// <param name="Kind">What kind of unit it is.</param>
/// <param name="Sme">Whether it filed the SME declaration (the ratio gets the SME bonus); enterprises only.</param>
/// <param name="MaterialRefs">Further references to submitted materials, if any.</param>
/// <param name="Materials">The Art 7 materials: application form, registration certificate, integrity pledge, credit report,
/// and the SME declaration for an SME.</param>
public sealed record UnitRegistration(string Uscc, string Name, UnitKind Kind, bool Sme = false, IReadOnlyList<string>? MaterialRefs = null,
    IReadOnlyList<UnitMaterial>? Materials = null);

/// <summary>A provider's latest review of a unit.</summary>
/// <param name="ProviderUscc">The reviewing provider.</param>
/// <param name="Approved">Whether it approved the unit.</param>
/// <param name="Reason">Why.</param>
/// <param name="ReviewedAt">When.</param>
public sealed record UnitReviewInfo(string ProviderUscc, bool Approved, string Reason, DateTimeOffset ReviewedAt);

/// <summary>A registered unit.</summary>
/// <param name="Uscc">Its USCC.</param>
/// <param name="Name">Its name.</param>
/// <param name="Kind">Its kind.</param>
/// <param name="Sme">Whether it is an SME.</param>
/// <param name="MaterialRefs">Its qualification materials.</param>
/// <param name="Standing">Its standing.</param>
/// <param name="Approved">Whether at least one provider's latest review approves it.</param>
/// <param name="Reviews">Each provider's latest review.</param>
/// <param name="RegisteredAt">When it registered.</param>
/// <param name="Materials">Its Art 7 materials.</param>
/// <param name="OpcConfirmed">For an OPC operator: whether the bureau confirmed its status.</param>
/// <param name="Residents">For an OPC operator: its residents as they now stand.</param>
public sealed record UnitInfo(string Uscc, string Name, UnitKind Kind, bool Sme, IReadOnlyList<string> MaterialRefs, Standing Standing,
    bool Approved, IReadOnlyList<UnitReviewInfo> Reviews, DateTimeOffset RegisteredAt, IReadOnlyList<UnitMaterial> Materials,
    bool OpcConfirmed, IReadOnlyList<ResidencyInfo> Residents);

/// <summary>A contract's terms, as registered.</summary>
/// <param name="ContractNo">The contract number, unique per provider.</param>
/// <param name="ProviderUscc">The provider.</param>
/// <param name="UnitUscc">The unit.</param>
/// <param name="Accelerator">The GPU/NPU model.</param>
/// <param name="SelfControllable">Domestic (self-controllable) compute: the higher ratio applies.</param>
/// <param name="ServiceMode">The service mode.</param>
/// <param name="UnitPrice">The unit price.</param>
/// <param name="Amount">The amount for intelligent-compute server usage only.</param>
/// <param name="Purpose">What the compute is for.</param>
/// <param name="UsesInnovationVoucher">Whether the contract already enjoys the innovation voucher (then it gets no quota).</param>
/// <param name="SignedOn">When it was signed.</param>
public sealed record ContractTerms(string ContractNo, string ProviderUscc, string UnitUscc, string Accelerator, bool SelfControllable,
    ServiceMode ServiceMode, Fen UnitPrice, Fen Amount, string Purpose, bool UsesInnovationVoucher, DateOnly SignedOn);

/// <summary>A registered contract and what has been granted and invoiced against it.</summary>
/// <param name="Terms">Its terms.</param>
/// <param name="Granted">Quota committed on it: granted, less what expired or was released.</param>
/// <param name="Invoiced">Invoice amounts deducted against it.</param>
/// <param name="RegisteredAt">When it was registered.</param>
public sealed record ContractInfo(ContractTerms Terms, Fen Granted, Fen Invoiced, DateTimeOffset RegisteredAt);

/// <summary>A unit's figures for a year, as the cap rule counts them.</summary>
/// <param name="UnitUscc">The unit.</param>
/// <param name="Year">The calendar year (China time).</param>
/// <param name="Cap">The year's per-unit cap.</param>
/// <param name="GrantedOpen">What its unexpired, unreleased grants still hold.</param>
/// <param name="Deducted">Everything deducted.</param>
/// <param name="Redeemed">What has been redeemed.</param>
/// <param name="Headroom">What further grants may still add.</param>
public sealed record UnitYearFigures(string UnitUscc, int Year, Fen Cap, Fen GrantedOpen, Fen Deducted, Fen Redeemed, Fen Headroom);

/// <summary>A grant just made.</summary>
/// <param name="GrantId">Its id.</param>
/// <param name="Amount">What was granted.</param>
/// <param name="RatioBp">The ratio its deductions use, in basis points.</param>
/// <param name="GrantedAt">When.</param>
/// <param name="ExpiresAt">When it expires.</param>
/// <param name="UnitYear">The unit-year after the grant.</param>
/// <param name="Receipt">The journal entry that recorded it.</param>
public sealed record GrantResult(long GrantId, Fen Amount, int RatioBp, DateTimeOffset GrantedAt, DateTimeOffset ExpiresAt, UnitYearFigures UnitYear,
    LedgerReceipt? Receipt);

/// <summary>What the ledger acknowledged for a write: the journal entry it wrote and that entry's hash, which chains to
/// every entry before it. Keep it: a signed checkpoint that covers the entry later proves the ledger recorded it so.</summary>
/// <param name="EntryId">The journal entry.</param>
/// <param name="EntryHash">Its hash, hex.</param>
/// <param name="ChainKey">Its chain (the unit-year "USCC:year", or the year).</param>
public sealed record LedgerReceipt(long EntryId, string EntryHash, string ChainKey);

/// <summary>A deduction just made.</summary>
/// <param name="DeductionId">Its id.</param>
/// <param name="Requested">The voucher share of the invoice.</param>
/// <param name="Applied">What the grant covered: the share, capped at what it held.</param>
/// <param name="GrantRemaining">What the grant holds now.</param>
/// <param name="UnitYear">The unit-year after the deduction.</param>
/// <param name="Receipt">The journal entry that recorded it.</param>
public sealed record DeductionResult(long DeductionId, Fen Requested, Fen Applied, Fen GrantRemaining, UnitYearFigures UnitYear, LedgerReceipt? Receipt);

/// <summary>A grant just released.</summary>
/// <param name="GrantId">The grant.</param>
/// <param name="Released">What went back to the pool.</param>
/// <param name="UnitYear">The unit-year after the release.</param>
/// <param name="Receipt">The journal entry that returned the rest (none when the grant held nothing).</param>
public sealed record ReleaseResult(long GrantId, Fen Released, UnitYearFigures UnitYear, LedgerReceipt? Receipt);

/// <summary>A grant and its amounts.</summary>
/// <param name="GrantId">Its id.</param>
/// <param name="ProviderUscc">The granting provider.</param>
/// <param name="UnitUscc">The unit it was granted to.</param>
/// <param name="ContractNo">The contract it was granted against.</param>
/// <param name="Year">Its unit-year.</param>
/// <param name="RatioBp">The ratio its deductions use.</param>
/// <param name="Amount">What was granted.</param>
/// <param name="Remaining">What it still holds.</param>
/// <param name="Deducted">What was deducted from it.</param>
/// <param name="Returned">What went back to the pool on expiry or release (expiry counts from expires_at on).</param>
/// <param name="Status">Its status now.</param>
/// <param name="GrantedAt">When it was made.</param>
/// <param name="ExpiresAt">When it expires.</param>
/// <param name="GiftedFromGrantId">For a gift, the operator's grant it came from.</param>
/// <param name="ClawedBack">What the bureau clawed back from its open quota, apart from what was returned.</param>
public sealed record GrantDetails(long GrantId, string ProviderUscc, string UnitUscc, string ContractNo, int Year, int RatioBp, Fen Amount,
    Fen Remaining, Fen Deducted, Fen Returned, GrantStatus Status, DateTimeOffset GrantedAt, DateTimeOffset ExpiresAt, long? GiftedFromGrantId,
    Fen ClawedBack);

/// <summary>An OPC gift just made.</summary>
/// <param name="Grant">The resident's new grant.</param>
/// <param name="SourceGrantId">The operator's grant it came from.</param>
/// <param name="SourceRemaining">What the operator's grant holds now.</param>
/// <param name="OperatorUnitYear">The operator's unit-year after the gift.</param>
/// <param name="ResidentUnitYear">The resident's unit-year after the gift.</param>
/// <param name="Receipt">The journal entry that recorded it.</param>
public sealed record GiftResult(GrantDetails Grant, long SourceGrantId, Fen SourceRemaining, UnitYearFigures OperatorUnitYear, UnitYearFigures ResidentUnitYear,
    LedgerReceipt? Receipt);

/// <summary>One side of a journal entry.</summary>
/// <param name="AccountId">The account.</param>
/// <param name="AccountKind">Its kind.</param>
/// <param name="Debit">The debit, or zero.</param>
/// <param name="Credit">The credit, or zero.</param>
public sealed record PostingInfo(long AccountId, AccountKind AccountKind, Fen Debit, Fen Credit);

/// <summary>A journal entry with its postings.</summary>
/// <param name="EntryId">Its id; entries stream in id order.</param>
/// <param name="Kind">What caused it.</param>
/// <param name="CreatedAt">When.</param>
/// <param name="Year">Its year.</param>
/// <param name="UnitUscc">The unit, if any.</param>
/// <param name="ProviderUscc">The provider, if any.</param>
/// <param name="GrantId">The grant, if any.</param>
/// <param name="SourceId">The id of what it records (grant or deduction).</param>
/// <param name="RequestId">The request id of the call that caused it.</param>
/// <param name="Caller">Who made that call.</param>
/// <param name="Memo">A note.</param>
/// <param name="CounterpartyUscc">For a gift, the resident.</param>
/// <param name="CounterpartyGrantId">For a gift, the resident's new grant.</param>
/// <param name="Postings">Its postings; debits equal credits.</param>
public sealed record JournalEntryInfo(long EntryId, EntryKind Kind, DateTimeOffset CreatedAt, int Year, string? UnitUscc, string? ProviderUscc,
    long? GrantId, long SourceId, string RequestId, string Caller, string Memo, string? CounterpartyUscc, long? CounterpartyGrantId,
    IReadOnlyList<PostingInfo> Postings)
{
    /// <summary>The entry's place in commit order, when it was read in commit order (<see cref="ILedgerClient.WatchAsync"/>,
    /// or <see cref="ILedgerClient.ListEntriesAsync"/> with <see cref="EntryFilter.AfterCursor"/> or
    /// <see cref="EntryFilter.CommitOrder"/>); null in entry-id order. Opaque: store it to resume after this entry.</summary>
    public string? Cursor { get; init; }
}

/// <summary>A deduction of an invoice from a grant, as it was applied (deductions are never edited: a claw-back is an
/// entry of its own, counted in <paramref name="ClawedBack"/>).</summary>
/// <param name="DeductionId">The deduction.</param>
/// <param name="GrantId">The grant it was deducted from.</param>
/// <param name="ProviderUscc">The provider.</param>
/// <param name="UnitUscc">The unit.</param>
/// <param name="Year">The grant's year.</param>
/// <param name="InvoiceNo">The invoice number.</param>
/// <param name="InvoiceAmount">The invoice amount.</param>
/// <param name="InvoiceDate">The invoice date.</param>
/// <param name="Requested">The voucher share of the invoice.</param>
/// <param name="Applied">What the grant covered.</param>
/// <param name="CreatedAt">When it was applied.</param>
/// <param name="EntryId">Its journal entry.</param>
/// <param name="RequestId">The request id of the call that made it.</param>
/// <param name="ClawedBack">What the bureau has clawed back from it (Art 17).</param>
public sealed record DeductionDetails(long DeductionId, long GrantId, string ProviderUscc, string UnitUscc, int Year, string InvoiceNo, Fen InvoiceAmount,
    DateOnly InvoiceDate, Fen Requested, Fen Applied, DateTimeOffset CreatedAt, long EntryId, string RequestId, Fen ClawedBack);

/// <summary>What a Grant or Deduct would do, from a dry run (<see cref="ILedgerClient.ExplainGrantAsync"/>,
/// <see cref="ILedgerClient.ExplainDeductAsync"/>): a prediction at read time by the very rules the real call uses;
/// nothing was written and no request id was used. A call made afterwards sees whatever committed in between.</summary>
/// <param name="WouldApply">Whether the real call would apply.</param>
/// <param name="Reason">The refusal's reason when it would not (<see cref="LedgerReason.Unknown"/> when it would apply).</param>
/// <param name="ReasonWord">The refusal's reason word, as the real call would send it; empty when it would apply.</param>
/// <param name="Message">The refusal's message; empty when it would apply.</param>
/// <param name="Requested">Grant: the amount asked for. Deduct: the voucher share of the invoice.</param>
/// <param name="Applied">What would be applied; zero when refused.</param>
/// <param name="ContractQuotaRemaining">Grant: the contract's quota not yet committed to unexpired grants.</param>
/// <param name="ContractUninvoiced">Deduct: the contract amount not yet invoiced.</param>
/// <param name="UnitYearHeadroom">The unit-year's cap headroom before the call.</param>
/// <param name="Pool">The year's pool available to grant.</param>
/// <param name="GrantBalance">Deduct: what the grant holds before the deduction.</param>
/// <param name="ExpiresAt">Deduct: when the grant expires. Grant: when a grant made now would expire. Null when unknown.</param>
/// <param name="RatioBp">The voucher ratio the call uses, in basis points.</param>
/// <param name="UnitUscc">The unit the call concerns, when known.</param>
/// <param name="Year">The year the call concerns, when known (0 otherwise).</param>
/// <param name="EvaluatedAt">When the prediction was made (the server's clock).</param>
public sealed record Explanation(bool WouldApply, LedgerReason Reason, string ReasonWord, string Message, Fen Requested, Fen Applied,
    Fen ContractQuotaRemaining, Fen ContractUninvoiced, Fen UnitYearHeadroom, Fen Pool, Fen GrantBalance, DateTimeOffset? ExpiresAt, int RatioBp,
    string? UnitUscc, int Year, DateTimeOffset EvaluatedAt);

/// <summary>Which journal entries to stream; unset filters match everything, set ones combine with AND.</summary>
/// <param name="UnitUscc">Entries of this unit (gifts it received included).</param>
/// <param name="ProviderUscc">Entries of this provider.</param>
/// <param name="GrantId">Entries of this grant.</param>
/// <param name="Year">Entries of this year.</param>
/// <param name="From">Entries created at or after.</param>
/// <param name="To">Entries created before.</param>
/// <param name="AfterEntryId">Only entries after this id: a checkpointed reader passes the last id it processed.</param>
/// <param name="PageSize">At most this many entries, then the stream ends (a reader that works in pages resumes with
/// <paramref name="AfterEntryId"/> or <paramref name="AfterCursor"/>); all when null.</param>
/// <param name="AfterCursor">Only entries after this cursor (<see cref="JournalEntryInfo.Cursor"/>,
/// <see cref="LedgerEvent.Cursor"/>), in commit order: unlike <paramref name="AfterEntryId"/>, a reader resuming this way
/// never skips an entry whose transaction committed late with a smaller id. Not with <paramref name="AfterEntryId"/>.</param>
/// <param name="CommitOrder">Stream in commit order from the beginning, each entry with its cursor.</param>
public sealed record EntryFilter(string? UnitUscc = null, string? ProviderUscc = null, long? GrantId = null, int? Year = null,
    DateTimeOffset? From = null, DateTimeOffset? To = null, long? AfterEntryId = null, int? PageSize = null, string? AfterCursor = null,
    bool CommitOrder = false);

/// <summary>Which events to watch; unset filters match everything the caller may see, set ones combine with AND. An
/// alert matches when its subject does (the pool's alert, which names no one, only a watch without unit, provider and
/// grant).</summary>
/// <param name="UnitUscc">Entries and alerts of this unit (gifts it received included).</param>
/// <param name="ProviderUscc">Entries and alerts of this provider.</param>
/// <param name="GrantId">Entries and alerts of this grant.</param>
/// <param name="Year">Entries and alerts of this year.</param>
public sealed record WatchFilter(string? UnitUscc = null, string? ProviderUscc = null, long? GrantId = null, int? Year = null);

/// <summary>One event of the ledger's change feed (<see cref="ILedgerClient.WatchAsync"/>), in commit order:
/// exactly one of <paramref name="Entry"/> and <paramref name="Alert"/> is set.</summary>
/// <param name="Cursor">The event's place in the feed. Store it with what you did with the event; pass it back as
/// <c>afterCursor</c> to resume after it (on any server, after any restart) without a gap or a repeat.</param>
/// <param name="Entry">A journal entry, with its postings.</param>
/// <param name="Alert">An alert, right after the entries of the transaction that raised it.</param>
public sealed record LedgerEvent(string Cursor, JournalEntryInfo? Entry, AlertInfo? Alert);

/// <summary>One page of a paged list.</summary>
/// <typeparam name="T">What the list holds.</typeparam>
/// <param name="Items">This page's items.</param>
/// <param name="NextPageToken">Pass it to get the next page; null on the last page.</param>
public sealed record Page<T>(IReadOnlyList<T> Items, string? NextPageToken);

/// <summary>A year's policy values.</summary>
/// <param name="Year">The year.</param>
/// <param name="SelfControllableRatioBp">Voucher share for self-controllable compute, in basis points.</param>
/// <param name="OtherRatioBp">Voucher share for other compute.</param>
/// <param name="SmeBonusBp">Extra share for SMEs.</param>
/// <param name="UnitYearCap">Cap per unit per year.</param>
/// <param name="UnitYearFloor">Floor per unit per year, applied at redemption.</param>
/// <param name="YearTotal">What the city issues in the year at most.</param>
/// <param name="ValidityMonths">Validity of each grant, in calendar months.</param>
/// <param name="EffectiveFrom">The first day the policy is in force (Art 19); null when setting means the year's first day,
/// never before 2026-05-13.</param>
public sealed record YearPolicy(int Year, int SelfControllableRatioBp, int OtherRatioBp, int SmeBonusBp, Fen UnitYearCap, Fen UnitYearFloor,
    Fen YearTotal, int ValidityMonths, DateOnly? EffectiveFrom = null);

/// <summary>The city's figures for a year.</summary>
/// <param name="Year">The year.</param>
/// <param name="Funded">What the bureau funded.</param>
/// <param name="Pool">What the pool holds, available to grant.</param>
/// <param name="GrantedOpen">What the year's grants still hold.</param>
/// <param name="Deducted">What was deducted.</param>
/// <param name="Reclaimed">What expiry and release returned to the pool.</param>
/// <param name="Redeemed">What was redeemed.</param>
/// <param name="Disbursed">What was disbursed.</param>
/// <param name="YearTotal">The policy's total for the year.</param>
/// <param name="Receivable">Clawed back from payments and not yet settled.</param>
/// <param name="ClawedBack">Everything clawed back in the year, from grants, deductions, applications and payments.</param>
public sealed record ProgramYearFigures(int Year, Fen Funded, Fen Pool, Fen GrantedOpen, Fen Deducted, Fen Reclaimed, Fen Redeemed, Fen Disbursed,
    Fen YearTotal, Fen Receivable, Fen ClawedBack);

/// <summary>A change of standing.</summary>
/// <param name="Uscc">The party.</param>
/// <param name="Standing">Its standing now.</param>
/// <param name="Previous">Its standing before.</param>
/// <param name="Parties">Which registrations it applied to ("unit", "provider").</param>
/// <param name="ChangedAt">When.</param>
public sealed record StandingChange(string Uscc, Standing Standing, Standing Previous, IReadOnlyList<string> Parties, DateTimeOffset ChangedAt);

/// <summary>What an expiry pass did.</summary>
/// <param name="ExpiredGrants">Grants it moved to EXPIRED.</param>
/// <param name="Returned">What they held, returned to the pool.</param>
public sealed record ExpiryResult(int ExpiredGrants, Fen Returned);

/// <summary>One account kind's line of the trial balance.</summary>
/// <param name="Kind">The account kind.</param>
/// <param name="Accounts">How many accounts.</param>
/// <param name="Debit">Their debits.</param>
/// <param name="Credit">Their credits.</param>
/// <param name="Balance">Their stored balances.</param>
/// <param name="PostingsBalance">Their balances recomputed from postings.</param>
public sealed record TrialBalanceLine(AccountKind Kind, int Accounts, Fen Debit, Fen Credit, Fen Balance, Fen PostingsBalance);

/// <summary>The trial balance.</summary>
/// <param name="Year">The year, or 0 for all.</param>
/// <param name="Lines">Per account kind.</param>
/// <param name="TotalDebit">All debits.</param>
/// <param name="TotalCredit">All credits.</param>
/// <param name="Balanced">Debits equal credits and every entry balances.</param>
/// <param name="BalancesMatchPostings">Every account's stored balance equals the sum of its postings.</param>
public sealed record TrialBalanceResult(int Year, IReadOnlyList<TrialBalanceLine> Lines, Fen TotalDebit, Fen TotalCredit, bool Balanced, bool BalancesMatchPostings);
