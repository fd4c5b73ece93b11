using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;
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
        var licences = Validate.TextList(request.Licences, "licences");

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
        var materials = Validate.TextList(request.MaterialRefs, "material_refs");

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
                MaterialRefs = [.. materials],
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
            return await LoadUnit(unit, ct);
        }, context.CancellationToken);
    }

    public override Task<Contract> RegisterContract(RegisterContractRequest request, ServerCallContext context)
    {
        var caller = Access.RequireSelf(context, Role.Provider, request.ProviderUscc, orBureau: true);
        var contractNo = Validate.Text(request.ContractNo, "contract_no", maxLength: 64);
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var unit = Validate.Uscc(request.UnitUscc, "unit_uscc");
        var accelerator = Validate.Text(request.Accelerator, "accelerator");
        var serviceMode = Validate.Text(request.ServiceMode, "service_mode", required: false);
        var unitPrice = Validate.Amount(request.UnitPriceFen, "unit_price_fen");
        var amount = Validate.Amount(request.AmountFen, "amount_fen");
        var purpose = Validate.Text(request.Purpose, "purpose");
        var signedOn = Validate.Date(request.SignedOn, "signed_on");

        return idempotency.RunAsync(caller.ScopeFor(Callers.Provider(provider)), request.RequestId, nameof(RegisterContract), request, async ct =>
        {
            await EnsureProvider(provider, ct);
            await EnsureUnit(unit, ct);
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
            var now = time.GetUtcNow();
            // Declaring again keeps the first declaration; the relation is what matters.
            await db.Database.ExecuteSqlAsync(
                $"""
                INSERT INTO related_parties (provider_uscc, unit_uscc, reason, declared_at)
                VALUES ({provider}, {unit}, {reason}, {now})
                ON CONFLICT DO NOTHING
                """, ct);
            var row = await db.RelatedParties.AsNoTracking().SingleAsync(r => r.ProviderUscc == provider && r.UnitUscc == unit, ct);
            return new DeclareRelatedPartyResponse
            {
                ProviderUscc = provider,
                UnitUscc = unit,
                Reason = row.Reason,
                DeclaredAt = row.DeclaredAt.ToTimestamp(),
            };
        }, context.CancellationToken);
    }

    public override Task<AddResidentOpcResponse> AddResidentOpc(AddResidentOpcRequest request, ServerCallContext context)
    {
        var caller = Access.RequireSelf(context, Role.Unit, request.OperatorUscc, orBureau: true);
        var operatorUscc = Validate.Uscc(request.OperatorUscc, "operator_uscc");
        var resident = Validate.Uscc(request.ResidentUscc, "resident_uscc");
        if (operatorUscc == resident)
        {
            throw new LedgerException(Reason.InvalidArgument, "An OPC community operator cannot be its own resident.");
        }

        return idempotency.RunAsync(caller.ScopeFor(Callers.Unit(operatorUscc)), request.RequestId, nameof(AddResidentOpc), request, async ct =>
        {
            await EnsureUnit(operatorUscc, ct);
            await EnsureUnit(resident, ct);
            if (await db.Units.Where(u => u.Uscc == operatorUscc).Select(u => u.Kind).SingleAsync(ct) != UnitKind.OpcOperator)
            {
                throw new LedgerException(Reason.InvalidArgument, $"Unit {operatorUscc} is not registered as an OPC_OPERATOR, so it keeps no list of residents.");
            }

            await db.Database.ExecuteSqlAsync(
                $"""
                INSERT INTO opc_residents (operator_uscc, resident_uscc, added_at)
                VALUES ({operatorUscc}, {resident}, {time.GetUtcNow()})
                ON CONFLICT DO NOTHING
                """, ct);
            var residents = await db.OpcResidents.AsNoTracking()
                .Where(r => r.OperatorUscc == operatorUscc)
                .OrderBy(r => r.ResidentUscc)
                .Select(r => r.ResidentUscc)
                .ToListAsync(ct);
            return new AddResidentOpcResponse { OperatorUscc = operatorUscc, ResidentUsccs = { residents } };
        }, context.CancellationToken);
    }

    public override async Task<Unit> GetUnit(GetUnitRequest request, ServerCallContext context)
    {
        // Providers read the units they review; a unit reads itself.
        if (Access.CallerOf(context) is var caller && !Access.ReadsAll(caller) && !caller.Has(Role.Provider))
        {
            Access.RequireSelf(context, Role.Unit, request.UnitUscc);
        }

        var uscc = Validate.Uscc(request.UnitUscc, "unit_uscc");
        await EnsureUnit(uscc, context.CancellationToken);
        return await LoadUnit(uscc, context.CancellationToken);
    }

    public override async Task<Provider> GetProvider(GetProviderRequest request, ServerCallContext context)
    {
        var uscc = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var row = await db.Providers.AsNoTracking().SingleOrDefaultAsync(p => p.Uscc == uscc, context.CancellationToken)
            ?? throw UnknownProvider(uscc);
        return row.ToApi();
    }

    public override async Task<Contract> GetContract(GetContractRequest request, ServerCallContext context)
    {
        var provider = Validate.Uscc(request.ProviderUscc, "provider_uscc");
        var contractNo = Validate.Text(request.ContractNo, "contract_no", maxLength: 64);
        var row = await db.Contracts.AsNoTracking()
            .SingleOrDefaultAsync(c => c.ProviderUscc == provider && c.ContractNo == contractNo, context.CancellationToken)
            ?? throw new LedgerException(Reason.UnknownContract, $"Provider {provider} has no contract '{contractNo}'.");
        Access.EnsureParty(Access.CallerOf(context), row.ProviderUscc, row.UnitUscc);
        return row.ToApi();
    }

    private async Task<Unit> LoadUnit(string uscc, CancellationToken ct)
    {
        var row = await db.Units.AsNoTracking().SingleAsync(u => u.Uscc == uscc, ct);
        var reviews = await db.UnitReviews.AsNoTracking()
            .Where(r => r.UnitUscc == uscc)
            .GroupBy(r => r.ProviderUscc)
            .Select(g => g.OrderByDescending(r => r.Id).First())
            .ToListAsync(ct);

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
        };
        unit.Reviews.AddRange(reviews.OrderBy(r => r.ProviderUscc, StringComparer.Ordinal).Select(r => new UnitReview
        {
            ProviderUscc = r.ProviderUscc,
            Approved = r.Approved,
            Reason = r.Reason,
            ReviewedAt = r.ReviewedAt.ToTimestamp(),
        }));
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

    private static LedgerException UnknownProvider(string uscc) =>
        new(Reason.UnknownProvider, $"No provider is registered with USCC {uscc}; call RegisterProvider first.");

    private static LedgerException AlreadyRegistered(string what, string key) =>
        new(Reason.AlreadyRegistered, $"The {what} {key} is already registered.");
}
