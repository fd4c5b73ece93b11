using System.Security.Cryptography;
using Google.Rpc;
using Grpc.Core;
using QuotaLedger.V1;

namespace QuotaLedger.Tests.Infrastructure;

public static class Ids
{
    public static string New() => Guid.NewGuid().ToString("N");
}

public static class TestUscc
{
    private const string Alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";

    /// <summary>A fresh, valid USCC (random body, correct check character), so tests never share parties.</summary>
    public static string New()
    {
        var body = new char[17];
        body[0] = '9';
        body[1] = '1';
        for (var i = 2; i < body.Length; i++)
        {
            body[i] = Alphabet[RandomNumberGenerator.GetInt32(Alphabet.Length)];
        }

        return new string(body) + Server.Rules.Uscc.CheckCharacter(body)!.Value;
    }

    /// <summary>The same code with a wrong check character.</summary>
    public static string WithBadCheck(string uscc)
    {
        var last = uscc[^1];
        var wrong = Alphabet[(Alphabet.IndexOf(last) + 1) % Alphabet.Length];
        return uscc[..^1] + wrong;
    }
}

/// <summary>A provider, an approved unit and a registered contract between them: what a grant needs.</summary>
public sealed record Deal(string Provider, string Unit, string ContractNo);

internal static class Scenario
{
    public static async Task<string> NewProviderAsync(this LedgerServer server)
    {
        var uscc = TestUscc.New();
        await server.Registry.RegisterProviderAsync(new RegisterProviderRequest
        {
            RequestId = Ids.New(),
            ProviderUscc = uscc,
            Name = "Test compute provider",
            Licences = { "IDC-B1-20260001" },
        });
        return uscc;
    }

    public static async Task<string> NewUnitAsync(this LedgerServer server, bool sme = false, UnitKind kind = UnitKind.Enterprise)
    {
        var uscc = TestUscc.New();
        await server.Registry.RegisterUnitAsync(new RegisterUnitRequest
        {
            RequestId = Ids.New(),
            UnitUscc = uscc,
            Name = "Test AI company",
            Kind = kind,
            Sme = sme,
            Materials = { Materials(sme) },
        });
        return uscc;
    }

    /// <summary>The Art 7 materials a unit registers with: the four every unit files, and the SME declaration for an SME.</summary>
    public static IEnumerable<Material> Materials(bool sme = false) =>
        new[] { MaterialKind.ApplicationForm, MaterialKind.RegistrationCertificate, MaterialKind.IntegrityPledge, MaterialKind.CreditReport }
            .Concat(sme ? [MaterialKind.SmeDeclaration] : [])
            .Select(kind => new Material { Kind = kind, Reference = $"docs/{kind}.pdf" });

    /// <summary>An OPC community operator the bureau has confirmed, approved by the provider.</summary>
    public static async Task<string> NewConfirmedOperatorAsync(this LedgerServer server, string provider)
    {
        var opc = await server.NewUnitAsync(kind: UnitKind.OpcOperator);
        await server.ApproveAsync(provider, opc);
        await server.Registry.ConfirmOpcOperatorAsync(new ConfirmOpcOperatorRequest { RequestId = Ids.New(), OperatorUscc = opc, Confirm = true, Reason = "site visit done" });
        return opc;
    }

    /// <summary>A resident the operator declares and the bureau confirms, approved by the provider.</summary>
    public static async Task<string> NewConfirmedResidentAsync(this LedgerServer server, string provider, string opc)
    {
        var resident = await server.NewUnitAsync();
        await server.ApproveAsync(provider, resident);
        await server.Registry.AddResidentOpcAsync(new AddResidentOpcRequest { RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = resident });
        await server.Registry.ConfirmResidentOpcAsync(new ConfirmResidentOpcRequest
        {
            RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = resident, Confirm = true, Reason = "residency contract seen",
        });
        return resident;
    }

    public static Task ApproveAsync(this LedgerServer server, string provider, string unit, bool approve = true) =>
        server.Registry.ReviewUnitAsync(new ReviewUnitRequest
        {
            RequestId = Ids.New(),
            ProviderUscc = provider,
            UnitUscc = unit,
            Approve = approve,
            Reason = approve ? "materials complete" : "credit report missing",
        }).ResponseAsync;

    public static async Task<string> NewContractAsync(this LedgerServer server, string provider, string unit,
        long amountFen = 100_000_000, bool selfControllable = true, bool usesInnovationVoucher = false)
    {
        var contractNo = "C-" + Ids.New()[..12];
        await server.Registry.RegisterContractAsync(new RegisterContractRequest
        {
            RequestId = Ids.New(),
            ContractNo = contractNo,
            ProviderUscc = provider,
            UnitUscc = unit,
            Accelerator = selfControllable ? "Ascend 910B" : "H100",
            SelfControllable = selfControllable,
            ServiceMode = ServiceMode.BareMetal,
            UnitPriceFen = 2_500,
            AmountFen = amountFen,
            Purpose = "model training",
            UsesInnovationVoucher = usesInnovationVoucher,
            SignedOn = "2026-02-01",
        });
        return contractNo;
    }

    public static async Task<Deal> NewDealAsync(this LedgerServer server,
        long contractAmountFen = 100_000_000, bool selfControllable = true, bool sme = false)
    {
        var provider = await server.NewProviderAsync();
        var unit = await server.NewUnitAsync(sme);
        await server.ApproveAsync(provider, unit);
        var contractNo = await server.NewContractAsync(provider, unit, contractAmountFen, selfControllable);
        return new Deal(provider, unit, contractNo);
    }

    public static GrantRequest GrantRequest(this Deal deal, long amountFen) => new()
    {
        RequestId = Ids.New(),
        ProviderUscc = deal.Provider,
        ContractNo = deal.ContractNo,
        AmountFen = amountFen,
    };

    public static Task<GrantResponse> GrantAsync(this LedgerServer server, Deal deal, long amountFen) =>
        server.Ledger.GrantAsync(deal.GrantRequest(amountFen)).ResponseAsync;

    public static DeductRequest DeductRequest(this Deal deal, long grantId, long invoiceAmountFen, string? invoiceNo = null, string invoiceDate = "2026-06-01") => new()
    {
        RequestId = Ids.New(),
        ProviderUscc = deal.Provider,
        GrantId = grantId,
        InvoiceNo = invoiceNo ?? "INV-" + Ids.New()[..16],
        InvoiceAmountFen = invoiceAmountFen,
        InvoiceDate = invoiceDate,
    };

    /// <summary>A deduction of an invoice dated the server's today (China time).</summary>
    public static Task<DeductResponse> DeductAsync(this LedgerServer server, Deal deal, long grantId, long invoiceAmountFen, string? invoiceNo = null) =>
        server.Ledger.DeductAsync(deal.DeductRequest(grantId, invoiceAmountFen, invoiceNo, server.Today())).ResponseAsync;

    /// <summary>The server's day in China time, as an invoice date.</summary>
    public static string Today(this LedgerServer server) =>
        server.Clock.GetUtcNow().ToOffset(TimeSpan.FromHours(8)).ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Sets a policy for a year of the test's own, with small figures, and funds its pool.</summary>
    public static async Task SetSmallYearAsync(this LedgerServer server, int year, long capFen, long totalFen, long fundFen)
    {
        await server.Admin.SetYearPolicyAsync(new SetYearPolicyRequest
        {
            RequestId = Ids.New(),
            Year = year,
            SelfControllableRatioBp = 5_000,
            OtherRatioBp = 3_000,
            SmeBonusBp = 1_000,
            UnitYearCapFen = capFen,
            UnitYearFloorFen = 0,
            YearTotalFen = totalFen,
            ValidityMonths = 1,
        });
        if (fundFen > 0)
        {
            await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = year, AmountFen = fundFen });
        }
    }
}

internal static class Refusal
{
    /// <summary>Asserts the call fails with the status and reason word of the API contract, in an ErrorInfo of the
    /// quotaledger.v1 domain, with a message a person can act on.</summary>
    public static async Task<RpcException> AssertAsync(Func<Task> call, StatusCode status, string reason)
    {
        var error = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(status, error.StatusCode);
        var info = error.GetRpcStatus()?.GetDetail<ErrorInfo>();
        Assert.NotNull(info);
        Assert.Equal(reason, info.Reason);
        Assert.Equal("quotaledger.v1", info.Domain);
        Assert.False(string.IsNullOrWhiteSpace(error.Status.Detail));
        return error;
    }

    public static string ReasonOf(RpcException error) => error.GetRpcStatus()?.GetDetail<ErrorInfo>()?.Reason ?? "";

    /// <summary>The ErrorInfo's metadata: what the refusal names (empty when it names nothing).</summary>
    public static IReadOnlyDictionary<string, string> MetadataOf(RpcException error) =>
        error.GetRpcStatus()?.GetDetail<ErrorInfo>()?.Metadata.ToDictionary() ?? [];

    /// <summary>The metadata a DUPLICATE_INVOICE refusal carries: the deduction that took the invoice.</summary>
    public static Dictionary<string, string> DuplicateOf(long deductionId, long grantId, string invoiceNo) => new()
    {
        ["deductionId"] = deductionId.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["grantId"] = grantId.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["invoiceNo"] = invoiceNo,
    };
}
