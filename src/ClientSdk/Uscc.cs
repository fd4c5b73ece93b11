using System.Diagnostics.CodeAnalysis;
using QuotaLedger.Shared;

namespace QuotaLedger.Client;

/// <summary>A Unified Social Credit Code (GB 32100-2015): 18 characters, the last a check character over the first 17,
/// checked by the same rule the server applies, so a typo is caught before a call is made. Every method that takes a
/// USCC as a string takes a <see cref="Uscc"/> too (it converts to its string).</summary>
public readonly record struct Uscc : IParsable<Uscc>
{
    private readonly string? _value;

    private Uscc(string value) => _value = value;

    /// <summary>The 18 characters.</summary>
    public string Value => _value ?? throw new InvalidOperationException("A default Uscc holds no code.");

    /// <summary>A USCC from its 18 characters (upper case); refuses one whose check character does not match.</summary>
    /// <param name="code">The code.</param>
    /// <param name="provider">Not used.</param>
    public static Uscc Parse(string code, IFormatProvider? provider = null) =>
        TryParse(code, provider, out var uscc)
            ? uscc
            : throw new FormatException($"'{code}' is not a valid USCC: 18 characters of 0-9 and A-Y without I, O, S, V, Z, the last a check character over the first 17 (GB 32100-2015).");

    /// <summary>Reads a USCC, or says it is not one.</summary>
    /// <param name="code">The code.</param>
    /// <param name="provider">Not used.</param>
    /// <param name="result">The USCC, when valid.</param>
    public static bool TryParse([NotNullWhen(true)] string? code, IFormatProvider? provider, out Uscc result)
    {
        result = code is not null && UsccCode.IsValid(code) ? new Uscc(code) : default;
        return result._value is not null;
    }

    /// <summary>Whether <paramref name="code"/> is a valid USCC.</summary>
    /// <param name="code">The code.</param>
    public static bool IsValid([NotNullWhen(true)] string? code) => code is not null && UsccCode.IsValid(code);

    /// <summary>The USCC whose first 17 characters are given, with its check character computed.</summary>
    /// <param name="first17">The registration authority, area and organisation characters.</param>
    public static Uscc FromFirst17(string first17) =>
        UsccCode.CheckCharacter(first17) is { } check
            ? new Uscc(first17 + check)
            : throw new FormatException($"'{first17}' is not 17 characters of the USCC alphabet.");

    /// <summary>The code's 18 characters.</summary>
    /// <param name="uscc">The USCC.</param>
    public static implicit operator string(Uscc uscc) => uscc.Value;

    /// <inheritdoc />
    public override string ToString() => _value ?? "";
}
