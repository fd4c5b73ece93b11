namespace QuotaLedger.Client;

public sealed partial class QuotaLedgerClient
{
    // The ledger (provider billing systems).

    /// <summary>Grants quota to the unit of a contract (Art 9): it moves from the year's pool to a new grant.</summary>
    /// <param name="providerUscc">The granting provider (the caller).</param>
    /// <param name="contractNo">The registered contract.</param>
    /// <param name="amount">How much quota.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted. Reuse it to retry the same grant.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<GrantResult> GrantAsync(string providerUscc, string contractNo, Fen amount, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.GrantRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, ContractNo = contractNo, AmountFen = amount.Value };
        var r = await CallAsync(o => _ledger.GrantAsync(request, o), cancellationToken);
        return new GrantResult(r.GrantId, new Fen(r.AmountFen), r.RatioBp, r.GrantedAt.ToDateTimeOffset(), r.ExpiresAt.ToDateTimeOffset(), Map.From(r.UnitYear),
            Map.From(r.Receipt));
    }

    /// <summary>Deducts the voucher share of an invoice from a grant (Art 10), capped at what the grant holds.</summary>
    /// <param name="providerUscc">The provider (the caller), which made the grant.</param>
    /// <param name="grantId">The grant.</param>
    /// <param name="invoiceNo">The invoice number; accepted once per provider.</param>
    /// <param name="invoiceAmount">The invoice amount (intelligent-compute usage only).</param>
    /// <param name="invoiceDate">The invoice date.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<DeductionResult> DeductAsync(string providerUscc, long grantId, string invoiceNo, Fen invoiceAmount, DateOnly invoiceDate,
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.DeductRequest
        {
            RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, GrantId = grantId, InvoiceNo = invoiceNo,
            InvoiceAmountFen = invoiceAmount.Value, InvoiceDate = Map.Date(invoiceDate),
        };
        var r = await CallAsync(o => _ledger.DeductAsync(request, o), cancellationToken);
        return new DeductionResult(r.DeductionId, new Fen(r.RequestedFen), new Fen(r.AppliedFen), new Fen(r.GrantRemainingFen), Map.From(r.UnitYear),
            Map.From(r.Receipt));
    }

    /// <summary>Releases a grant inside its validity (Art 11): what it holds returns to the pool.</summary>
    /// <param name="providerUscc">The provider (the caller).</param>
    /// <param name="grantId">The grant.</param>
    /// <param name="statementRef">The joint statement filed with the bureau.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<ReleaseResult> ReleaseAsync(string providerUscc, long grantId, string statementRef, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ReleaseRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, GrantId = grantId, StatementRef = statementRef };
        var r = await CallAsync(o => _ledger.ReleaseAsync(request, o), cancellationToken);
        return new ReleaseResult(r.GrantId, new Fen(r.ReleasedFen), Map.From(r.UnitYear), Map.From(r.Receipt));
    }

    /// <summary>An OPC community operator gives open quota of its grant to a resident on its list (Art 15).</summary>
    /// <param name="operatorUscc">The operator (the caller).</param>
    /// <param name="grantId">The operator's grant.</param>
    /// <param name="residentUscc">The resident one-person company.</param>
    /// <param name="amount">How much.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<GiftResult> GiftAsync(string operatorUscc, long grantId, string residentUscc, Fen amount, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.GiftRequest { RequestId = requestId ?? NewRequestId(), OperatorUscc = operatorUscc, GrantId = grantId, ResidentUscc = residentUscc, AmountFen = amount.Value };
        var r = await CallAsync(o => _ledger.GiftAsync(request, o), cancellationToken);
        return new GiftResult(Map.From(r.Grant), r.SourceGrantId, new Fen(r.SourceRemainingFen), Map.From(r.OperatorUnitYear), Map.From(r.ResidentUnitYear),
            Map.From(r.Receipt));
    }

    /// <summary>A grant's amounts and status.</summary>
    /// <param name="grantId">The grant.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<GrantDetails> GetGrantAsync(long grantId, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(o => _ledger.GetGrantAsync(new V1.GetGrantRequest { GrantId = grantId }, o), cancellationToken));

    /// <summary>A unit's figures for a year.</summary>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="year">The year.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<UnitYearFigures> GetUnitYearAsync(string unitUscc, int year, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(o => _ledger.GetUnitYearAsync(new V1.GetUnitYearRequest { UnitUscc = unitUscc, Year = year }, o), cancellationToken));

    /// <summary>An empty call: checks the caller authenticates, measures the transport.</summary>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task PingAsync(CancellationToken cancellationToken = default) =>
        await CallAsync(o => _ledger.PingAsync(new V1.PingRequest(), o), cancellationToken);

    // The registry.

    /// <summary>Registers a provider.</summary>
    /// <param name="providerUscc">Its USCC.</param>
    /// <param name="name">Its name.</param>
    /// <param name="licences">Its telecom licences, by reference.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<ProviderInfo> RegisterProviderAsync(string providerUscc, string name, IEnumerable<string>? licences = null,
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.RegisterProviderRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, Name = name, Licences = { licences ?? [] } };
        return Map.From(await CallAsync(o => _registry.RegisterProviderAsync(request, o), cancellationToken));
    }

    /// <summary>Registers a unit.</summary>
    /// <param name="unit">The unit.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<UnitInfo> RegisterUnitAsync(UnitRegistration unit, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.RegisterUnitRequest
        {
            RequestId = requestId ?? NewRequestId(), UnitUscc = unit.Uscc, Name = unit.Name, Kind = (V1.UnitKind)unit.Kind, Sme = unit.Sme,
            MaterialRefs = { unit.MaterialRefs ?? [] },
            Materials = { (unit.Materials ?? []).Select(m => new V1.Material { Kind = (V1.MaterialKind)m.Kind, Reference = m.Reference }) },
        };
        return Map.From(await CallAsync(o => _registry.RegisterUnitAsync(request, o), cancellationToken));
    }

    /// <summary>A provider's review of a unit's qualification (Art 7).</summary>
    /// <param name="providerUscc">The reviewing provider (the caller).</param>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="approve">Approve or reject.</param>
    /// <param name="reason">Why (required to reject).</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<UnitInfo> ReviewUnitAsync(string providerUscc, string unitUscc, bool approve, string reason = "",
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ReviewUnitRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, UnitUscc = unitUscc, Approve = approve, Reason = reason };
        return Map.From(await CallAsync(o => _registry.ReviewUnitAsync(request, o), cancellationToken));
    }

    /// <summary>Registers a contract between a provider and a unit.</summary>
    /// <param name="terms">The contract's terms.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<ContractInfo> RegisterContractAsync(ContractTerms terms, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.RegisterContractRequest
        {
            RequestId = requestId ?? NewRequestId(), ContractNo = terms.ContractNo, ProviderUscc = terms.ProviderUscc, UnitUscc = terms.UnitUscc,
            Accelerator = terms.Accelerator, SelfControllable = terms.SelfControllable, ServiceMode = (V1.ServiceMode)terms.ServiceMode,
            UnitPriceFen = terms.UnitPrice.Value, AmountFen = terms.Amount.Value, Purpose = terms.Purpose,
            UsesInnovationVoucher = terms.UsesInnovationVoucher, SignedOn = Map.Date(terms.SignedOn),
        };
        return Map.From(await CallAsync(o => _registry.RegisterContractAsync(request, o), cancellationToken));
    }

    /// <summary>Declares a provider and a unit related parties (Art 5.6): no grants, deductions or gifts between them from then on.</summary>
    /// <param name="providerUscc">The provider.</param>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="reason">Why they are related.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task DeclareRelatedPartyAsync(string providerUscc, string unitUscc, string reason, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.DeclareRelatedPartyRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, UnitUscc = unitUscc, Reason = reason };
        await CallAsync(o => _registry.DeclareRelatedPartyAsync(request, o), cancellationToken);
    }

    /// <summary>Adds a resident one-person company to an OPC operator's list; returns the whole list.</summary>
    /// <param name="operatorUscc">The operator.</param>
    /// <param name="residentUscc">The resident.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<IReadOnlyList<string>> AddResidentOpcAsync(string operatorUscc, string residentUscc, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.AddResidentOpcRequest { RequestId = requestId ?? NewRequestId(), OperatorUscc = operatorUscc, ResidentUscc = residentUscc };
        return [.. (await CallAsync(o => _registry.AddResidentOpcAsync(request, o), cancellationToken)).ResidentUsccs];
    }

    /// <summary>Ends a declared relation (the bureau only); the declaration and its end both stay on record.</summary>
    /// <param name="providerUscc">The provider.</param>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="reason">Why the relation ended.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task EndRelatedPartyAsync(string providerUscc, string unitUscc, string reason, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.EndRelatedPartyRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, UnitUscc = unitUscc, Reason = reason };
        await CallAsync(o => _registry.EndRelatedPartyAsync(request, o), cancellationToken);
    }

    /// <summary>The bureau confirms (or refuses) a residency an operator declared; returns every resident as it stands.</summary>
    /// <param name="operatorUscc">The operator.</param>
    /// <param name="residentUscc">The resident.</param>
    /// <param name="confirm">True confirms, false refuses.</param>
    /// <param name="reason">Why (required to refuse).</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<IReadOnlyList<ResidencyInfo>> ConfirmResidentOpcAsync(string operatorUscc, string residentUscc, bool confirm = true, string reason = "",
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ConfirmResidentOpcRequest
        {
            RequestId = requestId ?? NewRequestId(), OperatorUscc = operatorUscc, ResidentUscc = residentUscc, Confirm = confirm, Reason = reason,
        };
        return [.. (await CallAsync(o => _registry.ConfirmResidentOpcAsync(request, o), cancellationToken)).Residents.Select(Map.From)];
    }

    /// <summary>The operator or the bureau takes a resident off the list; returns every resident as it stands.</summary>
    /// <param name="operatorUscc">The operator.</param>
    /// <param name="residentUscc">The resident.</param>
    /// <param name="reason">Why.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<IReadOnlyList<ResidencyInfo>> RemoveResidentOpcAsync(string operatorUscc, string residentUscc, string reason,
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.RemoveResidentOpcRequest { RequestId = requestId ?? NewRequestId(), OperatorUscc = operatorUscc, ResidentUscc = residentUscc, Reason = reason };
        return [.. (await CallAsync(o => _registry.RemoveResidentOpcAsync(request, o), cancellationToken)).Residents.Select(Map.From)];
    }

    /// <summary>The bureau confirms (or withdraws) a unit's OPC community operator status; only a confirmed operator gifts.</summary>
    /// <param name="operatorUscc">The operator.</param>
    /// <param name="confirm">True confirms, false withdraws.</param>
    /// <param name="reason">Why.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<UnitInfo> ConfirmOpcOperatorAsync(string operatorUscc, bool confirm, string reason, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ConfirmOpcOperatorRequest { RequestId = requestId ?? NewRequestId(), OperatorUscc = operatorUscc, Confirm = confirm, Reason = reason };
        return Map.From(await CallAsync(o => _registry.ConfirmOpcOperatorAsync(request, o), cancellationToken));
    }

    /// <summary>A registered unit.</summary>
    /// <param name="unitUscc">The unit.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<UnitInfo> GetUnitAsync(string unitUscc, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(o => _registry.GetUnitAsync(new V1.GetUnitRequest { UnitUscc = unitUscc }, o), cancellationToken));

    /// <summary>A registered provider.</summary>
    /// <param name="providerUscc">The provider.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<ProviderInfo> GetProviderAsync(string providerUscc, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(o => _registry.GetProviderAsync(new V1.GetProviderRequest { ProviderUscc = providerUscc }, o), cancellationToken));

    /// <summary>A registered contract.</summary>
    /// <param name="providerUscc">Its provider.</param>
    /// <param name="contractNo">Its number.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<ContractInfo> GetContractAsync(string providerUscc, string contractNo, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(o => _registry.GetContractAsync(new V1.GetContractRequest { ProviderUscc = providerUscc, ContractNo = contractNo }, o), cancellationToken));

    // The bureau.

    /// <summary>Sets (or replaces) a year's policy.</summary>
    /// <param name="policy">The policy.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<YearPolicy> SetYearPolicyAsync(YearPolicy policy, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.SetYearPolicyRequest
        {
            RequestId = requestId ?? NewRequestId(), Year = policy.Year, SelfControllableRatioBp = policy.SelfControllableRatioBp,
            OtherRatioBp = policy.OtherRatioBp, SmeBonusBp = policy.SmeBonusBp, UnitYearCapFen = policy.UnitYearCap.Value,
            UnitYearFloorFen = policy.UnitYearFloor.Value, YearTotalFen = policy.YearTotal.Value, ValidityMonths = policy.ValidityMonths,
            EffectiveFrom = policy.EffectiveFrom is { } day ? Map.Date(day) : "",
        };
        return Map.From(await CallAsync(o => _admin.SetYearPolicyAsync(request, o), cancellationToken));
    }

    /// <summary>A year's policy.</summary>
    /// <param name="year">The year.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<YearPolicy> GetYearPolicyAsync(int year, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(o => _admin.GetYearPolicyAsync(new V1.GetYearPolicyRequest { Year = year }, o), cancellationToken));

    /// <summary>Funds the year's budget pool, at most the year's total.</summary>
    /// <param name="year">The year.</param>
    /// <param name="amount">How much.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<ProgramYearFigures> FundBudgetAsync(int year, Fen amount, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.FundBudgetRequest { RequestId = requestId ?? NewRequestId(), Year = year, AmountFen = amount.Value };
        return Map.From(await CallAsync(o => _admin.FundBudgetAsync(request, o), cancellationToken));
    }

    /// <summary>The city's figures for a year.</summary>
    /// <param name="year">The year.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<ProgramYearFigures> GetProgramYearAsync(int year, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(o => _admin.GetProgramYearAsync(new V1.GetProgramYearRequest { Year = year }, o), cancellationToken));

    /// <summary>Suspends, blacklists or restores a unit or provider.</summary>
    /// <param name="uscc">The party.</param>
    /// <param name="standing">Its new standing.</param>
    /// <param name="reason">Why.</param>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<StandingChange> SetStandingAsync(string uscc, Standing standing, string reason, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.SetStandingRequest { RequestId = requestId ?? NewRequestId(), Uscc = uscc, Standing = (V1.Standing)standing, Reason = reason };
        var r = await CallAsync(o => _admin.SetStandingAsync(request, o), cancellationToken);
        return new StandingChange(r.Uscc, (Standing)r.Standing, (Standing)r.PreviousStanding, [.. r.Parties], r.ChangedAt.ToDateTimeOffset());
    }

    /// <summary>Runs the expiry pass now.</summary>
    /// <param name="requestId">Idempotency key; one is made when omitted.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<ExpiryResult> ExpireDueGrantsAsync(string? requestId = null, CancellationToken cancellationToken = default)
    {
        var r = await CallAsync(o => _admin.ExpireDueGrantsAsync(new V1.ExpireDueGrantsRequest { RequestId = requestId ?? NewRequestId() }, o), cancellationToken);
        return new ExpiryResult(r.ExpiredGrants, new Fen(r.ReturnedFen));
    }

    /// <summary>The trial balance of a year (0 for all years).</summary>
    /// <param name="year">The year, or 0.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<TrialBalanceResult> TrialBalanceAsync(int year = 0, CancellationToken cancellationToken = default)
    {
        var r = await CallAsync(o => _admin.TrialBalanceAsync(new V1.TrialBalanceRequest { Year = year }, o), cancellationToken);
        return new TrialBalanceResult(r.Year,
            [.. r.Kinds.Select(k => new TrialBalanceLine((AccountKind)k.Kind, k.Accounts, new Fen(k.DebitFen), new Fen(k.CreditFen), new Fen(k.BalanceFen), new Fen(k.PostingsBalanceFen)))],
            new Fen(r.TotalDebitFen), new Fen(r.TotalCreditFen), r.Balanced, r.BalancesMatchPostings);
    }
}
