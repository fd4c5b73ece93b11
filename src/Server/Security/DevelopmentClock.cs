using System.Globalization;

namespace QuotaLedger.Server.Security;

/// <summary>A development server's clock set to start at another instant (<c>Development:ClockStartsAt</c>) and run on
/// from it in real time: how a benchmark fills a month that has ended and then closes it, on a server it runs as a user
/// would. Development mode only; a server outside it with the setting refuses to start.</summary>
public sealed class DevelopmentClock(DateTimeOffset startsAt, TimeProvider real) : TimeProvider
{
    private readonly long _started = real.GetTimestamp();

    public const string Setting = "Development:ClockStartsAt";

    public override DateTimeOffset GetUtcNow() => startsAt.ToUniversalTime() + real.GetElapsedTime(_started);

    public override long GetTimestamp() => real.GetTimestamp();

    public override long TimestampFrequency => real.TimestampFrequency;

    public override TimeZoneInfo LocalTimeZone => real.LocalTimeZone;

    /// <summary>The shifted clock when the setting is given (in development only), or null.</summary>
    public static DevelopmentClock? From(IConfiguration configuration, bool development)
    {
        if (configuration[Setting] is not { Length: > 0 } value)
        {
            return null;
        }

        if (!development)
        {
            throw new StartupRefusedException($"{Setting} sets the server's clock, which only a development server may do; remove it.");
        }

        return DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.None, out var startsAt)
            ? new DevelopmentClock(startsAt, System)
            : throw new StartupRefusedException($"{Setting} must be an ISO 8601 instant with its offset (2026-06-29T00:00:00+08:00); got '{value}'.");
    }
}
