using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Grpc.Core;
using Grpc.Net.ClientFactory;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using QuotaLedger.Client;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers QuotaLedger clients, through the gRPC client factory (Grpc.Net.ClientFactory): the returned
/// <see cref="IHttpClientBuilder"/> takes your own handlers (<c>AddHttpMessageHandler</c>) and interceptors
/// (<c>AddInterceptor</c>) on top of the client's TLS and credentials. Options are validated when the host starts.</summary>
public static class QuotaLedgerServiceCollectionExtensions
{
    /// <summary>Registers the default <see cref="IQuotaLedgerClient"/> (and <see cref="QuotaLedgerClient"/>, and each role
    /// interface, <see cref="ILedgerClient"/> and the others) configured by <paramref name="configure"/>.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Sets the address, credentials, deadline and retries.</param>
    public static IHttpClientBuilder AddQuotaLedgerClient(this IServiceCollection services, Action<QuotaLedgerClientOptions> configure) =>
        services.AddQuotaLedgerClient(Options.Options.DefaultName, configure);

    /// <summary>Registers the default client with options bound from configuration, e.g. the section "QuotaLedger":
    /// <c>Address</c>, <c>ClientCertificateFile</c>, <c>ClientCertificateKeyFile</c>, <c>TrustedServerCaFile</c>,
    /// <c>DefaultDeadline</c>, <c>Retry:MaxAttempts</c> ... A key the options do not have is an error, not ignored.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configuration">The client's section.</param>
    /// <param name="configure">Sets what configuration cannot (a token provider, say); optional.</param>
    public static IHttpClientBuilder AddQuotaLedgerClient(this IServiceCollection services, IConfiguration configuration, Action<QuotaLedgerClientOptions>? configure = null) =>
        services.AddQuotaLedgerClient(Options.Options.DefaultName, configuration, configure);

    /// <summary>Registers a named client (for an app that talks to two ledgers), resolved with
    /// <see cref="IQuotaLedgerClientFactory.Get"/>.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The client's name.</param>
    /// <param name="configure">Sets the address, credentials, deadline and retries.</param>
    public static IHttpClientBuilder AddQuotaLedgerClient(this IServiceCollection services, string name, Action<QuotaLedgerClientOptions> configure)
    {
        services.AddOptions<QuotaLedgerClientOptions>(name).Configure(configure);
        return services.AddClient(name);
    }

    /// <summary>Registers a named client with options bound from configuration (see the unnamed overload for the keys).</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The client's name.</param>
    /// <param name="configuration">The client's section.</param>
    /// <param name="configure">Sets what configuration cannot; optional.</param>
    public static IHttpClientBuilder AddQuotaLedgerClient(this IServiceCollection services, string name, IConfiguration configuration,
        Action<QuotaLedgerClientOptions>? configure = null)
    {
        var options = services.AddOptions<QuotaLedgerClientOptions>(name).Bind(configuration, binder => binder.ErrorOnUnknownConfiguration = true);
        if (configure is not null)
        {
            options.Configure(configure);
        }

        return services.AddClient(name);
    }

    private static IHttpClientBuilder AddClient(this IServiceCollection services, string name)
    {
        services.AddOptions<QuotaLedgerClientOptions>(name).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<QuotaLedgerClientOptions>, QuotaLedgerOptionsValidation>());
        services.TryAddSingleton<IQuotaLedgerClientFactory, QuotaLedgerClientFactory>();
        if (name == Options.Options.DefaultName)
        {
            services.TryAddSingleton(provider => provider.GetRequiredService<IQuotaLedgerClientFactory>().Get(name));
            services.TryAddSingleton(provider => (QuotaLedgerClient)provider.GetRequiredService<IQuotaLedgerClient>());
            // The role interfaces, each the same client: a class that needs only the ledger's calls asks for ILedgerClient.
            services.TryAddSingleton<ILedgerClient>(provider => provider.GetRequiredService<IQuotaLedgerClient>());
            services.TryAddSingleton<IRegistryClient>(provider => provider.GetRequiredService<IQuotaLedgerClient>());
            services.TryAddSingleton<IAdminClient>(provider => provider.GetRequiredService<IQuotaLedgerClient>());
            services.TryAddSingleton<IRedemptionClient>(provider => provider.GetRequiredService<IQuotaLedgerClient>());
            services.TryAddSingleton<IAlertsClient>(provider => provider.GetRequiredService<IQuotaLedgerClient>());
        }

        var settings = (IServiceProvider provider) => provider.GetRequiredService<IOptionsMonitor<QuotaLedgerClientOptions>>().Get(name);
        return services
            .AddGrpcClient<LedgerCallInvoker>(QuotaLedgerClientFactory.ClientName(name), (provider, factory) => factory.Address = settings(provider).Servers().FirstOrDefault())
            .ConfigurePrimaryHttpMessageHandler(provider => settings(provider) is { HttpHandler: { } handler } ? handler : ChannelSetup.CreateHandler(settings(provider)))
            .ConfigureChannel((provider, channel) =>
            {
                ChannelSetup.ApplyCredentials(channel, settings(provider), settings(provider).Servers().FirstOrDefault());
                ChannelSetup.ApplyReconnect(channel, settings(provider));
            });
    }
}

/// <summary>Makes the clients registered by name with <c>AddQuotaLedgerClient(name, ...)</c>. A client is made once per
/// name, from its options as they are then: a change to the configuration takes effect at the next start.</summary>
public interface IQuotaLedgerClientFactory
{
    /// <summary>The client registered under <paramref name="name"/> (one per name, reused).</summary>
    /// <param name="name">The name it was registered with; the empty string for the unnamed one.</param>
    IQuotaLedgerClient Get(string name);
}

/// <summary>The gRPC client factory's typed client: only the call invoker it was made with (channel, handlers,
/// interceptors), which a <see cref="QuotaLedgerClient"/> then wraps.</summary>
internal sealed class LedgerCallInvoker(CallInvoker callInvoker)
{
    public CallInvoker CallInvoker { get; } = callInvoker;
}

internal sealed class QuotaLedgerClientFactory(
    GrpcClientFactory grpc, IOptionsMonitor<QuotaLedgerClientOptions> options, ILoggerFactory? loggerFactory = null, IMeterFactory? meterFactory = null)
    : IQuotaLedgerClientFactory, IDisposable
{
    private readonly ConcurrentDictionary<string, QuotaLedgerClient> _clients = new();

    public static string ClientName(string name) => "QuotaLedger:" + name;

    public IQuotaLedgerClient Get(string name) => _clients.GetOrAdd(name, Create);

    private QuotaLedgerClient Create(string name)
    {
        var settings = options.Get(name);
        // Several servers: the client makes a channel to each and routes among them (the gRPC client factory makes one
        // channel, to one address).
        if (settings.Servers().Count > 1)
        {
            return new QuotaLedgerClient(settings, loggerFactory, meterFactory);
        }

        var invoker = grpc.CreateClient<LedgerCallInvoker>(ClientName(name)).CallInvoker;
        return new QuotaLedgerClient(invoker, settings, loggerFactory, meterFactory);
    }

    /// <summary>Closes the channels of the clients that made their own (a client over the factory's invoker has none).</summary>
    public void Dispose()
    {
        foreach (var client in _clients.Values)
        {
            client.Dispose();
        }
    }
}

/// <summary>Validates every registered client's options when the host starts (see <see cref="QuotaLedgerClientOptions.Problems"/>).</summary>
internal sealed class QuotaLedgerOptionsValidation : IValidateOptions<QuotaLedgerClientOptions>
{
    public ValidateOptionsResult Validate(string? name, QuotaLedgerClientOptions options)
    {
        var problems = options.Problems();
        var which = string.IsNullOrEmpty(name) ? "The QuotaLedger client" : $"The QuotaLedger client '{name}'";
        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems.Select(p => $"{which}: {p}"));
    }
}
