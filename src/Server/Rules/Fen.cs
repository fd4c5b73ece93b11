namespace QuotaLedger.Server.Rules;

/// <summary>An amount of money in fen (1 yuan = 100 fen). Arithmetic is checked: overflow is a bug, never a wrap.</summary>
public readonly record struct Fen(long Value) : IComparable<Fen>
{
    /// <summary>The largest amount any single request may carry: 10 billion yuan, far above any policy figure,
    /// and small enough that amount × 10,000 basis points never overflows a long.</summary>
    public static readonly Fen MaxRequestAmount = new(1_000_000_000_000);

    public static readonly Fen Zero = new(0);

    public bool IsPositive => Value > 0;

    public static Fen operator +(Fen a, Fen b) => new(checked(a.Value + b.Value));

    public static Fen operator -(Fen a, Fen b) => new(checked(a.Value - b.Value));

    public static bool operator <(Fen a, Fen b) => a.Value < b.Value;

    public static bool operator >(Fen a, Fen b) => a.Value > b.Value;

    public static bool operator <=(Fen a, Fen b) => a.Value <= b.Value;

    public static bool operator >=(Fen a, Fen b) => a.Value >= b.Value;

    public static Fen Min(Fen a, Fen b) => a <= b ? a : b;

    public static Fen Max(Fen a, Fen b) => a >= b ? a : b;

    /// <summary>The share of this amount at a ratio in basis points, floored to the fen so rounding never favours the subsidy.</summary>
    public Fen ShareAt(BasisPoints ratio) => new(Shared.VoucherShare.Of(Value, ratio.Value));

    public int CompareTo(Fen other) => Value.CompareTo(other.Value);

    public override string ToString() => $"{Value / 100}.{Math.Abs(Value % 100):00} yuan ({Value} fen)";
}

/// <summary>A ratio in basis points: 10,000 is 100%.</summary>
public readonly record struct BasisPoints(int Value)
{
    public static BasisPoints operator +(BasisPoints a, BasisPoints b) => new(checked(a.Value + b.Value));

    public override string ToString() => $"{Value} bp";
}
