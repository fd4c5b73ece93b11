using System.Collections.Concurrent;
using Grpc.Core;
using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QuotaLedger.Tests;

/// <summary>The SDK, with its default options, through real outages of a real server process on a real port: nothing
/// listening, the server killed (SIGKILL) or stopped (SIGTERM) for half a minute and started again on the same port and
/// database. Slow (about a minute per outage): process-level tests.</summary>
[Collection(FeedTests.Collection), Trait("Category", "Slow")]
public sealed class SdkOutageTests(LedgerFixture fixture, ITestOutputHelper output) : IClassFixture<LedgerFixture>
{
    private static readonly TimeSpan s_outage = TimeSpan.FromSeconds(30);

    private static readonly TimeSpan s_waitForConnection = TimeSpan.FromSeconds(2);

    private static readonly UnitMaterial[] s_materials =
    [
        new(MaterialKind.ApplicationForm, "form.pdf"), new(MaterialKind.RegistrationCertificate, "licence.pdf"),
        new(MaterialKind.IntegrityPledge, "pledge.pdf"), new(MaterialKind.CreditReport, "credit.pdf"),
    ];

    private static readonly TimeProvider s_time = TimeProvider.System;

    /// <summary>The ledger's day (China Standard Time) by the real clock, which the server process runs on.</summary>
    private static DateOnly Today => DateOnly.FromDateTime(s_time.GetUtcNow().UtcDateTime.AddHours(8));

    [Fact]
    public async Task A_call_to_a_port_where_nothing_listens_applied_nothing_and_says_so()
    {
        using var ledger = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = new Uri($"http://127.0.0.1:{TestPorts.Free()}") });

        var unavailable = await Assert.ThrowsAsync<QuotaLedgerUnavailableException>(
            () => ledger.DeductAsync(TestUscc.New(), 1, Invoice(), new Fen(1_000), Today));

        Assert.False(unavailable.OutcomeUnknown, unavailable.Message);
        Assert.Equal(StatusCode.Unavailable, unavailable.StatusCode);
        Assert.NotNull(unavailable.RequestId);
        Assert.Contains("Nothing was applied", unavailable.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("kill -9")]
    [InlineData("stop")]
    public async Task Through_an_outage_calls_say_nothing_applied_the_next_call_after_it_succeeds_and_a_watch_resumes_with_every_entry_once(string fault)
    {
        await using var server = await ServerProcess.StartAsync(fixture.Database);
        // The default options, but a call waits for a connection at most 2 s (the default is 5 s): what the ledger being
        // back means for a caller is that its next call succeeds within that.
        using var ledger = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = server.Address, Reconnect = { WaitForConnection = s_waitForConnection } });
        var (provider, grantId) = await NewGrantAsync(ledger);
        await ledger.DeductAsync(provider, grantId, Invoice(), new Fen(1_000), Today);

        using var stopWatching = new CancellationTokenSource();
        var watched = new ConcurrentQueue<long>();
        var watch = WatchAsync(ledger, provider, watched, stopWatching.Token);
        await UntilAsync(() => watched.Count >= 2, watch, "the watch to hand over the grant and the first deduction");

        if (fault == "stop")
        {
            await server.StopAsync();
        }
        else
        {
            await server.KillAsync();
        }

        // The first call finds the old connection gone (a call sent on it could not have said whether it applied);
        // the calls after it find no server to connect to, apply nothing, and say so.
        await Assert.ThrowsAsync<QuotaLedgerUnavailableException>(() => ledger.PingAsync());
        var down = new List<(string Invoice, QuotaLedgerUnavailableException Error)>();
        var downSince = s_time.GetTimestamp();
        while (s_time.GetElapsedTime(downSince) < s_outage)
        {
            var invoice = Invoice();
            down.Add((invoice, await Assert.ThrowsAsync<QuotaLedgerUnavailableException>(
                () => ledger.DeductAsync(provider, grantId, invoice, new Fen(1_000), Today))));
        }

        Assert.All(down, d => Assert.False(d.Error.OutcomeUnknown, d.Error.Message));

        await server.StartAgainAsync(untilListening: true);
        var back = s_time.GetTimestamp();
        // The client kept calling through the outage, so the channel's reconnect backoff grew as far as it goes; the
        // next call still succeeds within its wait for a connection.
        await ledger.DeductAsync(provider, grantId, Invoice(), new Fen(1_000), Today);
        output.WriteLine($"{fault}: the first call after the server listened again succeeded after {s_time.GetElapsedTime(back).TotalSeconds:0.00} s; {down.Count} calls during the outage");

        foreach (var (invoice, _) in down)
        {
            var absent = await Assert.ThrowsAsync<QuotaLedgerException>(() => ledger.GetDeductionByInvoiceAsync(provider, invoice));
            Assert.Equal(LedgerReason.UnknownDeduction, absent.Reason);
        }

        for (var i = 0; i < 3; i++)
        {
            await ledger.DeductAsync(provider, grantId, Invoice(), new Fen(1_000), Today);
        }

        var entries = new List<long>();
        await foreach (var entry in ledger.ListEntriesAsync(new EntryFilter(ProviderUscc: provider)))
        {
            entries.Add(entry.EntryId);
        }

        Assert.Equal(6, entries.Count); // the grant and five deductions
        await UntilAsync(() => watched.Count >= entries.Count, watch, $"the watch to hand over the {entries.Count} entries");
        await stopWatching.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => watch);
        Assert.Equal(entries, watched.Order());
    }

    private static async Task WatchAsync(IQuotaLedgerClient ledger, string provider, ConcurrentQueue<long> watched, CancellationToken cancellationToken)
    {
        await foreach (var e in ledger.WatchAsync(new WatchFilter(ProviderUscc: provider), cancellationToken: cancellationToken))
        {
            if (e.Entry is { } entry)
            {
                watched.Enqueue(entry.EntryId);
            }
        }
    }

    /// <summary>Waits for a condition, failing when the watch ended first, or after two minutes (a hang, not a measure).</summary>
    private static async Task UntilAsync(Func<bool> condition, Task watch, string what)
    {
        var since = s_time.GetTimestamp();
        while (!condition())
        {
            if (watch.IsCompleted)
            {
                await watch;
                Assert.Fail($"The watch ended before {what}.");
            }

            Assert.True(s_time.GetElapsedTime(since) < TimeSpan.FromMinutes(2), $"Still waiting for {what}.");
            await Task.Delay(100);
        }
    }

    private static async Task<(string Provider, long GrantId)> NewGrantAsync(IQuotaLedgerClient ledger)
    {
        string provider = TestUscc.New(), unit = TestUscc.New();
        await ledger.RegisterProviderAsync(provider, "Outage test provider", ["IDC-B1-20260001"]);
        await ledger.RegisterUnitAsync(new UnitRegistration(unit, "Outage test unit", UnitKind.Enterprise, Materials: s_materials));
        await ledger.ReviewUnitAsync(provider, unit, approve: true);
        var terms = new ContractTerms("OUTAGE-" + Ids.New()[..10], provider, unit, "Ascend 910B", SelfControllable: true, ServiceMode.CloudInstance,
            Fen.FromYuan(20), Fen.FromYuan(100_000), "model training", UsesInnovationVoucher: false, SignedOn: Today);
        await ledger.RegisterContractAsync(terms);
        return (provider, (await ledger.GrantAsync(provider, terms.ContractNo, Fen.FromYuan(10_000))).GrantId);
    }

    private static string Invoice() => "OUTAGE-" + Ids.New()[..12];
}
