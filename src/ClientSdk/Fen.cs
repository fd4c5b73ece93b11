using System.Globalization;

namespace QuotaLedger.Client;

/// <summary>An amount of money in fen (1 yuan = 100 fen), as the ledger keeps it: whole numbers, never floating point.</summary>
/// <param name="Value">The amount in fen.</param>
public readonly record struct Fen(long Value) : IComparable<Fen>
{
    /// <summary>Zero fen.</summary>
    public static readonly Fen Zero = new(0);

    /// <summary>An amount given in whole yuan.</summary>
    /// <param name="yuan">Whole yuan.</param>
    public static Fen FromYuan(long yuan) => new(checked(yuan * 100));

    /// <summary>An amount given in yuan with at most two decimals; more decimals are refused, not rounded.</summary>
    /// <param name="yuan">Yuan, e.g. 12.34m.</param>
    public static Fen FromYuan(decimal yuan)
    {
        var fen = yuan * 100;
        return fen == decimal.Truncate(fen)
            ? new Fen(checked((long)fen))
            : throw new ArgumentException($"{yuan} yuan is not a whole number of fen.", nameof(yuan));
    }

    /// <summary>Adds two amounts (checked).</summary>
    public static Fen operator +(Fen a, Fen b) => new(checked(a.Value + b.Value));

    /// <summary>Subtracts two amounts (checked).</summary>
    public static Fen operator -(Fen a, Fen b) => new(checked(a.Value - b.Value));

    /// <summary>Compares two amounts.</summary>
    public static bool operator <(Fen a, Fen b) => a.Value < b.Value;

    /// <summary>Compares two amounts.</summary>
    public static bool operator >(Fen a, Fen b) => a.Value > b.Value;

    /// <summary>Compares two amounts.</summary>
    public static bool operator <=(Fen a, Fen b) => a.Value <= b.Value;

    /// <summary>Compares two amounts.</summary>
    public static bool operator >=(Fen a, Fen b) => a.Value >= b.Value;

    /// <inheritdoc />
    public int CompareTo(Fen other) => Value.CompareTo(other.Value);

    /// <summary>The amount in yuan, e.g. "1234.56 yuan".</summary>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{(Value < 0 ? "-" : "")}{Math.Abs(Value / 100)}.{Math.Abs(Value % 100):00} yuan");
}
