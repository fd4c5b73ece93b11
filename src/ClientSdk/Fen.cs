using System.Globalization;

namespace QuotaLedger.Client;

/// <summary>An amount of money in fen (1 yuan = 100 fen), as the ledger keeps it: whole numbers, never floating point.</summary>
/// <param name="Value">The amount in fen.</param>
public readonly record struct Fen(long Value) : IComparable<Fen>
{
    /// <summary>Zero fen.</summary>
    public static readonly Fen Zero = new(0);

    /// <summary>Whether the amount is zero.</summary>
    public bool IsZero => Value == 0;

    /// <summary>Whether the amount is above zero.</summary>
    public bool IsPositive => Value > 0;

    /// <summary>Whether the amount is below zero (a shortfall, a reversal).</summary>
    public bool IsNegative => Value < 0;

    /// <summary>The amount in yuan, exactly (e.g. 1234.56).</summary>
    public decimal Yuan => Value / 100m;

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

    /// <summary>The amount with its sign turned (checked).</summary>
    public static Fen operator -(Fen a) => new(checked(-a.Value));

    /// <summary>An amount times a whole number (checked): a unit price times hours, say.</summary>
    public static Fen operator *(Fen a, long times) => new(checked(a.Value * times));

    /// <summary>An amount times a whole number (checked).</summary>
    public static Fen operator *(long times, Fen a) => a * times;

    /// <summary>The voucher share of this amount at a ratio in basis points (5,000 = 50%), rounded down to the fen, as
    /// the ledger computes a deduction's requested amount (Art 10).</summary>
    /// <param name="basisPoints">The ratio, 0 to 10,000 (a grant's <c>RatioBp</c>).</param>
    public Fen ShareAt(int basisPoints) =>
        basisPoints is >= 0 and <= Shared.VoucherShare.BasisPointsPerWhole
            ? new(Shared.VoucherShare.Of(Value, basisPoints))
            : throw new ArgumentOutOfRangeException(nameof(basisPoints), basisPoints, "A ratio is 0 to 10,000 basis points.");

    /// <summary>The smaller of two amounts.</summary>
    /// <param name="a">One amount.</param>
    /// <param name="b">The other.</param>
    public static Fen Min(Fen a, Fen b) => a <= b ? a : b;

    /// <summary>The larger of two amounts.</summary>
    /// <param name="a">One amount.</param>
    /// <param name="b">The other.</param>
    public static Fen Max(Fen a, Fen b) => a >= b ? a : b;

    /// <summary>The sum of amounts (checked).</summary>
    /// <param name="amounts">The amounts.</param>
    public static Fen Sum(IEnumerable<Fen> amounts)
    {
        var total = Zero;
        foreach (var amount in amounts)
        {
            total += amount;
        }

        return total;
    }

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
