using System.Security.Cryptography;
using QuotaLedger.Client;

namespace QuotaLedger.LoadTest;

/// <summary>One unit-year under load: its unit, its contract, the grant the setup made (and that grant's request id), and
/// the unit-year's figures after it, before the run.</summary>
internal sealed record Target(int Index, string Unit, string ContractNo, long GrantId, string GrantRequestId, Fen Granted, Fen DeductedBefore, Fen GrantedOpenBefore);

/// <summary>What the setup makes: how many unit-years, the grant each gets, each contract's amount, and the pool's room
/// for the grants the run itself makes.</summary>
internal sealed record SetupPlan(int UnitYears, Fen GrantEach, Fen ContractAmount, Fen RoomForRun)
{
    /// <summary>The plan of a scenario: hot, one unit-year with a large grant; spread and mixed, many with a grant each and
    /// room on the contract for every invoice (the voucher share is half the invoice); grants, many with a small grant
    /// each and a contract large enough for tens of thousands of small grants, and a pool for a million of them.</summary>
    public static SetupPlan For(string scenario, int unitYears) => scenario switch
    {
        "hot" => new(1, Fen.FromYuan(2_000_000), Fen.FromYuan(8_000_000), Fen.FromYuan(100_000)),
        "grants" => new(unitYears, Setup.GrantAmount, Fen.FromYuan(100_000), new Fen(Setup.GrantAmount.Value * 1_000_000)),
        _ => new(unitYears, Fen.FromYuan(5_000), Fen.FromYuan(20_000), Fen.FromYuan(100_000)),
    };
}

/// <summary>Sets up, through the SDK, a provider with its own units, contracts and grants, and funds the pool for them.</summary>
internal static class Setup
{
    /// <summary>Each invoice: 200 fen, of which the voucher covers 100 (50%, self-controllable compute).</summary>
    public static readonly Fen InvoiceAmount = new(200);

    /// <summary>Each grant the run makes (grants, mixed): 100 fen.</summary>
    public static readonly Fen GrantAmount = new(100);

    private static readonly UnitMaterial[] Materials =
    [
        new(MaterialKind.ApplicationForm, "load:form"), new(MaterialKind.RegistrationCertificate, "load:certificate"),
        new(MaterialKind.IntegrityPledge, "load:pledge"), new(MaterialKind.CreditReport, "load:credit-report"),
    ];

    public static async Task<(string Provider, int Year, List<Target> Targets)> RunAsync(QuotaLedgerClient client, SetupPlan plan, int year)
    {
        var (unitYears, grantEach) = (plan.UnitYears, plan.GrantEach);
        YearPolicy policy;
        try
        {
            policy = await client.GetYearPolicyAsync(year);
        }
        catch (QuotaLedgerException)
        {
            policy = await client.SetYearPolicyAsync(new YearPolicy(year, 5_000, 3_000, 1_000, Fen.FromYuan(5_000_000), Fen.FromYuan(10_000), Fen.FromYuan(100_000_000), 1));
        }

        // The setup's grants, and room for the grants of the run.
        var needed = new Fen(grantEach.Value * unitYears) + plan.RoomForRun;
        var program = await client.GetProgramYearAsync(year);
        if (program.Pool < needed)
        {
            var room = policy.YearTotal - program.Funded;
            var fund = needed - program.Pool;
            if (fund > room)
            {
                throw new SetupException($"The {year} pool holds {program.Pool} and only {room} more may be funded; the run needs {needed}. " +
                    "Earlier runs have used this database's budget: run against a fresh one (for the no-configuration server, LocalPostgres__Database=<new name>).");
            }

            await client.FundBudgetAsync(year, fund);
        }

        var provider = NewUscc();
        await client.RegisterProviderAsync(provider, "Load test provider", ["IDC-LOAD-0001"]);
        var targets = new Target[unitYears];
        await Parallel.ForEachAsync(Enumerable.Range(0, unitYears), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, ct) =>
        {
            var unit = NewUscc();
            await client.RegisterUnitAsync(new UnitRegistration(unit, $"Load unit {i}", UnitKind.Enterprise, Materials: Materials), cancellationToken: ct);
            await client.ReviewUnitAsync(provider, unit, approve: true, cancellationToken: ct);
            var contractNo = $"LOAD-{i}";
            await client.RegisterContractAsync(new ContractTerms(contractNo, provider, unit, "Ascend 910B", true, ServiceMode.CloudInstance, new Fen(100), plan.ContractAmount,
                "load test", false, new DateOnly(year, 1, 1)), cancellationToken: ct);
            var requestId = QuotaLedgerClient.NewRequestId();
            var grant = await client.GrantAsync(provider, contractNo, grantEach, requestId, ct);
            targets[i] = new Target(i, unit, contractNo, grant.GrantId, requestId, grantEach, grant.UnitYear.Deducted, grant.UnitYear.GrantedOpen);
        });
        return (provider, year, [.. targets]);
    }

    private static string NewUscc()
    {
        const string alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";
        int[] weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
        var body = new char[17];
        body[0] = '9';
        body[1] = '1';
        for (var i = 2; i < body.Length; i++)
        {
            body[i] = alphabet[RandomNumberGenerator.GetInt32(alphabet.Length)];
        }

        var sum = body.Select((c, i) => alphabet.IndexOf(c) * weights[i]).Sum();
        return new string(body) + alphabet[(31 - (sum % 31)) % 31];
    }
}

/// <summary>The ledger cannot hold the run (its year's budget is used up, say): the load test stops with this message.</summary>
internal sealed class SetupException(string message) : Exception(message);
