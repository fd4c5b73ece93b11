using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using QuotaLedger.Client;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the QuotaLedger client.</summary>
public static class QuotaLedgerServiceCollectionExtensions
{
    /// <summary>Registers one <see cref="QuotaLedgerClient"/> (one channel, reused) configured by <paramref name="configure"/>.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Sets the address, credentials, deadline and retries.</param>
    public static IServiceCollection AddQuotaLedgerClient(this IServiceCollection services, Action<QuotaLedgerClientOptions> configure)
    {
        services.AddOptions<QuotaLedgerClientOptions>().Configure(configure);
        services.TryAddSingleton(provider => new QuotaLedgerClient(provider.GetRequiredService<IOptions<QuotaLedgerClientOptions>>().Value));
        return services;
    }
}
