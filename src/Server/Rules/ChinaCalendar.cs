namespace QuotaLedger.Server.Rules;

/// <summary>Policy years and months are calendar periods in China Standard Time (POLICY.md, Decision).</summary>
public static class ChinaCalendar
{
    /// <summary>The IANA zone of China Standard Time, as PostgreSQL and .NET name it.</summary>
    public const string ZoneId = "Asia/Shanghai";

    private static readonly TimeZoneInfo s_zone = FindZone();

    public static DateTimeOffset ToChinaTime(DateTimeOffset instant) => TimeZoneInfo.ConvertTime(instant, s_zone);

    public static int YearOf(DateTimeOffset instant) => ToChinaTime(instant).Year;

    public static DateOnly DateOf(DateTimeOffset instant) => DateOnly.FromDateTime(ToChinaTime(instant).DateTime);

    /// <summary>The instant <paramref name="months"/> calendar months later in China time, clamped to the month's end.</summary>
    public static DateTimeOffset AddMonths(DateTimeOffset instant, int months) =>
        ToChinaTime(instant).AddMonths(months).ToUniversalTime();

    /// <summary>The instant a calendar month begins in China time (month 13 is January of the next year).</summary>
    public static DateTimeOffset StartOfMonth(int year, int month)
    {
        var local = month == 13 ? new DateTime(year + 1, 1, 1) : new DateTime(year, month, 1);
        return new DateTimeOffset(local, s_zone.GetUtcOffset(local)).ToUniversalTime();
    }

    private static TimeZoneInfo FindZone()
    {
        try
        {
            return TimeZoneInfo.FindSystemTimeZoneById(ZoneId);
        }
        catch (TimeZoneNotFoundException)
        {
            // China has kept UTC+8 without daylight saving since 1991.
            return TimeZoneInfo.CreateCustomTimeZone("China Standard Time", TimeSpan.FromHours(8), "China Standard Time", "CST");
        }
    }
}
