using QuotaLedger.Server.Grpc;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The protobuf JSON mapping checked strictly (<see cref="StrictJson"/>), as a table: a pure function of a
/// message's descriptor and the text, no server and no database.</summary>
public sealed class StrictJsonTests
{
    [Theory]
    [InlineData("""{"requestId":"r","amountFen":"1000","dryRun":true}""", null, null)]
    [InlineData("""{"request_id":"r","amount_fen":1000,"dry_run":false}""", null, null)]
    [InlineData("""{"requestId":null,"amountFen":"-5"}""", null, null)]
    [InlineData("""{}""", null, null)]
    [InlineData("""{"dryrun":true}""", "dryrun", "unknown field")]
    [InlineData("""{"DryRun":true}""", "DryRun", "unknown field")]
    [InlineData("""{"amountFen":"1e3"}""", "amountFen", "must be an integer")]
    [InlineData("""{"amountFen":" 12"}""", "amountFen", "must be an integer")]
    [InlineData("""{"amountFen":"9223372036854775807"}""", null, null)]
    [InlineData("""{"amountFen":-9223372036854775809}""", "amountFen", "out of range for int64")]
    [InlineData("""{"requestId":["r"]}""", "requestId", "must be a string")]
    [InlineData("""{"requestId":"r" "amountFen":1}""", "", "not valid JSON")]
    [InlineData("", "", "not valid JSON")]
    [InlineData("""null""", "", "must be a JSON object")]
    public void A_grant_request_body_is_checked_against_the_mapping(string body, string? field, string? problem)
    {
        var found = StrictJson.CheckBody(System.Text.Encoding.UTF8.GetBytes(body), GrantRequest.Descriptor);
        if (field is null)
        {
            Assert.Null(found);
            return;
        }

        Assert.NotNull(found);
        Assert.Equal(field, found.Field);
        Assert.Contains(problem!, found.Problem, StringComparison.Ordinal);
    }
}
