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
            MaterialRefs = { "application-form", "integrity-pledge" },
        });
        return uscc;
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
            ServiceMode = "bare-metal rental",
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

    public static DeductRequest DeductRequest(this Deal deal, long grantId, long invoiceAmountFen, string? invoiceNo = null) => new()
    {
        RequestId = Ids.New(),
        ProviderUscc = deal.Provider,
        GrantId = grantId,
        InvoiceNo = invoiceNo ?? "INV-" + Ids.New()[..16],
        InvoiceAmountFen = invoiceAmountFen,
        InvoiceDate = "2026-03-01",
    };

    public static Task<DeductResponse> DeductAsync(this LedgerServer server, Deal deal, long grantId, long invoiceAmountFen, string? invoiceNo = null) =>
        server.Ledger.DeductAsync(deal.DeductRequest(grantId, invoiceAmountFen, invoiceNo)).ResponseAsync;

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
}
