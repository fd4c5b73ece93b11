using System.Text.RegularExpressions;
using Grpc.Core;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>API.md's reasons for a gift, as the protos' comments state them and the server answers them: a giver that
/// is not a bureau-confirmed OPC operator may transfer nothing (NOT_TRANSFERABLE); a confirmed operator gives only to a
/// resident confirmed on its list (NOT_RESIDENT).</summary>
public sealed partial class GiftReasonTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task A_gift_from_an_unconfirmed_operator_answers_NOT_TRANSFERABLE_as_ledger_proto_says()
    {
        var comment = GiftComment();
        Assert.Matches(UnconfirmedOperatorIsNotTransferable(), comment);
        Assert.DoesNotMatch(OperatorStatusIsNotResident(), comment);
        Assert.Matches(UnconfirmedResidentIsNotResident(), comment);

        var server = fixture.Server;
        var provider = await server.NewProviderAsync();
        var opc = await server.NewUnitAsync(kind: UnitKind.OpcOperator);
        var resident = await server.NewUnitAsync();
        await server.ApproveAsync(provider, opc);
        await server.ApproveAsync(provider, resident);
        var grant = await server.GrantAsync(new Deal(provider, opc, await server.NewContractAsync(provider, opc)), 10_000);
        await server.Registry.AddResidentOpcAsync(new AddResidentOpcRequest { RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = resident });
        await server.Registry.ConfirmResidentOpcAsync(new ConfirmResidentOpcRequest
        {
            RequestId = Ids.New(), OperatorUscc = opc, ResidentUscc = resident, Confirm = true, Reason = "lease seen",
        });

        // The residency is confirmed, the operator is not: nothing may be transferred.
        await Refusal.AssertAsync(() => Gift(opc, grant.GrantId, resident), StatusCode.FailedPrecondition, "NOT_TRANSFERABLE");
        await server.Registry.ConfirmOpcOperatorAsync(new ConfirmOpcOperatorRequest { RequestId = Ids.New(), OperatorUscc = opc, Confirm = true, Reason = "verified" });
        Assert.Equal(1_000, (await Gift(opc, grant.GrantId, resident)).Grant.AmountFen);
    }

    private Task<GiftResponse> Gift(string opc, long grantId, string resident) =>
        fixture.Server.Ledger.GiftAsync(new GiftRequest { RequestId = Ids.New(), OperatorUscc = opc, GrantId = grantId, ResidentUscc = resident, AmountFen = 1_000 }).ResponseAsync;

    /// <summary>The comment above <c>rpc Gift</c> in ledger.proto, as one line.</summary>
    private static string GiftComment()
    {
        var lines = File.ReadAllLines(Path.Combine(PackageTests.RepositoryRoot(), "protos", "quotaledger", "v1", "ledger.proto"));
        var rpc = Array.FindIndex(lines, l => l.TrimStart().StartsWith("rpc Gift(", StringComparison.Ordinal));
        var first = rpc;
        while (first > 0 && lines[first - 1].TrimStart().StartsWith("//", StringComparison.Ordinal))
        {
            first--;
        }

        return string.Join(' ', lines[first..rpc].Select(l => l.Trim().TrimStart('/').Trim()));
    }

    [GeneratedRegex(@"operator the bureau has confirmed[^.]*\(NOT_TRANSFERABLE")]
    private static partial Regex UnconfirmedOperatorIsNotTransferable();

    [GeneratedRegex(@"operator's status[^.]*NOT_RESIDENT")]
    private static partial Regex OperatorStatusIsNotResident();

    [GeneratedRegex(@"resident confirmed[^.]*\(NOT_RESIDENT")]
    private static partial Regex UnconfirmedResidentIsNotResident();
}
