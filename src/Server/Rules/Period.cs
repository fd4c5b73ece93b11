using System.Globalization;

namespace QuotaLedger.Server.Rules;

/// <summary>A calendar month (1-12) or, with month 0, a calendar year, in China time: the periods the ledger closes.
/// An entry is inside a period when <see cref="StartsAt"/> &lt;= its created_at &lt; <see cref="EndsAt"/>.</summary>
public readonly record struct Period(int Year, int Month)
{
    public bool IsYear => Month == 0;

    public DateTimeOffset StartsAt => ChinaCalendar.StartOfMonth(Year, IsYear ? 1 : Month);

    public DateTimeOffset EndsAt => ChinaCalendar.StartOfMonth(Year, IsYear ? 13 : Month + 1);

    /// <summary>The period's last instant at the journal's precision (a microsecond before its end): an as-of read at it
    /// reads exactly the entries inside the period and before it.</summary>
    public DateTimeOffset LastInstant => EndsAt.AddTicks(-10);

    /// <summary>The month before a month; for a year, its first month's predecessor (December of the year before).</summary>
    public Period PreviousMonth => IsYear || Month == 1 ? new(Year - 1, 12) : new(Year, Month - 1);

    /// <summary>The month after a month.</summary>
    public Period NextMonth => Month == 12 ? new(Year + 1, 1) : new(Year, Month + 1);

    /// <summary>A month or year from a request's fields: INVALID_ARGUMENT for a month outside 0-12.</summary>
    public static Period Of(int year, int month)
    {
        Validate.Year(year);
        return month is >= 0 and <= 12
            ? new Period(year, month)
            : throw new LedgerException(Reason.InvalidArgument, $"month must be 1-12, or 0 for the year; got {month}.");
    }

    /// <summary>The month an instant falls in, in China time.</summary>
    public static Period MonthOf(DateTimeOffset instant)
    {
        var local = ChinaCalendar.ToChinaTime(instant);
        return new Period(local.Year, local.Month);
    }

    public override string ToString() =>
        IsYear ? Year.ToString(CultureInfo.InvariantCulture) : string.Create(CultureInfo.InvariantCulture, $"{Year:D4}-{Month:D2}");
}
