namespace QuotaLedger.Client;

public sealed partial class QuotaLedgerClient
{
    // The ledger (provider billing systems).

    /// <inheritdoc />
    public async Task<GrantResult> GrantAsync(string providerUscc, string contractNo, Fen amount, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.GrantRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, ContractNo = contractNo, AmountFen = amount.Value };
        var r = await CallAsync(s_grant, request.RequestId, o => _ledger.GrantAsync(request, o), cancellationToken);
        return new GrantResult(r.GrantId, new Fen(r.AmountFen), r.RatioBp, r.GrantedAt.ToDateTimeOffset(), r.ExpiresAt.ToDateTimeOffset(), Map.From(r.UnitYear),
            Map.From(r.Receipt));
    }

    /// <inheritdoc />
    public async Task<DeductionResult> DeductAsync(string providerUscc, long grantId, string invoiceNo, Fen invoiceAmount, DateOnly invoiceDate,
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.DeductRequest
        {
            RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, GrantId = grantId, InvoiceNo = invoiceNo,
            InvoiceAmountFen = invoiceAmount.Value, InvoiceDate = Map.Date(invoiceDate),
        };
        var r = await CallAsync(s_deduct, request.RequestId, o => _ledger.DeductAsync(request, o), cancellationToken);
        return new DeductionResult(r.DeductionId, new Fen(r.RequestedFen), new Fen(r.AppliedFen), new Fen(r.GrantRemainingFen), Map.From(r.UnitYear),
            Map.From(r.Receipt));
    }

    /// <inheritdoc />
    public async Task<ReleaseResult> ReleaseAsync(string providerUscc, long grantId, string statementRef, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ReleaseRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, GrantId = grantId, StatementRef = statementRef };
        var r = await CallAsync(s_release, request.RequestId, o => _ledger.ReleaseAsync(request, o), cancellationToken);
        return new ReleaseResult(r.GrantId, new Fen(r.ReleasedFen), Map.From(r.UnitYear), Map.From(r.Receipt));
    }

    /// <inheritdoc />
    public async Task<GiftResult> GiftAsync(string operatorUscc, long grantId, string residentUscc, Fen amount, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.GiftRequest { RequestId = requestId ?? NewRequestId(), OperatorUscc = operatorUscc, GrantId = grantId, ResidentUscc = residentUscc, AmountFen = amount.Value };
        var r = await CallAsync(s_gift, request.RequestId, o => _ledger.GiftAsync(request, o), cancellationToken);
        return new GiftResult(Map.From(r.Grant), r.SourceGrantId, new Fen(r.SourceRemainingFen), Map.From(r.OperatorUnitYear), Map.From(r.ResidentUnitYear),
            Map.From(r.Receipt));
    }

    /// <inheritdoc />
    public async Task<GrantDetails> GetGrantAsync(long grantId, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getGrant, null, o => _ledger.GetGrantAsync(new V1.GetGrantRequest { GrantId = grantId }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<Explanation> ExplainGrantAsync(string providerUscc, string contractNo, Fen amount, CancellationToken cancellationToken = default)
    {
        var request = new V1.GrantRequest { ProviderUscc = providerUscc, ContractNo = contractNo, AmountFen = amount.Value, DryRun = true };
        return Map.From((await CallAsync(s_grant, null, o => _ledger.GrantAsync(request, o), cancellationToken)).Explanation);
    }

    /// <inheritdoc />
    public async Task<Explanation> ExplainDeductAsync(string providerUscc, long grantId, string invoiceNo, Fen invoiceAmount, DateOnly invoiceDate,
        CancellationToken cancellationToken = default)
    {
        var request = new V1.DeductRequest
        {
            ProviderUscc = providerUscc, GrantId = grantId, InvoiceNo = invoiceNo, InvoiceAmountFen = invoiceAmount.Value, InvoiceDate = Map.Date(invoiceDate), DryRun = true,
        };
        return Map.From((await CallAsync(s_deduct, null, o => _ledger.DeductAsync(request, o), cancellationToken)).Explanation);
    }

    /// <inheritdoc />
    public async Task<GrantDetails> GetGrantAsync(long grantId, DateTimeOffset asOf, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getGrant, null, o => _ledger.GetGrantAsync(new V1.GetGrantRequest { GrantId = grantId, AsOf = Stamp(asOf) }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<UnitYearFigures> GetUnitYearAsync(string unitUscc, int year, DateTimeOffset asOf, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getUnitYear, null,
            o => _ledger.GetUnitYearAsync(new V1.GetUnitYearRequest { UnitUscc = unitUscc, Year = year, AsOf = Stamp(asOf) }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<ProgramYearFigures> GetProgramYearAsync(int year, DateTimeOffset asOf, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getProgramYear, null,
            o => _admin.GetProgramYearAsync(new V1.GetProgramYearRequest { Year = year, AsOf = Stamp(asOf) }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<DeductionDetails> GetDeductionAsync(long deductionId, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getDeduction, null, o => _ledger.GetDeductionAsync(new V1.GetDeductionRequest { DeductionId = deductionId }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<DeductionDetails> GetDeductionByInvoiceAsync(string providerUscc, string invoiceNo, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getDeduction, null,
            o => _ledger.GetDeductionAsync(new V1.GetDeductionRequest { ProviderUscc = providerUscc, InvoiceNo = invoiceNo }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<UnitYearFigures> GetUnitYearAsync(string unitUscc, int year, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getUnitYear, null, o => _ledger.GetUnitYearAsync(new V1.GetUnitYearRequest { UnitUscc = unitUscc, Year = year }, o), cancellationToken));

    /// <inheritdoc />
    public async Task PingAsync(CancellationToken cancellationToken = default) =>
        await CallAsync(s_ping, null, o => _ledger.PingAsync(new V1.PingRequest(), o), cancellationToken);

    // The registry.

    /// <inheritdoc />
    public async Task<ProviderInfo> RegisterProviderAsync(string providerUscc, string name, IEnumerable<string>? licences = null,
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.RegisterProviderRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, Name = name, Licences = { licences ?? [] } };
        return Map.From(await CallAsync(s_registerProvider, request.RequestId, o => _registry.RegisterProviderAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task<UnitInfo> RegisterUnitAsync(UnitRegistration unit, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.RegisterUnitRequest
        {
            RequestId = requestId ?? NewRequestId(), UnitUscc = unit.Uscc, Name = unit.Name, Kind = (V1.UnitKind)unit.Kind, Sme = unit.Sme,
            MaterialRefs = { unit.MaterialRefs ?? [] },
            Materials = { (unit.Materials ?? []).Select(m => new V1.Material { Kind = (V1.MaterialKind)m.Kind, Reference = m.Reference }) },
        };
        return Map.From(await CallAsync(s_registerUnit, request.RequestId, o => _registry.RegisterUnitAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task<UnitInfo> ReviewUnitAsync(string providerUscc, string unitUscc, bool approve, string reason = "",
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ReviewUnitRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, UnitUscc = unitUscc, Approve = approve, Reason = reason };
        return Map.From(await CallAsync(s_reviewUnit, request.RequestId, o => _registry.ReviewUnitAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task<ContractInfo> RegisterContractAsync(ContractTerms terms, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.RegisterContractRequest
        {
            RequestId = requestId ?? NewRequestId(), ContractNo = terms.ContractNo, ProviderUscc = terms.ProviderUscc, UnitUscc = terms.UnitUscc,
            Accelerator = terms.Accelerator, SelfControllable = terms.SelfControllable, ServiceMode = (V1.ServiceMode)terms.ServiceMode,
            UnitPriceFen = terms.UnitPrice.Value, AmountFen = terms.Amount.Value, Purpose = terms.Purpose,
            UsesInnovationVoucher = terms.UsesInnovationVoucher, SignedOn = Map.Date(terms.SignedOn),
        };
        return Map.From(await CallAsync(s_registerContract, request.RequestId, o => _registry.RegisterContractAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task DeclareRelatedPartyAsync(string providerUscc, string unitUscc, string reason, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.DeclareRelatedPartyRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, UnitUscc = unitUscc, Reason = reason };
        await CallAsync(s_declareRelatedParty, request.RequestId, o => _registry.DeclareRelatedPartyAsync(request, o), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> AddResidentOpcAsync(string operatorUscc, string residentUscc, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.AddResidentOpcRequest { RequestId = requestId ?? NewRequestId(), OperatorUscc = operatorUscc, ResidentUscc = residentUscc };
        return [.. (await CallAsync(s_addResidentOpc, request.RequestId, o => _registry.AddResidentOpcAsync(request, o), cancellationToken)).ResidentUsccs];
    }

    /// <inheritdoc />
    public async Task EndRelatedPartyAsync(string providerUscc, string unitUscc, string reason, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.EndRelatedPartyRequest { RequestId = requestId ?? NewRequestId(), ProviderUscc = providerUscc, UnitUscc = unitUscc, Reason = reason };
        await CallAsync(s_endRelatedParty, request.RequestId, o => _registry.EndRelatedPartyAsync(request, o), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ResidencyInfo>> ConfirmResidentOpcAsync(string operatorUscc, string residentUscc, bool confirm = true, string reason = "",
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ConfirmResidentOpcRequest
        {
            RequestId = requestId ?? NewRequestId(), OperatorUscc = operatorUscc, ResidentUscc = residentUscc, Confirm = confirm, Reason = reason,
        };
        return [.. (await CallAsync(s_confirmResidentOpc, request.RequestId, o => _registry.ConfirmResidentOpcAsync(request, o), cancellationToken)).Residents.Select(Map.From)];
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ResidencyInfo>> RemoveResidentOpcAsync(string operatorUscc, string residentUscc, string reason,
        string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.RemoveResidentOpcRequest { RequestId = requestId ?? NewRequestId(), OperatorUscc = operatorUscc, ResidentUscc = residentUscc, Reason = reason };
        return [.. (await CallAsync(s_removeResidentOpc, request.RequestId, o => _registry.RemoveResidentOpcAsync(request, o), cancellationToken)).Residents.Select(Map.From)];
    }

    /// <inheritdoc />
    public async Task<UnitInfo> ConfirmOpcOperatorAsync(string operatorUscc, bool confirm, string reason, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ConfirmOpcOperatorRequest { RequestId = requestId ?? NewRequestId(), OperatorUscc = operatorUscc, Confirm = confirm, Reason = reason };
        return Map.From(await CallAsync(s_confirmOpcOperator, request.RequestId, o => _registry.ConfirmOpcOperatorAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task<UnitInfo> GetUnitAsync(string unitUscc, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getUnit, null, o => _registry.GetUnitAsync(new V1.GetUnitRequest { UnitUscc = unitUscc }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<ProviderInfo> GetProviderAsync(string providerUscc, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getProvider, null, o => _registry.GetProviderAsync(new V1.GetProviderRequest { ProviderUscc = providerUscc }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<ContractInfo> GetContractAsync(string providerUscc, string contractNo, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getContract, null, o => _registry.GetContractAsync(new V1.GetContractRequest { ProviderUscc = providerUscc, ContractNo = contractNo }, o), cancellationToken));

    // The bureau.

    /// <inheritdoc />
    public async Task<YearPolicy> SetYearPolicyAsync(YearPolicy policy, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.SetYearPolicyRequest
        {
            RequestId = requestId ?? NewRequestId(), Year = policy.Year, SelfControllableRatioBp = policy.SelfControllableRatioBp,
            OtherRatioBp = policy.OtherRatioBp, SmeBonusBp = policy.SmeBonusBp, UnitYearCapFen = policy.UnitYearCap.Value,
            UnitYearFloorFen = policy.UnitYearFloor.Value, YearTotalFen = policy.YearTotal.Value, ValidityMonths = policy.ValidityMonths,
            EffectiveFrom = policy.EffectiveFrom is { } day ? Map.Date(day) : "",
        };
        return Map.From(await CallAsync(s_setYearPolicy, request.RequestId, o => _admin.SetYearPolicyAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task<YearPolicy> GetYearPolicyAsync(int year, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getYearPolicy, null, o => _admin.GetYearPolicyAsync(new V1.GetYearPolicyRequest { Year = year }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<ProgramYearFigures> FundBudgetAsync(int year, Fen amount, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.FundBudgetRequest { RequestId = requestId ?? NewRequestId(), Year = year, AmountFen = amount.Value };
        return Map.From(await CallAsync(s_fundBudget, request.RequestId, o => _admin.FundBudgetAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task<ProgramYearFigures> GetProgramYearAsync(int year, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getProgramYear, null, o => _admin.GetProgramYearAsync(new V1.GetProgramYearRequest { Year = year }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<StandingChange> SetStandingAsync(string uscc, Standing standing, string reason, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.SetStandingRequest { RequestId = requestId ?? NewRequestId(), Uscc = uscc, Standing = (V1.Standing)standing, Reason = reason };
        var r = await CallAsync(s_setStanding, request.RequestId, o => _admin.SetStandingAsync(request, o), cancellationToken);
        return new StandingChange(r.Uscc, (Standing)r.Standing, (Standing)r.PreviousStanding, [.. r.Parties], r.ChangedAt.ToDateTimeOffset());
    }

    /// <inheritdoc />
    public async Task<ExpiryResult> ExpireDueGrantsAsync(string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ExpireDueGrantsRequest { RequestId = requestId ?? NewRequestId() };
        var r = await CallAsync(s_expireDueGrants, request.RequestId, o => _admin.ExpireDueGrantsAsync(request, o), cancellationToken);
        return new ExpiryResult(r.ExpiredGrants, new Fen(r.ReturnedFen));
    }

    /// <inheritdoc />
    public async Task<TrialBalanceResult> TrialBalanceAsync(int year = 0, CancellationToken cancellationToken = default)
    {
        var r = await CallAsync(s_trialBalance, null, o => _admin.TrialBalanceAsync(new V1.TrialBalanceRequest { Year = year }, o), cancellationToken);
        return new TrialBalanceResult(r.Year,
            [.. r.Kinds.Select(k => new TrialBalanceLine((AccountKind)k.Kind, k.Accounts, new Fen(k.DebitFen), new Fen(k.CreditFen), new Fen(k.BalanceFen), new Fen(k.PostingsBalanceFen)))],
            new Fen(r.TotalDebitFen), new Fen(r.TotalCreditFen), r.Balanced, r.BalancesMatchPostings);
    }
}
