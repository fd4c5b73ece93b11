using System.Security.Cryptography;

namespace QuotaLedger.Server.Posting;

/// <summary>The Merkle tree hash of RFC 6962 §2.1: leaves hashed with a 0x00 prefix, nodes with 0x01, the split at the
/// largest power of two below the count. A checkpoint signs the root over its chain heads, so one head can later be
/// shown to belong to it with an inclusion proof, without the whole set.</summary>
public static class MerkleTree
{
    public static byte[] Root(IReadOnlyList<byte[]> leaves) => leaves.Count == 0 ? SHA256.HashData([]) : Node(leaves, 0, leaves.Count);

    private static byte[] Node(IReadOnlyList<byte[]> leaves, int start, int count)
    {
        if (count == 1)
        {
            return SHA256.HashData([0x00, .. leaves[start]]);
        }

        var split = 1;
        while (split * 2 < count)
        {
            split *= 2;
        }

        return SHA256.HashData([0x01, .. Node(leaves, start, split), .. Node(leaves, start + split, count - split)]);
    }
}
