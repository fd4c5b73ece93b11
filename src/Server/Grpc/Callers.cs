namespace QuotaLedger.Server.Grpc;

/// <summary>Who a call is made by, for scoping request ids. Until callers authenticate, a call is taken to be made by
/// the party acting in it: the bureau for admin calls, the provider for its grants, deductions, reviews and
/// contracts, the unit for its own registration.</summary>
public static class Callers
{
    public const string Bureau = "bureau";

    /// <summary>The server's own background expiry pass.</summary>
    public const string ExpiryPass = "system:expiry";

    public static string Provider(string uscc) => "provider:" + uscc;

    public static string Unit(string uscc) => "unit:" + uscc;
}
