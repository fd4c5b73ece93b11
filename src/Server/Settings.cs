using Microsoft.Extensions.Options;
using QuotaLedger.Server.Security;

namespace QuotaLedger.Server;

/// <summary>A configuration section's settings that can say what is wrong with their values.</summary>
public interface ICheckedSettings
{
    /// <summary>One line per bad value, each naming its key relative to the section (e.g. "MaxBatch must be 1 to 10000; it is 0").</summary>
    IEnumerable<string> Problems();
}

/// <summary>Every configuration section the server reads is bound one way: strictly (a key the settings do not have,
/// or a value of the wrong type, is refused with the key named) and checked, before the server takes a call. A bad
/// value stops the start with a <see cref="StartupRefusedException"/> naming the key.</summary>
public static class Settings
{
    /// <summary>Binds a section now, for the few settings the host needs while it is being built.</summary>
    public static T Read<T>(IConfiguration configuration, string section)
        where T : class, ICheckedSettings, new()
    {
        var settings = new T();
        Bind(configuration, section, settings);
        if (Check(settings, section) is { } problem)
        {
            throw new StartupRefusedException(problem);
        }

        return settings;
    }

    /// <summary>Registers a section as a singleton, bound and checked when the host starts (after every configuration
    /// source, including those a test host adds late, is in place).</summary>
    public static IServiceCollection AddSettings<T>(this IServiceCollection services, string section)
        where T : class, ICheckedSettings, new()
    {
        services.AddOptions<T>()
            .Configure<IConfiguration>((settings, configuration) => Bind(configuration, section, settings))
            .Validate(settings => Check(settings, section) is not { } problem ? true : throw new StartupRefusedException(problem))
            .ValidateOnStart();
        services.AddSingleton(provider => provider.GetRequiredService<IOptions<T>>().Value);
        return services;
    }

    private static void Bind(IConfiguration configuration, string section, object settings)
    {
        try
        {
            configuration.GetSection(section).Bind(settings, binder => binder.ErrorOnUnknownConfiguration = true);
        }
        catch (InvalidOperationException e)
        {
            throw new StartupRefusedException($"Configuration section {section}: {e.Message}");
        }
    }

    private static string? Check(ICheckedSettings settings, string section)
    {
        var problems = settings.Problems().Select(p => $"{section}:{p}").ToList();
        return problems.Count == 0 ? null : string.Join(" ", problems);
    }

    /// <summary>"Name must be min to max; it is value", when it is not.</summary>
    public static IEnumerable<string> Range(string name, long value, long min, long max)
    {
        if (value < min || value > max)
        {
            yield return $"{name} must be {min} to {max}; it is {value}.";
        }
    }

    /// <summary>"Name must be min to max; it is value", for a duration.</summary>
    public static IEnumerable<string> Range(string name, TimeSpan value, TimeSpan min, TimeSpan max)
    {
        if (value < min || value > max)
        {
            yield return $"{name} must be {min:c} to {max:c}; it is {value:c}.";
        }
    }
}
