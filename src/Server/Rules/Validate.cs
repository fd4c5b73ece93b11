using System.Globalization;

namespace QuotaLedger.Server.Rules;

/// <summary>Checks of request fields, run before anything is read or written. Each failure names the field.</summary>
public static class Validate
{
    public const int MaxTextLength = 256;

    public static string RequestId(string value)
    {
        if (value.Length is < 1 or > 64 || value.Any(c => c is < '!' or > '~'))
        {
            throw new LedgerException(Reason.InvalidArgument,
                "request_id must be 1 to 64 printable ASCII characters (no spaces); send a fresh one per logical request.");
        }

        return value;
    }

    /// <summary>An optional as_of: null when unset; a time after <paramref name="now"/> is refused (the ledger does not
    /// answer for the future), and a time is read at the journal's precision (microseconds).</summary>
    public static DateTimeOffset? AsOf(Google.Protobuf.WellKnownTypes.Timestamp? asOf, DateTimeOffset now)
    {
        if (asOf is null)
        {
            return null;
        }

        DateTimeOffset value;
        try
        {
            value = asOf.ToDateTimeOffset();
        }
        catch (InvalidOperationException)
        {
            throw new LedgerException(Reason.InvalidArgument, "as_of is not a valid timestamp.");
        }

        value = Posting.Chain.ToStoredPrecision(value);
        return value <= now
            ? value
            : throw new LedgerException(Reason.InvalidArgument,
                $"as_of {value:O} is after the ledger's now ({now:O}); the ledger answers for the past and the present only.");
    }

    public static string Uscc(string value, string field)
    {
        if (!Rules.Uscc.IsValid(value))
        {
            throw new LedgerException(Reason.InvalidUscc,
                $"{field} '{Shorten(value)}' is not a valid Unified Social Credit Code: 18 characters from 0-9 A-H J-N P-R T-U W-Y with a correct check character.");
        }

        return value;
    }

    public static Fen Amount(long value, string field)
    {
        if (value <= 0 || value > Fen.MaxRequestAmount.Value)
        {
            throw new LedgerException(Reason.InvalidAmount,
                $"{field} must be a whole number of fen from 1 to {Fen.MaxRequestAmount.Value}; got {value}.");
        }

        return new Fen(value);
    }

    public static string Text(string value, string field, bool required = true, int maxLength = MaxTextLength)
    {
        if (required && string.IsNullOrWhiteSpace(value))
        {
            throw new LedgerException(Reason.InvalidArgument, $"{field} is required.");
        }

        if (value.Length > maxLength || value.Any(char.IsControl))
        {
            throw new LedgerException(Reason.InvalidArgument,
                $"{field} must be at most {maxLength} characters with no control characters.");
        }

        return value;
    }

    public static IReadOnlyList<string> TextList(IEnumerable<string> values, string field, int maxCount = 32)
    {
        var list = values.ToList();
        if (list.Count > maxCount)
        {
            throw new LedgerException(Reason.InvalidArgument, $"{field} has {list.Count} items; at most {maxCount} are accepted.");
        }

        foreach (var value in list)
        {
            Text(value, field);
        }

        return list;
    }

    public static DateOnly Date(string value, string field)
    {
        if (!DateOnly.TryParseExact(value, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date))
        {
            throw new LedgerException(Reason.InvalidArgument, $"{field} must be a calendar date YYYY-MM-DD; got '{Shorten(value)}'.");
        }

        return date;
    }

    public static int Year(int value, string field = "year")
    {
        if (value is < 2000 or > 2999)
        {
            throw new LedgerException(Reason.InvalidArgument, $"{field} must be a calendar year such as 2026; got {value}.");
        }

        return value;
    }

    /// <summary>A protobuf timestamp as an instant: seconds within 0001-01-01 to 9999-12-31 and nanos within a second,
    /// as the protobuf specification requires (a timestamp outside them cannot be a real time and no clock reads one).</summary>
    public static DateTimeOffset Instant(Google.Protobuf.WellKnownTypes.Timestamp value, string field)
    {
        const long minSeconds = -62_135_596_800; // 0001-01-01T00:00:00Z
        const long maxSeconds = 253_402_300_799; // 9999-12-31T23:59:59Z
        if (value.Seconds is < minSeconds or > maxSeconds || value.Nanos is < 0 or > 999_999_999)
        {
            throw new LedgerException(Reason.InvalidArgument,
                $"{field} must be a time from 0001-01-01 to 9999-12-31 with nanos from 0 to 999999999; got seconds {value.Seconds}, nanos {value.Nanos}.");
        }

        return value.ToDateTimeOffset();
    }

    public static long Id(long value, string field)
    {
        if (value <= 0)
        {
            throw new LedgerException(Reason.InvalidArgument, $"{field} must be a positive id; got {value}.");
        }

        return value;
    }

    /// <summary>A list's page_size: 0 takes <paramref name="whenZero"/>, more than <paramref name="max"/> is <paramref name="max"/>
    /// (AIP-158), a negative size is refused.</summary>
    public static int PageSize(int value, int whenZero, int max, string field = "page_size")
    {
        if (value < 0)
        {
            throw new LedgerException(Reason.InvalidArgument, $"{field} must be 0 (the default) or more; got {value}.");
        }

        return value == 0 ? whenZero : Math.Min(value, max);
    }

    private static string Shorten(string value) => value.Length <= 40 ? value : value[..40] + "...";
}
