namespace QuotaLedger.Server.Rules;

/// <summary>The Unified Social Credit Code (GB 32100-2015): 18 characters, the last a check character over the first 17.</summary>
public static class Uscc
{
    public const int Length = 18;

    private const string Alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";

    private static readonly int[] s_weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

    public static bool IsValid(string? code)
    {
        if (code is null || code.Length != Length)
        {
            return false;
        }

        var expected = CheckCharacter(code.AsSpan(0, Length - 1));
        return expected is not null && expected == code[Length - 1] && Alphabet.Contains(code[Length - 1]);
    }

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

        var check = (31 - (sum % 31)) % 31;
        return Alphabet[check];
    }
}
