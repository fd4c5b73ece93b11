using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Text;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using QuotaLedger.Server;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Telemetry;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The ledger's own meter (there with no exporter), and OpenTelemetry's traces and metrics when an OTLP
/// endpoint is configured. Each test reads the meter of its own server (made by that host's IMeterFactory), so the
/// servers of tests running alongside never count here.</summary>
public sealed class TelemetryTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task Deductions_applied_refused_by_reason_and_replayed_are_counted_with_each_transactions_size_lock_wait_and_commit()
    {
        await using var server = fixture.StartServer(LedgerFixture.Now);
        using var applied = Collect<long>(server, "quotaledger.deductions.applied");
        using var refused = Collect<long>(server, "quotaledger.deductions.refused");
        using var replayed = Collect<long>(server, "quotaledger.deductions.replayed");
        using var sizes = Collect<int>(server, "quotaledger.deductions.batch.size");
        using var lockWaits = Collect<double>(server, "quotaledger.deductions.lock.wait_time");
        using var commits = Collect<double>(server, "quotaledger.deductions.commit.duration");
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 1_000);

        var first = deal.DeductRequest(grant.GrantId, 3_000, "TEL-" + Ids.New()[..8], server.Today());
        Assert.Equal(1_000, (await server.Ledger.DeductAsync(first)).AppliedFen);
        await Refusal.AssertAsync(() => server.DeductAsync(deal, grant.GrantId, 100), Grpc.Core.StatusCode.FailedPrecondition, "GRANT_EMPTY");
        // An unknown grant has no unit-year to queue under: a batch of one that waits for its locks decides it.
        await Refusal.AssertAsync(() => server.DeductAsync(deal, 987_654_321, 100), Grpc.Core.StatusCode.NotFound, "UNKNOWN_GRANT");
        await server.Ledger.DeductAsync(first);

        Assert.Equal([1L], applied.GetMeasurementSnapshot().Select(m => m.Value));
        Assert.Empty(Assert.Single(applied.GetMeasurementSnapshot()).Tags);
        Assert.Equal(["GRANT_EMPTY", "UNKNOWN_GRANT"], refused.GetMeasurementSnapshot().Select(m => (string)m.Tags["quotaledger.reason"]!));
        Assert.All(refused.GetMeasurementSnapshot(), m => Assert.Equal(1, m.Value));
        Assert.Equal([1L], replayed.GetMeasurementSnapshot().Select(m => m.Value));

        // One transaction per call, each of one deduction; the worker's skip locks, the batch of one waits for them.
        var lockings = new[] { "skip_locked", "skip_locked", "wait", "skip_locked" };
        Assert.Equal(lockings.Select(l => (1, l)), sizes.GetMeasurementSnapshot().Select(m => (m.Value, (string)m.Tags["quotaledger.locking"]!)));
        Assert.Equal(lockings, lockWaits.GetMeasurementSnapshot().Select(m => (string)m.Tags["quotaledger.locking"]!));
        Assert.Equal(lockings, commits.GetMeasurementSnapshot().Select(m => (string)m.Tags["quotaledger.locking"]!));
        Assert.All(lockWaits.GetMeasurementSnapshot().Concat(commits.GetMeasurementSnapshot()), m => Assert.True(m.Value > 0));
    }

    [Fact]
    public async Task A_deduction_whose_unit_year_another_session_holds_is_deferred_and_the_next_one_waits_in_the_queue()
    {
        await using var server = fixture.StartServer(LedgerFixture.Now, settings: new Dictionary<string, string?> { ["Database:LockTimeout"] = "00:01:00" });
        using var deferred = Collect<long>(server, "quotaledger.deductions.deferred");
        using var depth = Collect<int>(server, "quotaledger.deductions.queue.depth");
        using var lockWaits = Collect<double>(server, "quotaledger.deductions.lock.wait_time");
        using var applied = Collect<long>(server, "quotaledger.deductions.applied");
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);

        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand(
            "SELECT id FROM unit_years WHERE id = (SELECT unit_year_id FROM grants WHERE id = $1) FOR UPDATE", connection, transaction))
        {
            lockRow.Parameters.Add(new NpgsqlParameter { Value = grant.GrantId });
            Assert.NotNull(await lockRow.ExecuteScalarAsync());
        }

        var held = server.DeductAsync(deal, grant.GrantId, 1_000);
        await Until(() => deferred.GetMeasurementSnapshot().Sum(m => m.Value) == 1);
        var behind = server.DeductAsync(deal, grant.GrantId, 1_000);
        await Until(() =>
        {
            depth.RecordObservableInstruments();
            return depth.LastMeasurement?.Value == 1;
        });
        Assert.False(held.IsCompleted || behind.IsCompleted);

        await transaction.CommitAsync();
        await Task.WhenAll(held, behind);
        depth.RecordObservableInstruments();
        Assert.Equal(0, depth.LastMeasurement?.Value);
        Assert.Equal(2, applied.GetMeasurementSnapshot().Sum(m => m.Value));
        // The lock waiter's transaction waited for the row, and says so.
        Assert.Contains(lockWaits.GetMeasurementSnapshot(), m => (string)m.Tags["quotaledger.locking"]! == "wait");
    }

    [Fact]
    public async Task An_expiry_pass_is_counted_with_the_grants_it_expired_and_what_they_returned()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(2026, 7, 1, 2, 0, 0, TimeSpan.Zero));
        using var passes = Collect<long>(server, "quotaledger.expiry.passes");
        using var grants = Collect<long>(server, "quotaledger.expiry.grants");
        using var returned = Collect<long>(server, "quotaledger.expiry.returned");
        using var durations = Collect<double>(server, "quotaledger.expiry.pass.duration");
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        await server.DeductAsync(deal, grant.GrantId, 4_000);
        server.Clock.Advance(TimeSpan.FromDays(32));

        // The pass expires every due grant of the shared database, so the figures are compared with its own answer.
        var pass = await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        Assert.True(pass.ExpiredGrants >= 1 && pass.ReturnedFen >= 8_000);

        var count = Assert.Single(passes.GetMeasurementSnapshot());
        Assert.Equal((1L, "request"), (count.Value, (string)count.Tags["quotaledger.expiry.trigger"]!));
        Assert.False(count.Tags.ContainsKey("error.type"));
        var byOutcome = grants.GetMeasurementSnapshot().ToDictionary(m => (string)m.Tags["quotaledger.outcome"]!, m => m.Value);
        Assert.Equal(new Dictionary<string, long> { ["expired"] = pass.ExpiredGrants, ["failed"] = pass.FailedGrants }, byOutcome);
        Assert.Equal(pass.ReturnedFen, Assert.Single(returned.GetMeasurementSnapshot()).Value);
        Assert.Equal("request", Assert.Single(durations.GetMeasurementSnapshot()).Tags["quotaledger.expiry.trigger"]);
    }

    [Fact]
    public async Task Without_an_OTLP_endpoint_no_provider_is_registered_and_the_ledgers_meter_still_counts()
    {
        var server = fixture.Server;
        Assert.Null(server.Services.GetService<TracerProvider>());
        Assert.Null(server.Services.GetService<MeterProvider>());

        // What dotnet-counters reads: the meter, with nothing of OpenTelemetry listening. (The suite's server is shared,
        // so others' deductions may count here too; this one is certainly among them.)
        using var applied = Collect<long>(server, "quotaledger.deductions.applied");
        var deal = await server.NewDealAsync();
        var grant = await server.GrantAsync(deal, 10_000);
        await server.DeductAsync(deal, grant.GrantId, 1_000);
        Assert.NotEmpty(applied.GetMeasurementSnapshot());
    }

    [Fact]
    public async Task With_an_OTLP_endpoint_a_call_its_deduction_transaction_and_their_SQL_are_traced_and_exported()
    {
        using var collector = new OtlpReceiver();
        var spans = new TraceCapture();
        // Built as the server's Program builds it: the Telemetry section is read while the host is built.
        var port = TestPorts.Free();
        await using var app = QuotaLedgerHost.Build([], builder =>
        {
            builder.Environment.EnvironmentName = "Development";
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>(fixture.Database.ServerSettings)
            {
                ["Expiry:Enabled"] = "false",
                ["Alerts:Enabled"] = "false",
                ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{port}",
                ["Telemetry:OtlpEndpoint"] = collector.Address,
                ["Telemetry:OtlpProtocol"] = "HttpProtobuf",
                ["Telemetry:ServiceName"] = "ledger-under-test",
            });
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.Services.RemoveAll<TimeProvider>();
            builder.Services.AddSingleton<TimeProvider>(new FakeTimeProvider(LedgerFixture.Now));
            builder.Services.ConfigureOpenTelemetryTracerProvider(tracing => tracing.AddProcessor(spans));
        });
        await app.StartAsync();
        Assert.NotNull(app.Services.GetService<TracerProvider>());
        Assert.NotNull(app.Services.GetService<MeterProvider>());
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
        var ledger = new LedgerService.LedgerServiceClient(channel);
        var deal = await fixture.Server.NewDealAsync();

        // The caller's trace context, as a traced client sends it.
        var grantTrace = ActivityTraceId.CreateRandom();
        spans.Follow(grantTrace);
        var granted = await ledger.GrantAsync(deal.GrantRequest(10_000), Traced(grantTrace));
        var deductTrace = ActivityTraceId.CreateRandom();
        spans.Follow(deductTrace);
        await ledger.DeductAsync(deal.DeductRequest(granted.GrantId, 1_000, "OTEL-" + Ids.New()[..8], fixture.Server.Today()), Traced(deductTrace));

        // The Grant call: the server span, with gRPC's attributes (the instrumentation follows the current RPC
        // conventions: rpc.system.name, rpc.method as service/method), and the SQL it ran beneath it.
        var grantSpans = spans.Of(grantTrace);
        var call = Assert.Single(grantSpans, s => s.Kind == ActivityKind.Server);
        Assert.Equal(("quotaledger.v1.LedgerService/Grant", "grpc", "quotaledger.v1.LedgerService/Grant", "OK"),
            (call.DisplayName, call.GetTagItem("rpc.system.name"), call.GetTagItem("rpc.method"), call.GetTagItem("rpc.response.status_code")));
        Assert.Contains(grantSpans, s => s.Source.Name == "Npgsql" && s.Kind == ActivityKind.Client && Descends(s, call, grantSpans));

        // The Deduct call: its transaction runs on a worker that serves every caller, so its span is a root of its
        // own linked to the call, and the batch's SQL runs beneath it.
        var deductCall = Assert.Single(spans.Of(deductTrace), s => s.Kind == ActivityKind.Server);
        Assert.Equal("quotaledger.v1.LedgerService/Deduct", deductCall.GetTagItem("rpc.method"));
        var batch = Assert.Single(spans.All, s => s.Source.Name == ServerTelemetry.Name && s.Links.Any(l => l.Context.SpanId == deductCall.SpanId));
        Assert.Equal(("WriteBatch", 1, 1), (batch.DisplayName, batch.GetTagItem("quotaledger.deductions.batch.size"), batch.GetTagItem("quotaledger.deductions.applied")));
        var batchSpans = spans.Of(batch.TraceId);
        Assert.Contains(batchSpans, s => s.Source.Name == "Npgsql" && s.ParentSpanId == batch.SpanId);

        // And it all leaves over OTLP: the spans of the caller's trace, and the ledger's instruments.
        Assert.True(app.Services.GetRequiredService<TracerProvider>().ForceFlush());
        Assert.True(app.Services.GetRequiredService<MeterProvider>().ForceFlush());
        var traces = collector.Received("/v1/traces");
        Assert.Contains(traces, body => Contains(body, Convert.FromHexString(deductTrace.ToHexString())));
        Assert.Contains(traces, body => Contains(body, Encoding.UTF8.GetBytes("ledger-under-test")));
        Assert.Contains(collector.Received("/v1/metrics"), body => Contains(body, Encoding.UTF8.GetBytes("quotaledger.deductions.applied")));
    }

    [Theory]
    [InlineData("--Telemetry:OtlpEndpoint=localhost:4317", "Telemetry:OtlpEndpoint must be an http or https address")]
    [InlineData("--Telemetry:OtlpProtocol=Pigeon", "OtlpProtocol")]
    [InlineData("--Telemetry:Endpoint=http://127.0.0.1:4317", "Endpoint")]
    public void A_bad_telemetry_setting_stops_the_build_with_its_key_named(string setting, string expected)
    {
        var refused = Assert.Throws<StartupRefusedException>(() => QuotaLedgerHost.Build([setting]));
        Assert.Contains(expected, refused.Message, StringComparison.Ordinal);
    }

    private static MetricCollector<T> Collect<T>(LedgerServer server, string instrument)
        where T : struct =>
        new(server.Services.GetRequiredService<IMeterFactory>(), ServerTelemetry.Name, instrument);

    /// <summary>Waits for something the server does in the background (a failing test stops waiting after a minute).</summary>
    private static async Task Until(Func<bool> condition)
    {
        var giveUp = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(giveUp.Elapsed < TimeSpan.FromMinutes(1), "The server never got there.");
            await Task.Delay(TimeSpan.FromMilliseconds(20));
        }
    }

    private static Metadata Traced(ActivityTraceId trace) =>
        new() { { "traceparent", $"00-{trace.ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-01" } };

    private static bool Descends(Activity span, Activity ancestor, IReadOnlyList<Activity> trace)
    {
        for (var parent = span.ParentSpanId; parent != default;)
        {
            if (parent == ancestor.SpanId)
            {
                return true;
            }

            parent = trace.FirstOrDefault(s => s.SpanId == parent)?.ParentSpanId ?? default;
        }

        return false;
    }

    private static bool Contains(byte[] body, byte[] part) => body.AsSpan().IndexOf(part) >= 0;

    /// <summary>The spans of the traces a test follows: the callers' own, and those of any transaction linked to one of
    /// them. Every tracer provider of the process sees every server's spans; this keeps only the test's.</summary>
    private sealed class TraceCapture : BaseProcessor<Activity>
    {
        private readonly ConcurrentDictionary<ActivityTraceId, ConcurrentQueue<Activity>> _traces = new();

        public IReadOnlyList<Activity> All => [.. _traces.Values.SelectMany(t => t)];

        public IReadOnlyList<Activity> Of(ActivityTraceId trace) => [.. _traces.GetValueOrDefault(trace) ?? []];

        public void Follow(ActivityTraceId trace) => _traces.TryAdd(trace, new ConcurrentQueue<Activity>());

        public override void OnStart(Activity data)
        {
            if (data.Links.Any(l => _traces.ContainsKey(l.Context.TraceId)))
            {
                Follow(data.TraceId);
            }
        }

        public override void OnEnd(Activity data) => _traces.GetValueOrDefault(data.TraceId)?.Enqueue(data);
    }

    /// <summary>An OTLP/HTTP collector that keeps what it is sent, by path.</summary>
    private sealed class OtlpReceiver : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly ConcurrentQueue<(string Path, byte[] Body)> _received = new();

        public OtlpReceiver()
        {
            Address = $"http://127.0.0.1:{TestPorts.Free()}/";
            _listener.Prefixes.Add(Address);
            _listener.Start();
            _ = ServeAsync();
        }

        public string Address { get; }

        public IReadOnlyList<byte[]> Received(string path) => [.. _received.Where(r => r.Path == path).Select(r => r.Body)];

        private async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }

                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                _received.Enqueue((context.Request.Url!.AbsolutePath, body.ToArray()));
                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/x-protobuf";
                context.Response.Close();
            }
        }

        public void Dispose() => _listener.Close();
    }
}
