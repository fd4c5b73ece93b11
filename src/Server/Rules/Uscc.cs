using QuotaLedger.Shared;

namespace QuotaLedger.Server.Rules;

/// <summary>The Unified Social Credit Code (GB 32100-2015): 18 characters, the last a check character over the first 17.
/// The rule itself is <see cref="UsccCode"/>, shared with the client SDK.</summary>
public static class Uscc
{
    public const int Length = UsccCode.Length;

    public static bool IsValid(string? code) => code is not null && UsccCode.IsValid(code);

    /// <summary>The check character for the first 17 characters, or null when one of them is outside the alphabet.</summary>
    public static char? CheckCharacter(ReadOnlySpan<char> first17) => UsccCode.CheckCharacter(first17);
}
