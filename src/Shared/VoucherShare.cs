namespace QuotaLedger.Shared;

/// <summary>The voucher share of an amount at a ratio in basis points, rounded down to the fen (Art 10): the rule the
/// server deducts by and the SDK's <c>Fen.ShareAt</c> previews with. Computed in 128 bits, so no amount overflows.</summary>
internal static class VoucherShare
{
    public const int BasisPointsPerWhole = 10_000;

    public static long Of(long fen, int basisPoints) => checked((long)((Int128)fen * basisPoints / BasisPointsPerWhole));
}
