using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
using ResidencyStatus = QuotaLedger.Server.Storage.ResidencyStatus;
using UnitKind = QuotaLedger.Server.Storage.UnitKind;

namespace QuotaLedger.Server.Registry;

/// <summary>Providers, units, qualification reviews (Art 7) and contracts (Art 8).</summary>
internal sealed class RegistryGrpcService(LedgerDb db, Idempotency idempotency, TimeProvider time) : RegistryService.RegistryServiceBase
{
    public override Task<Provider> RegisterProvider(RegisterProviderRequest request, ServerCallContext context)
    {
        var caller = Access.RequireSelf(context, Role.Provider, request.ProviderUscc, orBureau: true);
        var uscc = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var name = Validate.Text(request.Name, "name");
        var licences = Registration.Licences(request.Licences);

        return idempotency.RunAsync(caller.ScopeFor(Callers.Provider(uscc)), request.RequestId, nameof(RegisterProvider), request, async ct =>
        {
            if (await db.Providers.AnyAsync(p => p.Uscc == uscc, ct))
            {
                throw AlreadyRegistered("provider", uscc);
            }

            var row = new ProviderRow { Uscc = uscc, Name = name, Licences = [.. licences], RegisteredAt = time.GetUtcNow() };
            db.Providers.Add(row);
            await SaveOrAlreadyRegistered("provider", uscc, ct);
            return row.ToApi();
        }, context.CancellationToken);
    }

    public override Task<Unit> RegisterUnit(RegisterUnitRequest request, ServerCallContext context)
    {
        var caller = Access.RequireSelf(context, Role.Unit, request.UnitUscc, orBureau: true);
        var uscc = Validate.Uscc(request.UnitUscc, "unit_uscc");
        var name = Validate.Text(request.Name, "name");
        var kind = request.Kind.FromApi()
            ?? throw new LedgerException(Reason.InvalidArgument, "kind must be ENTERPRISE, RESEARCH_INSTITUTE, UNIVERSITY or OPC_OPERATOR.");
        var materialRefs = Validate.TextList(request.MaterialRefs, "material_refs");
        var materials = Registration.Materials(request.Materials, request.Kind, request.Sme);

        return idempotency.RunAsync(caller.ScopeFor(Callers.Unit(uscc)), request.RequestId, nameof(RegisterUnit), request, async ct =>
        {
            if (await db.Units.AnyAsync(u => u.Uscc == uscc, ct))
            {
                throw AlreadyRegistered("unit", uscc);
            }

            db.Units.Add(new UnitRow
            {
                Uscc = uscc,
                Name = name,
                Kind = kind,
                Sme = request.Sme,
                MaterialRefs = [.. materialRefs],
                Materials = materials,
                RegisteredAt = time.GetUtcNow(),
            });
            await SaveOrAlreadyRegistered("unit", uscc, ct);
            return await LoadUnit(uscc, ct);
        }, context.CancellationToken);
    }

    public override Task<Unit> ReviewUnit(ReviewUnitRequest request, ServerCallContext context)
    {
        var caller = Access.RequireSelf(context, Role.Provider, request.ProviderUscc);
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var unit = Validate.Uscc(request.UnitUscc, "unit_uscc");
        var reason = Validate.Text(request.Reason, "reason", required: !request.Approve);
        EnsureNotSelf(provider, unit, "review");

        return idempotency.RunAsync(caller.ScopeFor(Callers.Provider(provider)), request.RequestId, nameof(ReviewUnit), request, async ct =>
        {
            await EnsureProvider(provider, ct);
            await EnsureUnit(unit, ct);
            db.UnitReviews.Add(new UnitReviewRow
            {
                ProviderUscc = provider,
                UnitUscc = unit,
                Approved = request.Approve,
                Reason = reason,
                ReviewedAt = time.GetUtcNow(),
            });
            await db.SaveChangesAsync(ct);
            return await LoadUnit(unit, ct, caller);
        }, context.CancellationToken);
    }

    public override Task<Contract> RegisterContract(RegisterContractRequest request, ServerCallContext context)
    {
        var caller = Access.RequireSelf(context, Role.Provider, request.ProviderUscc, orBureau: true);
        var contractNo = Validate.Text(request.ContractNo, "contract_no", maxLength: 64);
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var unit = Validate.Uscc(request.UnitUscc, "unit_uscc");
        var accelerator = Validate.Text(request.Accelerator, "accelerator");
        var serviceMode = Registration.ServiceMode(request.ServiceMode);
        var unitPrice = Validate.Amount(request.UnitPriceFen, "unit_price_fen");
        var amount = Validate.Amount(request.AmountFen, "amount_fen");
        var purpose = Validate.Text(request.Purpose, "purpose");
        var signedOn = Validate.Date(request.SignedOn, "signed_on");
        EnsureNotSelf(provider, unit, "contract");

        return idempotency.RunAsync(caller.ScopeFor(Callers.Provider(provider)), request.RequestId, nameof(RegisterContract), request, async ct =>
        {
            await EnsureProvider(provider, ct);
            await EnsureUnit(unit, ct);
            if (RelatedParties.Refusal(provider, unit, (await Eligibility.ReadAsync(db, provider, unit, ct)).Related, "contract") is { } related)
            {
                throw related;
            }

            if (await db.Contracts.AnyAsync(c => c.ProviderUscc == provider && c.ContractNo == contractNo, ct))
            {
                throw AlreadyRegistered("contract", contractNo);
            }

            var row = new ContractRow
            {
                ContractNo = contractNo,
                ProviderUscc = provider,
                UnitUscc = unit,
                Accelerator = accelerator,
                SelfControllable = request.SelfControllable,
                ServiceMode = serviceMode,
                UnitPriceFen = unitPrice.Value,
                AmountFen = amount.Value,
                Purpose = purpose,
                UsesInnovationVoucher = request.UsesInnovationVoucher,
                SignedOn = signedOn,
                RegisteredAt = time.GetUtcNow(),
            };
            db.Contracts.Add(row);
            await SaveOrAlreadyRegistered("contract", contractNo, ct);
            return row.ToApi();
        }, context.CancellationToken);
    }

    public override Task<DeclareRelatedPartyResponse> DeclareRelatedParty(DeclareRelatedPartyRequest request, ServerCallContext context)
    {
        // Either party may declare the relation, or the bureau.
        var caller = Access.CallerOf(context) is { } self && self.Has(Role.Unit) && self.Uscc == request.UnitUscc
            ? self
            : Access.RequireSelf(context, Role.Provider, request.ProviderUscc, orBureau: true);
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var unit = Validate.Uscc(request.UnitUscc, "unit_uscc");
        var reason = Validate.Text(request.Reason, "reason");

        return idempotency.RunAsync(caller.ScopeFor(Callers.Provider(provider)), request.RequestId, nameof(DeclareRelatedParty), request, async ct =>
        {
            await EnsureProvider(provider, ct);
            await EnsureUnit(unit, ct);
            return await RecordRelationAsync(provider, unit, related: true, reason, request.RequestId, caller.ScopeFor(Callers.Provider(provider)), ct);
        }, context.CancellationToken);
    }

    public override Task<DeclareRelatedPartyResponse> EndRelatedParty(EndRelatedPartyRequest request, ServerCallContext context)
    {
        // Only the bureau ends a relation: a party that could end its own would escape Art 5.6 at will.
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var unit = Validate.Uscc(request.UnitUscc, "unit_uscc");
        var reason = Validate.Text(request.Reason, "reason");

        return idempotency.RunAsync(by, request.RequestId, nameof(EndRelatedParty), request, async ct =>
        {
            await EnsureProvider(provider, ct);
            await EnsureUnit(unit, ct);
            EnsureNotSelf(provider, unit, "relation to end");
            return await RecordRelationAsync(provider, unit, related: false, reason, request.RequestId, by, ct);
        }, context.CancellationToken);
    }

    /// <summary>Appends a row when it changes whether the two are related; declaring again, or ending what is not in
    /// force, changes nothing. Answers with the row in force.</summary>
    private async Task<DeclareRelatedPartyResponse> RecordRelationAsync(string provider, string unit, bool related, string reason,
        string requestId, string by, CancellationToken ct)
    {
        Task<RelatedPartyRow?> LatestAsync() => db.RelatedParties.AsNoTracking()
            .Where(r => r.ProviderUscc == provider && r.UnitUscc == unit).OrderByDescending(r => r.Id).FirstOrDefaultAsync(ct);

        var latest = await LatestAsync();
        if ((latest?.Related ?? false) != related)
        {
            db.RelatedParties.Add(new RelatedPartyRow
            {
                ProviderUscc = provider, UnitUscc = unit, Related = related, Reason = reason, RecordedAt = time.GetUtcNow(), RequestId = requestId, Caller = by,
            });
            await db.SaveChangesAsync(ct);
            latest = await LatestAsync();
        }

        return new DeclareRelatedPartyResponse
        {
            ProviderUscc = provider,
            UnitUscc = unit,
            Related = latest?.Related ?? false,
            Reason = latest?.Reason ?? "",
            DeclaredAt = latest?.RecordedAt.ToTimestamp(),
        };
    }

    public override Task<AddResidentOpcResponse> AddResidentOpc(AddResidentOpcRequest request, ServerCallContext context)
    {
        var caller = Access.RequireSelf(context, Role.Unit, request.OperatorUscc, orBureau: true);
        var (operatorUscc, resident) = ResidencyPair(request.OperatorUscc, request.ResidentUscc);
        var by = caller.ScopeFor(Callers.Unit(operatorUscc));

        return idempotency.RunAsync(by, request.RequestId, nameof(AddResidentOpc), request, ct =>
            OpcCommunity.RecordAsync(db, operatorUscc, resident, ResidencyStatus.Declared, "declared by the operator", time.GetUtcNow(), request.RequestId, by, ct),
            context.CancellationToken);
    }

    public override Task<AddResidentOpcResponse> ConfirmResidentOpc(ConfirmResidentOpcRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var (operatorUscc, resident) = ResidencyPair(request.OperatorUscc, request.ResidentUscc);
        var reason = Validate.Text(request.Reason, "reason", required: !request.Confirm);
        var next = request.Confirm ? ResidencyStatus.Confirmed : ResidencyStatus.Rejected;

        return idempotency.RunAsync(by, request.RequestId, nameof(ConfirmResidentOpc), request, ct =>
            OpcCommunity.RecordAsync(db, operatorUscc, resident, next, reason, time.GetUtcNow(), request.RequestId, by, ct),
            context.CancellationToken);
    }

    public override Task<AddResidentOpcResponse> RemoveResidentOpc(RemoveResidentOpcRequest request, ServerCallContext context)
    {
        var caller = Access.RequireSelf(context, Role.Unit, request.OperatorUscc, orBureau: true);
        var (operatorUscc, resident) = ResidencyPair(request.OperatorUscc, request.ResidentUscc);
        var reason = Validate.Text(request.Reason, "reason");
        var by = caller.ScopeFor(Callers.Unit(operatorUscc));

        return idempotency.RunAsync(by, request.RequestId, nameof(RemoveResidentOpc), request, ct =>
            OpcCommunity.RecordAsync(db, operatorUscc, resident, ResidencyStatus.Ended, reason, time.GetUtcNow(), request.RequestId, by, ct),
            context.CancellationToken);
    }

    public override Task<Unit> ConfirmOpcOperator(ConfirmOpcOperatorRequest request, ServerCallContext context)
    {
        var by = Access.Require(context, Role.Bureau).ScopeFor(Callers.Bureau);
        var operatorUscc = Validate.Uscc(request.OperatorUscc, "operator_uscc");
        var reason = Validate.Text(request.Reason, "reason");

        return idempotency.RunAsync(by, request.RequestId, nameof(ConfirmOpcOperator), request, async ct =>
        {
            await OpcCommunity.ConfirmOperatorAsync(db, operatorUscc, request.Confirm, reason, time.GetUtcNow(), request.RequestId, by, ct);
            return await LoadUnit(operatorUscc, ct);
        }, context.CancellationToken);
    }

    private static (string Operator, string Resident) ResidencyPair(string operatorUscc, string residentUscc)
    {
        var pair = (Validate.Uscc(operatorUscc, "operator_uscc"), Validate.Uscc(residentUscc, "resident_uscc"));
        return pair.Item1 != pair.Item2
            ? pair
            : throw new LedgerException(Reason.InvalidArgument, "An OPC community operator cannot be its own resident.");
    }

    public override async Task<Unit> GetUnit(GetUnitRequest request, ServerCallContext context)
    {
        // Providers read the units they review (identity and their own reviews only); a unit reads itself.
        var caller = Access.RequireReader(context);
        if (!Access.ReadsAll(caller) && !caller.Has(Role.Provider))
        {
            Access.RequireSelf(context, Role.Unit, request.UnitUscc);
        }

        var uscc = Validate.Uscc(request.UnitUscc, "unit_uscc");
        await EnsureUnit(uscc, context.CancellationToken);
        return await LoadUnit(uscc, context.CancellationToken, caller);
    }

    public override async Task<Provider> GetProvider(GetProviderRequest request, ServerCallContext context)
    {
        Access.RequireReader(context);
        var uscc = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var row = await db.Providers.AsNoTracking().SingleOrDefaultAsync(p => p.Uscc == uscc, context.CancellationToken)
            ?? throw UnknownProvider(uscc);
        return row.ToApi();
    }

    public override async Task<Contract> GetContract(GetContractRequest request, ServerCallContext context)
    {
        var caller = Access.RequireReader(context);
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var contractNo = Validate.Text(request.ContractNo, "contract_no", maxLength: 64);
        var row = await db.Contracts.AsNoTracking()
            .SingleOrDefaultAsync(c => c.ProviderUscc == provider && c.ContractNo == contractNo, context.CancellationToken);
        if (row is null || !Access.MayRead(caller, row.ProviderUscc, row.UnitUscc))
        {
            // The same answer whether it does not exist or is not the caller's to read.
            throw new LedgerException(Reason.UnknownContract, $"Provider {provider} has no contract '{contractNo}' the caller may read.");
        }

        // Expiry takes effect at expires_at: what due grants hold no longer counts as committed on the contract.
        var contract = row.ToApi();
        contract.GrantedFen -= await Grants.LapsedAsync(db.Grants.Where(g => g.ContractId == row.Id), time.GetUtcNow(), context.CancellationToken);
        return contract;
    }

    /// <summary>The unit as <paramref name="viewer"/> may see it. A provider that is neither the unit nor a reader of
    /// everything sees its identity, standing and kind, and only its own review: not the unit's materials, not other
    /// providers' reviews or their reasons, not an operator's residents.</summary>
    private async Task<Unit> LoadUnit(string uscc, CancellationToken ct, Caller? viewer = null)
    {
        var row = await db.Units.AsNoTracking().SingleAsync(u => u.Uscc == uscc, ct);
        var reviews = await Eligibility.LatestReviewsAsync(db, uscc, ct);

        var unit = new Unit
        {
            UnitUscc = row.Uscc,
            Name = row.Name,
            Kind = row.Kind.ToApi(),
            Sme = row.Sme,
            MaterialRefs = { row.MaterialRefs },
            Standing = row.Standing.ToApi(),
            Approved = reviews.Any(r => r.Approved),
            RegisteredAt = row.RegisteredAt.ToTimestamp(),
            Materials = { Registration.MaterialsOf(row.Materials) },
        };
        if (row.Kind == UnitKind.OpcOperator)
        {
            unit.OpcConfirmed = await OpcCommunity.OperatorConfirmedAsync(db, uscc, ct);
            unit.Residents.AddRange((await OpcCommunity.ResidentsAsync(db, uscc, ct)).Select(OpcCommunity.ToApi));
        }

        unit.Reviews.AddRange(reviews.OrderBy(r => r.ProviderUscc, StringComparer.Ordinal).Select(r => new UnitReview
        {
            ProviderUscc = r.ProviderUscc,
            Approved = r.Approved,
            Reason = r.Reason,
            ReviewedAt = r.ReviewedAt.ToTimestamp(),
        }));
        if (viewer is { } provider && !provider.IsDevelopment && !Access.ReadsAll(provider) && !(provider.Has(Role.Unit) && provider.Uscc == uscc))
        {
            unit.MaterialRefs.Clear();
            unit.Materials.Clear();
            unit.Residents.Clear();
            var own = unit.Reviews.Where(r => r.ProviderUscc == provider.Uscc).ToList();
            unit.Reviews.Clear();
            unit.Reviews.AddRange(own);
            unit.Approved = own.Any(r => r.Approved);
        }

        return unit;
    }

    private async Task EnsureProvider(string uscc, CancellationToken ct)
    {
        if (!await db.Providers.AnyAsync(p => p.Uscc == uscc, ct))
        {
            throw UnknownProvider(uscc);
        }
    }

    private async Task EnsureUnit(string uscc, CancellationToken ct)
    {
        if (!await db.Units.AnyAsync(u => u.Uscc == uscc, ct))
        {
            throw new LedgerException(Reason.UnknownUnit, $"No unit is registered with USCC {uscc}; call RegisterUnit first.");
        }
    }

    private async Task SaveOrAlreadyRegistered(string what, string key, CancellationToken ct)
    {
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (Postgres.IsUniqueViolation(e))
        {
            // A concurrent registration of the same key won the race.
            throw AlreadyRegistered(what, key);
        }
    }

    /// <summary>A USCC registered both as provider and as unit is its own related party (Art 5.6): it neither reviews
    /// itself nor contracts with itself.</summary>
    private static void EnsureNotSelf(string provider, string unit, string what)
    {
        if (RelatedParties.Refusal(provider, unit, declared: false, what) is { } self)
        {
            throw self;
        }
    }

    private static LedgerException UnknownProvider(string uscc) =>
        new(Reason.UnknownProvider, $"No provider is registered with USCC {uscc}; call RegisterProvider first.");

    private static LedgerException AlreadyRegistered(string what, string key) =>
        new(Reason.AlreadyRegistered, $"The {what} {key} is already registered.");
}
