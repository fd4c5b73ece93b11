using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

public sealed class RegistryTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private readonly LedgerServer _server = fixture.Server;

    [Theory]
    [InlineData("91350100M000100Y43", true)]
    [InlineData("91110000600037341L", true)]
    [InlineData("91440300708461136T", true)]
    [InlineData("91350100M000100Y44", false)]
    [InlineData("91350100M000100Y4", false)]
    [InlineData("91350100m000100Y43", false)]
    [InlineData("9135010OM000100Y43", false)]
    [InlineData("", false)]
    public void Uscc_check_character_follows_GB_32100(string code, bool valid) =>
        Assert.Equal(valid, Server.Rules.Uscc.IsValid(code));

    [Fact]
    public async Task RegisterProvider_refuses_a_bad_check_character_and_stores_nothing()
    {
        var bad = TestUscc.WithBadCheck(TestUscc.New());
        await Refusal.AssertAsync(() => _server.Registry.RegisterProviderAsync(new RegisterProviderRequest
        {
            RequestId = Ids.New(), ProviderUscc = bad, Name = "Bad code",
        }).ResponseAsync, StatusCode.InvalidArgument, "INVALID_USCC");

        await Refusal.AssertAsync(() => _server.Registry.GetProviderAsync(new GetProviderRequest { ProviderUscc = bad }).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_USCC");
        await Refusal.AssertAsync(() => _server.Registry.GetProviderAsync(new GetProviderRequest { ProviderUscc = TestUscc.New() }).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_PROVIDER");
    }

    [Fact]
    public async Task Registering_a_party_twice_answers_ALREADY_REGISTERED_and_a_retry_gets_the_first_response()
    {
        var request = new RegisterUnitRequest
        {
            RequestId = Ids.New(), UnitUscc = TestUscc.New(), Name = "Sichuan AI Startup", Kind = UnitKind.Enterprise, Sme = true,
            Materials = { Scenario.Materials(sme: true) },
        };
        var first = await _server.Registry.RegisterUnitAsync(request);
        var retry = await _server.Registry.RegisterUnitAsync(request);
        Assert.Equal(first, retry);

        var again = request.Clone();
        again.RequestId = Ids.New();
        await Refusal.AssertAsync(() => _server.Registry.RegisterUnitAsync(again).ResponseAsync, StatusCode.AlreadyExists, "ALREADY_REGISTERED");

        var unit = await _server.Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = request.UnitUscc });
        Assert.Equal("Sichuan AI Startup", unit.Name);
        Assert.True(unit.Sme);
        Assert.False(unit.Approved);
    }

    [Fact]
    public async Task ReviewUnit_records_each_providers_latest_review()
    {
        var providerA = await _server.NewProviderAsync();
        var providerB = await _server.NewProviderAsync();
        var unit = await _server.NewUnitAsync();

        await _server.ApproveAsync(providerA, unit, approve: false);
        var afterRejection = await _server.Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = unit });
        Assert.False(afterRejection.Approved);

        await _server.ApproveAsync(providerA, unit);
        await _server.ApproveAsync(providerB, unit, approve: false);
        var reviewed = await _server.Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = unit });
        Assert.True(reviewed.Approved);
        Assert.Equal(2, reviewed.Reviews.Count);
        Assert.True(reviewed.Reviews.Single(r => r.ProviderUscc == providerA).Approved);
        Assert.False(reviewed.Reviews.Single(r => r.ProviderUscc == providerB).Approved);

        await Refusal.AssertAsync(() => _server.ApproveAsync(TestUscc.New(), unit), StatusCode.NotFound, "UNKNOWN_PROVIDER");
        await Refusal.AssertAsync(() => _server.ApproveAsync(providerA, TestUscc.New()), StatusCode.NotFound, "UNKNOWN_UNIT");
    }

    [Fact]
    public async Task RegisterContract_checks_its_parties_fields_and_number()
    {
        var provider = await _server.NewProviderAsync();
        var unit = await _server.NewUnitAsync();
        var request = new RegisterContractRequest
        {
            RequestId = Ids.New(), ContractNo = "HT-2026-" + Ids.New()[..8], ProviderUscc = provider, UnitUscc = unit,
            Accelerator = "Ascend 910B", SelfControllable = true, ServiceMode = ServiceMode.CloudInstance, UnitPriceFen = 1_800,
            AmountFen = 12_345_600, Purpose = "LLM fine-tuning", SignedOn = "2026-02-14",
        };

        await Refusal.AssertAsync(() => _server.Registry.RegisterContractAsync(With(request, r => r.AmountFen = 0)).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_AMOUNT");
        await Refusal.AssertAsync(() => _server.Registry.RegisterContractAsync(With(request, r => r.SignedOn = "14/02/2026")).ResponseAsync,
            StatusCode.InvalidArgument, "INVALID_ARGUMENT");
        await Refusal.AssertAsync(() => _server.Registry.RegisterContractAsync(With(request, r => r.UnitUscc = TestUscc.New())).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_UNIT");
        await Refusal.AssertAsync(() => _server.Registry.RegisterContractAsync(With(request, r => r.ProviderUscc = TestUscc.New())).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_PROVIDER");

        var contract = await _server.Registry.RegisterContractAsync(request);
        Assert.Equal(12_345_600, contract.AmountFen);
        Assert.Equal("2026-02-14", contract.SignedOn);

        await Refusal.AssertAsync(() => _server.Registry.RegisterContractAsync(With(request, _ => { })).ResponseAsync,
            StatusCode.AlreadyExists, "ALREADY_REGISTERED");
        var read = await _server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = provider, ContractNo = request.ContractNo });
        Assert.Equal(contract, read);
        await Refusal.AssertAsync(() => _server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = provider, ContractNo = "nope" }).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_CONTRACT");
    }

    private static RegisterContractRequest With(RegisterContractRequest request, Action<RegisterContractRequest> change)
    {
        var copy = request.Clone();
        copy.RequestId = Ids.New();
        change(copy);
        return copy;
    }
}
