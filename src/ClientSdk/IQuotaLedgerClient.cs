namespace QuotaLedger.Client;

/// <summary>Every call of the QuotaLedger API, as <see cref="QuotaLedgerClient"/> makes them, made of one interface per
/// role (<see cref="ILedgerClient"/>, <see cref="IRegistryClient"/>, <see cref="IAdminClient"/>, <see cref="IRedemptionClient"/>,
/// <see cref="IAlertsClient"/>): depend on the one your code uses, or on this one, to replace the client in your own
/// tests (a fake that throws <see cref="QuotaLedgerException"/> or <see cref="QuotaLedgerUnavailableException"/>, both constructible, exercises your refusal handling without a server).
/// Refusals throw <see cref="QuotaLedgerException"/>; no definite answer throws <see cref="QuotaLedgerUnavailableException"/>
/// (retry later with its request id); the caller's cancellation throws <see cref="OperationCanceledException"/>.</summary>
public interface IQuotaLedgerClient : ILedgerClient, IRegistryClient, IAdminClient, IRedemptionClient, IAlertsClient
{
    /// <summary>A view of this client whose calls each take at most <paramref name="deadline"/>, all retries included
    /// (instead of <see cref="QuotaLedgerClientOptions.DefaultDeadline"/>); it shares the client's channel.
    /// <c>await ledger.WithDeadline(TimeSpan.FromSeconds(2)).DeductAsync(...)</c>.</summary>
    /// <param name="deadline">The deadline of each call made through the view; positive.</param>
    IQuotaLedgerClient WithDeadline(TimeSpan deadline);
}

/// <summary>The ledger's calls, as a provider's billing system makes them: grant, deduct, release and gift quota, read
/// grants, deductions and unit-years, dry runs, the journal's entries and the watch (LedgerService). One part of
/// <see cref="IQuotaLedgerClient"/>, which <see cref="QuotaLedgerClient"/> implements; a fake of it needs only these members.</summary>
public interface ILedgerClient
{
    /// <summary>Streams journal entries in id order (in commit order with <see cref="EntryFilter.AfterCursor"/> or
    /// <see cref="EntryFilter.CommitOrder"/>), resuming after the last one received if the stream breaks off.</summary>
    /// <param name="filter">Which entries, from where, and how many.</param>
    /// <param name="cancellationToken">Stops the stream.</param>
    IAsyncEnumerable<JournalEntryInfo> ListEntriesAsync(EntryFilter? filter = null, CancellationToken cancellationToken = default);

    /// <summary>Follows the ledger: every journal entry and alert after <paramref name="afterCursor"/> in commit order,
    /// then each new one as it commits, for as long as the caller reads. It never ends by itself: when the stream breaks
    /// (a server restarting, the database failing over, a reader too slow), it reconnects with backoff and resumes
    /// after the last event it handed over, so the caller sees every event exactly once. It throws
    /// <see cref="QuotaLedgerUnavailableException"/> when it has kept failing for <see cref="QuotaLedgerWatchOptions.ReconnectFor"/>
    /// (5 minutes by default, its own allowance, apart from unary calls) with no event in between, a <see cref="QuotaLedgerException"/> for a refusal (a malformed cursor, another
    /// party's unit or provider), and stops with <see cref="OperationCanceledException"/> when canceled. To survive a
    /// restart of the caller, store each event's <see cref="LedgerEvent.Cursor"/> with its effect and pass the last
    /// one back.</summary>
    /// <param name="filter">Which events; a provider sees its own, a unit its own, the bureau everything.</param>
    /// <param name="afterCursor">Resume after this event; null with <paramref name="fromNow"/> false: from the journal's
    /// first entry.</param>
    /// <param name="fromNow">Only events that commit after the call (not with <paramref name="afterCursor"/>).</param>
    /// <param name="cancellationToken">Stops the watch.</param>
    IAsyncEnumerable<LedgerEvent> WatchAsync(WatchFilter? filter = null, string? afterCursor = null, bool fromNow = false,
        CancellationToken cancellationToken = default);

    /// <summary>Grants quota to the unit of a contract (Art 9): it moves from the year's pool to a new grant.</summary>
    /// <param name="providerUscc">The granting provider (the caller).</param>
    /// <param name="contractNo">The registered contract.</param>
    /// <param name="amount">How much quota.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted. Reuse it to retry the same grant.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<GrantResult> GrantAsync(string providerUscc, string contractNo, Fen amount, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Deducts the voucher share of an invoice from a grant (Art 10), capped at what the grant holds.</summary>
    /// <param name="providerUscc">The provider (the caller), which made the grant.</param>
    /// <param name="grantId">The grant.</param>
    /// <param name="invoiceNo">The invoice number; accepted once per provider.</param>
    /// <param name="invoiceAmount">The invoice amount (intelligent-compute usage only).</param>
    /// <param name="invoiceDate">The invoice date.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<DeductionResult> DeductAsync(string providerUscc, long grantId, string invoiceNo, Fen invoiceAmount, DateOnly invoiceDate,
        string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Deducts many invoices (a month's, say) in bulk calls of <see cref="QuotaLedgerClientOptions.BulkItemsPerCall"/>,
    /// each invoice exactly as <see cref="DeductAsync"/> would (the same rules, reason words and exactly-once by its
    /// request id), with far less work per invoice. One call after the other, so an invoice keeps its place among those
    /// of its grant. Items answered UNAVAILABLE are sent again with their request ids, with backoff; a whole call that
    /// gets no answer is retried as any call is. Never throws for an item: each has its outcome, in the order given.
    /// It throws only when the run as a whole stops (your cancellation, or an exception from your source of invoices),
    /// and then the outcomes of the calls already made are not returned: give each invoice a request id you can make
    /// again (derived from the invoice number, say), so that running the job again replays what was applied.</summary>
    /// <param name="invoices">The invoices; each with its request id (kept, to retry) or one is made.</param>
    /// <param name="cancellationToken">Stops sending; an item already sent may have been applied (retry with its id).</param>
    Task<BulkResults<DeductionResult>> DeductManyAsync(IEnumerable<InvoiceToDeduct> invoices, CancellationToken cancellationToken = default);

    /// <summary>As <see cref="DeductManyAsync(IEnumerable{InvoiceToDeduct}, CancellationToken)"/>, the invoices read as they come.</summary>
    /// <param name="invoices">The invoices.</param>
    /// <param name="cancellationToken">Stops sending.</param>
    Task<BulkResults<DeductionResult>> DeductManyAsync(IAsyncEnumerable<InvoiceToDeduct> invoices, CancellationToken cancellationToken = default);

    /// <summary>Makes many grants (a month-start wave) in bulk calls, each exactly as <see cref="GrantAsync"/> would, as
    /// <see cref="DeductManyAsync(IEnumerable{InvoiceToDeduct}, CancellationToken)"/> does for invoices.</summary>
    /// <param name="grants">The grants; each with its request id, or one is made.</param>
    /// <param name="cancellationToken">Stops sending.</param>
    Task<BulkResults<GrantResult>> GrantManyAsync(IEnumerable<GrantToMake> grants, CancellationToken cancellationToken = default);

    /// <summary>As <see cref="GrantManyAsync(IEnumerable{GrantToMake}, CancellationToken)"/>, the grants read as they come.</summary>
    /// <param name="grants">The grants.</param>
    /// <param name="cancellationToken">Stops sending.</param>
    Task<BulkResults<GrantResult>> GrantManyAsync(IAsyncEnumerable<GrantToMake> grants, CancellationToken cancellationToken = default);

    /// <summary>Releases a grant inside its validity (Art 11): what it holds returns to the pool.</summary>
    /// <param name="providerUscc">The provider (the caller).</param>
    /// <param name="grantId">The grant.</param>
    /// <param name="statementRef">The joint statement filed with the bureau.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ReleaseResult> ReleaseAsync(string providerUscc, long grantId, string statementRef, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>An OPC community operator gives open quota of its grant to a resident on its list (Art 15).</summary>
    /// <param name="operatorUscc">The operator (the caller).</param>
    /// <param name="grantId">The operator's grant.</param>
    /// <param name="residentUscc">The resident one-person company.</param>
    /// <param name="amount">How much.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<GiftResult> GiftAsync(string operatorUscc, long grantId, string residentUscc, Fen amount, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>A grant's amounts and status.</summary>
    /// <param name="grantId">The grant.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<GrantDetails> GetGrantAsync(long grantId, CancellationToken cancellationToken = default);

    /// <summary>What <see cref="GrantAsync"/> would do now, without doing it (a dry run): the amount, or the refusal
    /// with its reason, and the headroom under every limit (contract quota, unit-year cap, pool) and when the grant would
    /// expire. Nothing is written; no request id is used. Refused as the real call for a malformed request or a caller
    /// without the right.</summary>
    /// <param name="providerUscc">The granting provider (the caller).</param>
    /// <param name="contractNo">The registered contract.</param>
    /// <param name="amount">How much quota.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<Explanation> ExplainGrantAsync(string providerUscc, string contractNo, Fen amount, CancellationToken cancellationToken = default);

    /// <summary>What <see cref="DeductAsync"/> would do now, without doing it (a dry run): the voucher share and what
    /// the grant would cover, or the refusal with its reason, and the headroom under every limit (the grant's balance, the
    /// contract's uninvoiced amount, the unit-year's cap) and when the grant expires. Nothing is written; no request id
    /// is used; it does not wait behind deductions in flight.</summary>
    /// <param name="providerUscc">The provider (the caller), which made the grant.</param>
    /// <param name="grantId">The grant.</param>
    /// <param name="invoiceNo">The invoice number.</param>
    /// <param name="invoiceAmount">The invoice amount.</param>
    /// <param name="invoiceDate">The invoice date.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<Explanation> ExplainDeductAsync(string providerUscc, long grantId, string invoiceNo, Fen invoiceAmount, DateOnly invoiceDate,
        CancellationToken cancellationToken = default);

    /// <summary>A grant as the ledger stood at <paramref name="asOf"/>, from the journal, with expiry as of then.</summary>
    /// <param name="grantId">The grant.</param>
    /// <param name="asOf">When; not after the server's now.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<GrantDetails> GetGrantAsync(long grantId, DateTimeOffset asOf, CancellationToken cancellationToken = default);

    /// <summary>A unit's figures for a year as they stood at <paramref name="asOf"/>, from the journal, with expiry as of then.</summary>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="year">The year.</param>
    /// <param name="asOf">When; not after the server's now.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<UnitYearFigures> GetUnitYearAsync(string unitUscc, int year, DateTimeOffset asOf, CancellationToken cancellationToken = default);

    /// <summary>A deduction, by its id (e.g. <see cref="QuotaLedgerException.ExistingDeductionId"/> of a refused
    /// duplicate invoice). A deduction the caller may not read answers <see cref="LedgerReason.UnknownDeduction"/>, as one
    /// that does not exist.</summary>
    /// <param name="deductionId">The deduction.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<DeductionDetails> GetDeductionAsync(long deductionId, CancellationToken cancellationToken = default);

    /// <summary>A provider's deduction of an invoice, by the invoice number (accepted once per provider).</summary>
    /// <param name="providerUscc">The provider.</param>
    /// <param name="invoiceNo">The invoice number.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<DeductionDetails> GetDeductionByInvoiceAsync(string providerUscc, string invoiceNo, CancellationToken cancellationToken = default);

    /// <summary>A unit's figures for a year.</summary>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="year">The year.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<UnitYearFigures> GetUnitYearAsync(string unitUscc, int year, CancellationToken cancellationToken = default);

    /// <summary>An empty call: checks the caller authenticates, measures the transport.</summary>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task PingAsync(CancellationToken cancellationToken = default);
}

/// <summary>The registry's calls: providers, units and their review, contracts, related parties and OPC communities (RegistryService).
/// One part of <see cref="IQuotaLedgerClient"/>, which <see cref="QuotaLedgerClient"/> implements; a fake of it needs only these members.</summary>
public interface IRegistryClient
{
    /// <summary>Registers a provider.</summary>
    /// <param name="providerUscc">Its USCC.</param>
    /// <param name="name">Its name.</param>
    /// <param name="licences">Its telecom licences, by reference.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ProviderInfo> RegisterProviderAsync(string providerUscc, string name, IEnumerable<string>? licences = null,
        string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Registers a unit.</summary>
    /// <param name="unit">The unit.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<UnitInfo> RegisterUnitAsync(UnitRegistration unit, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>A provider's review of a unit's qualification (Art 7).</summary>
    /// <param name="providerUscc">The reviewing provider (the caller).</param>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="approve">Approve or reject.</param>
    /// <param name="reason">Why (required to reject).</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<UnitInfo> ReviewUnitAsync(string providerUscc, string unitUscc, bool approve, string reason = "",
        string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Registers a contract between a provider and a unit.</summary>
    /// <param name="terms">The contract's terms.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ContractInfo> RegisterContractAsync(ContractTerms terms, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Declares a provider and a unit related parties (Art 5.6): no grants, deductions or gifts between them from then on.</summary>
    /// <param name="providerUscc">The provider.</param>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="reason">Why they are related.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task DeclareRelatedPartyAsync(string providerUscc, string unitUscc, string reason, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Adds a resident one-person company to an OPC operator's list; returns the whole list.</summary>
    /// <param name="operatorUscc">The operator.</param>
    /// <param name="residentUscc">The resident.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<IReadOnlyList<string>> AddResidentOpcAsync(string operatorUscc, string residentUscc, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Ends a declared relation (the bureau only); the declaration and its end both stay on record.</summary>
    /// <param name="providerUscc">The provider.</param>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="reason">Why the relation ended.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task EndRelatedPartyAsync(string providerUscc, string unitUscc, string reason, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>The bureau confirms (or refuses) a residency an operator declared; returns every resident as it stands.</summary>
    /// <param name="operatorUscc">The operator.</param>
    /// <param name="residentUscc">The resident.</param>
    /// <param name="confirm">True confirms, false refuses.</param>
    /// <param name="reason">Why (required to refuse).</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<IReadOnlyList<ResidencyInfo>> ConfirmResidentOpcAsync(string operatorUscc, string residentUscc, bool confirm = true, string reason = "",
        string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>The operator or the bureau takes a resident off the list; returns every resident as it stands.</summary>
    /// <param name="operatorUscc">The operator.</param>
    /// <param name="residentUscc">The resident.</param>
    /// <param name="reason">Why.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<IReadOnlyList<ResidencyInfo>> RemoveResidentOpcAsync(string operatorUscc, string residentUscc, string reason,
        string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>The bureau confirms (or withdraws) a unit's OPC community operator status; only a confirmed operator gifts.</summary>
    /// <param name="operatorUscc">The operator.</param>
    /// <param name="confirm">True confirms, false withdraws.</param>
    /// <param name="reason">Why.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<UnitInfo> ConfirmOpcOperatorAsync(string operatorUscc, bool confirm, string reason, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>A registered unit.</summary>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<UnitInfo> GetUnitAsync(string unitUscc, CancellationToken cancellationToken = default);

    /// <summary>A registered provider.</summary>
    /// <param name="providerUscc">The provider.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ProviderInfo> GetProviderAsync(string providerUscc, CancellationToken cancellationToken = default);

    /// <summary>A registered contract.</summary>
    /// <param name="providerUscc">Its provider.</param>
    /// <param name="contractNo">Its number.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ContractInfo> GetContractAsync(string providerUscc, string contractNo, CancellationToken cancellationToken = default);
}

/// <summary>The bureau's and the auditors' calls: year policies, funding, programme-year figures, standing, the expiry
/// pass, the trial balance, journal verification, checkpoints and export, and closing months and years (AdminService). One part of
/// <see cref="IQuotaLedgerClient"/>, which <see cref="QuotaLedgerClient"/> implements; a fake of it needs only these members.</summary>
public interface IAdminClient
{
    /// <summary>The city's figures for a year as they stood at <paramref name="asOf"/>, from the journal, with expiry as of then.</summary>
    /// <param name="year">The year.</param>
    /// <param name="asOf">When; not after the server's now.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ProgramYearFigures> GetProgramYearAsync(int year, DateTimeOffset asOf, CancellationToken cancellationToken = default);

    /// <summary>Sets (or replaces) a year's policy.</summary>
    /// <param name="policy">The policy.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<YearPolicy> SetYearPolicyAsync(YearPolicy policy, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>A year's policy.</summary>
    /// <param name="year">The year.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<YearPolicy> GetYearPolicyAsync(int year, CancellationToken cancellationToken = default);

    /// <summary>Funds the year's budget pool, at most the year's total.</summary>
    /// <param name="year">The year.</param>
    /// <param name="amount">How much.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ProgramYearFigures> FundBudgetAsync(int year, Fen amount, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>The city's figures for a year.</summary>
    /// <param name="year">The year.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ProgramYearFigures> GetProgramYearAsync(int year, CancellationToken cancellationToken = default);

    /// <summary>Suspends, blacklists or restores a unit or provider.</summary>
    /// <param name="uscc">The party.</param>
    /// <param name="standing">Its new standing.</param>
    /// <param name="reason">Why.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<StandingChange> SetStandingAsync(string uscc, Standing standing, string reason, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Runs the expiry pass now.</summary>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ExpiryResult> ExpireDueGrantsAsync(string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>The trial balance of a year (0 for all years).</summary>
    /// <param name="year">The year, or 0.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<TrialBalanceResult> TrialBalanceAsync(int year = 0, CancellationToken cancellationToken = default);

    /// <summary>Recomputes every journal chain and account balance; names the first entry or account that does not match.</summary>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<JournalVerdict> VerifyJournalAsync(CancellationToken cancellationToken = default);

    /// <summary>Recomputes the journal against a signed checkpoint (0: the latest; -1: none).</summary>
    /// <param name="checkpointId">The checkpoint.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<JournalVerdict> VerifyJournalAsync(long checkpointId, CancellationToken cancellationToken = default);

    /// <summary>Signs a checkpoint of the journal now (the bureau).</summary>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<CheckpointInfo> MakeCheckpointAsync(string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Writes the whole journal and every signed checkpoint, one JSON object per line each (the API's
    /// JournalEntry and Checkpoint), for an auditor to check offline with <c>dotnet QuotaLedger.Server.dll audit</c>.
    /// Needs the bureau's or an expert's rights.</summary>
    /// <param name="entries">Where the entries go.</param>
    /// <param name="checkpoints">Where the checkpoints go.</param>
    /// <param name="cancellationToken">Stops the export.</param>
    Task ExportJournalAsync(TextWriter entries, TextWriter checkpoints, CancellationToken cancellationToken = default);

    /// <summary>Closes a month, or with <paramref name="month"/> 0 a year (the bureau): runs the expiry pass, records the
    /// period's figures and seals them in a signed checkpoint. From then on no entry dated inside the period is accepted
    /// (<see cref="LedgerReason.PeriodClosed"/>), and a closed year's quota no longer moves. A month closes once it has
    /// ended and the month before it is closed; a year after its twelve months, once none of its grants holds quota: what
    /// its pool did not spend is settled. Otherwise <see cref="LedgerReason.PeriodNotReady"/>, saying which. Retried
    /// with the same request id like any write, so a retry gets the one closing.</summary>
    /// <param name="year">The year.</param>
    /// <param name="month">The month, 1 to 12; 0 closes the year.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ClosingInfo> ClosePeriodAsync(int year, int month, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>A closing with its figures and the corrections written after it (<see cref="LedgerReason.UnknownClosing"/>
    /// when the period is not closed).</summary>
    /// <param name="year">The year.</param>
    /// <param name="month">The month, 1 to 12; 0 for the year's closing.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ClosingInfo> GetClosingAsync(int year, int month, CancellationToken cancellationToken = default);

    /// <summary>The closings of a year, or of every year, oldest first, each with its corrections but without its figures
    /// (<see cref="GetClosingAsync"/> has them).</summary>
    /// <param name="year">The year, or 0 for every year.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<IReadOnlyList<ClosingInfo>> ListClosingsAsync(int year = 0, CancellationToken cancellationToken = default);

    /// <summary>Writes a closed period's export for an auditor, one JSON object per line, each ended by <c>'\n'</c>
    /// (format "quotaledger-period-export/1": the closing, the checkpoints that sign the period's entries, and every entry
    /// dated inside the period with its postings, each line chained by SHA-256 to the one before), to check offline with
    /// <c>dotnet QuotaLedger.Server.dll audit --export FILE --public-key FILE</c>. A stream that breaks off is not
    /// resumed: export again to a fresh destination.</summary>
    /// <param name="year">The year.</param>
    /// <param name="month">The month, 1 to 12; 0 for the year.</param>
    /// <param name="destination">Where the lines go.</param>
    /// <param name="cancellationToken">Stops the export.</param>
    /// <returns>How many lines were written.</returns>
    Task<long> ExportPeriodAsync(int year, int month, TextWriter destination, CancellationToken cancellationToken = default);
}

/// <summary>Redemption: batches, applications, review, disbursement and claw-backs (RedemptionService).
/// One part of <see cref="IQuotaLedgerClient"/>, which <see cref="QuotaLedgerClient"/> implements; a fake of it needs only these members.</summary>
public interface IRedemptionClient
{
    /// <summary>Opens a redemption batch for a year (the bureau).</summary>
    /// <param name="year">The year.</param>
    /// <param name="closesAt">When applications close.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<BatchInfo> OpenBatchAsync(int year, DateTimeOffset closesAt, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>A unit applies to redeem part of what it deducted, with its evidence (Art 12).</summary>
    /// <param name="batchId">The open batch.</param>
    /// <param name="unitUscc">The unit (the caller).</param>
    /// <param name="amount">How much.</param>
    /// <param name="evidence">One item at least of each kind but the platform statement, which the ledger adds.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<RedemptionInfo> SubmitRedemptionAsync(long batchId, string unitUscc, Fen amount, IEnumerable<EvidenceItem> evidence,
        string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>An expert's review: approve all, part or none.</summary>
    /// <param name="redemptionId">The redemption.</param>
    /// <param name="approved">What is approved.</param>
    /// <param name="reviewer">Who reviews.</param>
    /// <param name="reason">Why.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<RedemptionInfo> ReviewRedemptionAsync(long redemptionId, Fen approved, string reviewer, string reason,
        string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Pays the approved amount, once (the bureau).</summary>
    /// <param name="redemptionId">The redemption.</param>
    /// <param name="paymentRef">The payment's reference.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<RedemptionInfo> DisburseAsync(long redemptionId, string paymentRef, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>Reverses a deduction, a grant's open quota or a disbursement with new entries, and sets a party's standing (Art 17).</summary>
    /// <param name="target">What kind of thing <paramref name="targetId"/> names.</param>
    /// <param name="targetId">The deduction, grant or redemption.</param>
    /// <param name="amount">How much.</param>
    /// <param name="reason">Why.</param>
    /// <param name="partyUscc">Whose standing to set; the unit concerned when omitted.</param>
    /// <param name="standing">The standing to set; BLACKLISTED when omitted.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<ClawBackResult> ClawBackAsync(ClawBackTarget target, long targetId, Fen amount, string reason, string? partyUscc = null,
        Standing? standing = null, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>A redemption.</summary>
    /// <param name="redemptionId">The redemption.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<RedemptionInfo> GetRedemptionAsync(long redemptionId, CancellationToken cancellationToken = default);

    /// <summary>Redemptions, filtered by batch, unit and year (each optional), in id order, fetched page by page as the
    /// enumeration goes.</summary>
    /// <param name="batchId">The batch, or null.</param>
    /// <param name="unitUscc">The unit, or null.</param>
    /// <param name="year">The year, or null.</param>
    /// <param name="pageSize">Redemptions fetched per call; 0 for the server's default (1,000, the most a page holds).</param>
    /// <param name="cancellationToken">Cancels the enumeration.</param>
    IAsyncEnumerable<RedemptionInfo> ListRedemptionsAsync(long? batchId = null, string? unitUscc = null, int? year = null, int pageSize = 0,
        CancellationToken cancellationToken = default);

    /// <summary>One page of redemptions, filtered by batch, unit and year (each optional), in id order.</summary>
    /// <param name="batchId">The batch, or null.</param>
    /// <param name="unitUscc">The unit, or null.</param>
    /// <param name="year">The year, or null.</param>
    /// <param name="pageSize">At most this many; 0 for the server's default (1,000, the most a page holds).</param>
    /// <param name="pageToken">The previous page's <see cref="Page{T}.NextPageToken"/>; null for the first page.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<Page<RedemptionInfo>> ListRedemptionsPageAsync(long? batchId = null, string? unitUscc = null, int? year = null, int pageSize = 0,
        string? pageToken = null, CancellationToken cancellationToken = default);
}

/// <summary>Alerts: the year's rules, the alerts fired, and the alert pass (AlertService).
/// One part of <see cref="IQuotaLedgerClient"/>, which <see cref="QuotaLedgerClient"/> implements; a fake of it needs only these members.</summary>
public interface IAlertsClient
{
    /// <summary>Sets a year's alert rules (the bureau): the shares of a unit-year's cap and of the pool's funding that
    /// alert, and the days before expiry (with the unused quota) and pending that alert. A rule changed takes effect at the
    /// next entry on the figure it watches.</summary>
    /// <param name="rules">The rules.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<AlertRules> SetAlertRulesAsync(AlertRules rules, string? requestId = null, CancellationToken cancellationToken = default);

    /// <summary>A year's alert rules, the defaults when none were set.</summary>
    /// <param name="year">The year.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<AlertRules> GetAlertRulesAsync(int year, CancellationToken cancellationToken = default);

    /// <summary>The alerts the caller may see (the bureau all; a provider those of its grants and the unit-years it
    /// deals with; a unit its own), oldest first, fetched page by page as the enumeration goes.</summary>
    /// <param name="filter">Which alerts.</param>
    /// <param name="pageSize">Alerts fetched per call; 0 for the server's default.</param>
    /// <param name="cancellationToken">Cancels the enumeration.</param>
    IAsyncEnumerable<AlertInfo> ListAlertsAsync(AlertFilter? filter = null, int pageSize = 0, CancellationToken cancellationToken = default);

    /// <summary>Runs the time-based alert pass now (the bureau): grants about to expire unused, applications pending
    /// too long. The server also runs it at start and on an interval; each alert fires once whoever runs it.</summary>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<AlertPassResult> RunAlertPassAsync(string? requestId = null, CancellationToken cancellationToken = default);
}
