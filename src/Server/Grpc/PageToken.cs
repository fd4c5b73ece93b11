using System.Buffers.Binary;
using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Grpc;

/// <summary>The opaque page_token of a list ordered by id (AIP-158): the last id a page returned, and a fingerprint of
/// the filters the page was read with, so a token sent with other filters is refused rather than answered with a
/// page of some other list. Base64url of a version byte, the id (8 bytes) and 8 bytes of SHA-256 of the filters.</summary>
internal static class PageToken
{
    private const byte Version = 1;
    private const int Length = 1 + 8 + 8;

    /// <summary>The token of the page after the one that ended with <paramref name="lastId"/>.</summary>
    public static string After(long lastId, string filters)
    {
        var bytes = new byte[Length];
        bytes[0] = Version;
        BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(1), lastId);
        Fingerprint(filters).CopyTo(bytes.AsSpan(9));
        return Base64Url.EncodeToString(bytes);
    }

    /// <summary>The last id before the page a token asks for: 0 for an empty token (the first page).</summary>
    public static long LastId(string token, string filters, string field = "page_token")
    {
        if (token.Length == 0)
        {
            return 0;
        }

        var bytes = new byte[Length + 3];
        if (!TryDecode(token, bytes, out var written) || written != Length || bytes[0] != Version
            || BinaryPrimitives.ReadInt64BigEndian(bytes.AsSpan(1)) is var lastId && lastId <= 0
            || !bytes.AsSpan(9, 8).SequenceEqual(Fingerprint(filters)))
        {
            throw new LedgerException(Reason.InvalidArgument,
                $"{field} is not a token this server issued for these filters: send the next_page_token of the previous response unchanged, with the same filters, or none for the first page.");
        }

        return lastId;
    }

    /// <summary>Base64url, refusing what is not (the decoder throws on a character outside its alphabet).</summary>
    private static bool TryDecode(string token, Span<byte> bytes, out int written)
    {
        try
        {
            return Base64Url.TryDecodeFromChars(token, bytes, out written);
        }
        catch (FormatException)
        {
            written = 0;
            return false;
        }
    }

    private static byte[] Fingerprint(string filters) => SHA256.HashData(Encoding.UTF8.GetBytes(filters))[..8];
}
