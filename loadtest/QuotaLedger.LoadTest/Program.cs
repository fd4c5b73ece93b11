using System.Text.Json;
using Npgsql;
using QuotaLedger.Client;
using QuotaLedger.LoadTest;

Options options;
try
{
    options = Options.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}

await using var server = options.Addresses.Count == 0 ? await ServerProcess.StartAsync() : null;
IReadOnlyList<Uri> addresses = server is null ? options.Addresses : [server.Address];
var address = addresses[0];
// Several servers: each client routes over all of them by affinity (the SDK's Addresses), or with --routing none each
// client talks to one server and the callers go round-robin over the clients.
var routed = addresses.Count > 1 && options.Routing == "affinity";
QuotaLedgerClientOptions ClientOptions(int i) => routed
    ? new QuotaLedgerClientOptions { Addresses = [.. addresses] }
    : new QuotaLedgerClientOptions { Address = addresses[i % addresses.Count] };
var clients = Enumerable.Range(0, routed ? options.Connections : Math.Max(options.Connections, addresses.Count)).Select(i =>
{
    var clientOptions = ClientOptions(i);
    clientOptions.DefaultDeadline = TimeSpan.FromSeconds(30);
    // The load test counts failures instead of hiding them behind retries.
    clientOptions.Retry.MaxAttempts = 1;
    return new QuotaLedgerClient(clientOptions);
}).ToArray();
foreach (var each in addresses)
{
    using var client = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = each });
    await WaitUntilUpAsync(client);
}

var plan = SetupPlan.For(options.Scenario, options.UnitYears);
List<Target> targets = [];
string provider = "";
var year = 0;
if (options.Scenario != "ping")
{
    Console.WriteLine($"Setting up {plan.UnitYears} unit-year(s) with a grant of {plan.GrantEach} each ...");
    try
    {
        (provider, year, targets) = await Setup.RunAsync(clients[0], plan, options.ServerToday.Year);
    }
    catch (SetupException e)
    {
        Console.Error.WriteLine($"Cannot set up the run: {e.Message}");
        return 2;
    }
}

var run = new Run(options, clients, provider, year, targets);
Console.WriteLine($"Running '{options.Scenario}' with {(options.Rate > 0 ? $"{options.Rate} calls/s (open loop, at most {options.Concurrency} in flight)" : $"{options.Concurrency} callers (closed loop)")}: warm-up {options.Warmup.TotalSeconds:0} s, then {options.Duration.TotalSeconds:0} s measured.");
var result = await run.ExecuteAsync();
result = result with { ServerPeakRssKb = server?.PeakRssKilobytes(), Routing = addresses.Count == 1 ? $"one, {address}"
    : routed ? $"{addresses.Count}, writes routed by affinity, reads round-robin" : $"{addresses.Count}, every call round-robin (routing none)" };
Console.WriteLine();
Console.WriteLine(result.Describe());

var failures = new List<string>();
ExactlyOnceReport? audit = null;
if (options.Scenario != "ping")
{
    // A call whose outcome the run did not see (timed out, UNAVAILABLE, a broken connection) may or may not have been
    // applied: each is retried with its request id, which replays it or applies it once, before the books are compared.
    var unresolved = await run.ResolveAsync(ClientOptions(0));
    failures.AddRange(unresolved);
    try
    {
        failures.AddRange(await Books.CheckAsync(clients[0], year, targets, run.AppliedByTarget, run.GrantedByTarget));
        if (options.Database is { } database)
        {
            // The setup's grants were acknowledged too: the audit counts them with the run's.
            foreach (var target in targets)
            {
                run.Acknowledged.Add(new GrantAcknowledgement(target.GrantRequestId, target.GrantId, target.Unit, target.Granted.Value));
            }

            audit = await ExactlyOnce.CheckAsync(database, provider, run.Acknowledged);
            Console.WriteLine($"Exactly once: {audit.Acknowledged} acknowledged, {audit.Stored} held by the ledger, {audit.Lost} lost, {audit.Duplicated} duplicated");
            failures.AddRange(audit.Examples);
            var verdict = await clients[0].VerifyJournalAsync();
            if (!verdict.Ok)
            {
                failures.Add($"VerifyJournal: {verdict.Problem} (entry {verdict.FirstBadEntryId}, account {verdict.FirstBadAccountId})");
            }
        }
    }
    catch (Exception e) when (e is QuotaLedgerException or QuotaLedgerUnavailableException or HttpRequestException or OperationCanceledException or NpgsqlException)
    {
        failures.Add($"the books could not be checked: {e.Message}");
    }
}

result = result with { BooksChecked = options.Scenario != "ping", BookFailures = failures, Retried = run.Retried, ExactlyOnce = audit };
await File.WriteAllTextAsync(options.Json, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
Console.WriteLine($"Results written to {Path.GetFullPath(options.Json)}");
foreach (var failure in failures)
{
    Console.Error.WriteLine($"BOOKS: {failure}");
}

Console.WriteLine(failures.Count == 0 ? "Books check: OK" : $"Books check: {failures.Count} failure(s)");
foreach (var client in clients)
{
    client.Dispose();
}

return failures.Count == 0 ? 0 : 1;

static async Task WaitUntilUpAsync(QuotaLedgerClient client)
{
    var deadline = DateTime.UtcNow.AddSeconds(120);
    while (true)
    {
        try
        {
            await client.PingAsync();
            return;
        }
        catch (Exception e) when (e is QuotaLedgerException or QuotaLedgerUnavailableException && DateTime.UtcNow < deadline)
        {
            await Task.Delay(500);
        }
    }
}
