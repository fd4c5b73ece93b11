namespace QuotaLedger.Shared;

/// <summary>The Unified Social Credit Code's rule (GB 32100-2015): 18 characters of a 31-character alphabet, the last a
/// check character over the first 17. One source file, compiled into the server (which refuses a bad code with
/// INVALID_USCC) and into the client SDK (whose <c>Uscc</c> type refuses it before a call is made).</summary>
internal static class UsccCode
{
    public const int Length = 18;

    private const string Alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";

    private static readonly int[] s_weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

    public static bool IsValid(ReadOnlySpan<char> code) =>
        code.Length == Length && CheckCharacter(code[..(Length - 1)]) is { } expected && expected == code[Length - 1];

    /// <summary>The check character for the first 17 characters, or null when one of them is outside the alphabet.</summary>
    public static char? CheckCharacter(ReadOnlySpan<char> first17)
    {
        if (first17.Length != Length - 1)
        {
            return null;
        }

        var sum = 0;
        for (var i = 0; i < first17.Length; i++)
        {
            var value = Alphabet.IndexOf(first17[i]);
            if (value < 0)
            {
                return null;
            }

            sum += value * s_weights[i];
        }

        return Alphabet[(31 - (sum % 31)) % 31];
    }
}
