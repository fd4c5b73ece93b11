using System.Globalization;

namespace QuotaLedger.LoadTest;

/// <summary>Command-line options, in the manner of grpc-dotnet's benchmark client.</summary>
internal sealed record Options
{
    /// <summary>The servers to load, round-robin over the channels; none: start one.</summary>
    public IReadOnlyList<Uri> Addresses { get; init; } = [];
    public string Scenario { get; init; } = "hot";
    public int Concurrency { get; init; } = 64;
    public int Rate { get; init; }
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(5);
    public int UnitYears { get; init; } = 1_000;
    public int Connections { get; init; } = 1;
    public string Json { get; init; } = "loadtest-results.json";
    public string? Fault { get; init; }
    public TimeSpan FaultAt { get; init; } = TimeSpan.FromSeconds(10);
    public string? Database { get; init; }

    /// <summary>bulk: how many deductions each DeductMany call carries.</summary>
    public int Batch { get; init; } = 1_000;

    /// <summary>With several addresses: affinity (each client routes over all servers, the SDK's Addresses) or none.</summary>
    public string Routing { get; init; } = "affinity";

    /// <summary>The day the server's clock says (China time), when it is not today: a development server started with
    /// Development:ClockStartsAt. Invoices are dated the day before it, and the programme year is its year.</summary>
    public DateOnly? Today { get; init; }

    /// <summary>The server's day in China time: <see cref="Today"/>, or today.</summary>
    public DateOnly ServerToday => Today ?? DateOnly.FromDateTime(DateTime.UtcNow.AddHours(8));

    public const string Usage = """
        QuotaLedger load test
          --address URL[,URL]  server(s) to load (default: start one, with no configuration); several servers on one
                               database are loaded as --routing says
          --routing MODE       with several addresses: affinity (default: each client routes over all of them, the
                               year's grants to one server, each unit-year's deductions to one, reads round-robin) |
                               none (each client talks to one server, the callers round-robin over the clients)
          --scenario NAME      hot: deductions on one unit-year | spread: deductions across --unit-years |
                               grants: a month-start wave, small grants across the units of one year |
                               mixed: 80% deductions, 10% grants, 10% reads (each reported on its own too) |
                               bulk: DeductMany calls of --batch deductions across --unit-years (items/s, p99 per call) |
                               ping (default hot)
          --batch N            bulk: deductions per call (default 1000)
          --concurrency N      callers in the closed loop, or the in-flight cap in the open loop (default 64)
          --rate N             open loop: N calls a second (default 0: closed loop)
          --duration SECONDS   measured time (default 30)
          --warmup SECONDS     unmeasured time before it (default 5)
          --unit-years N       spread/mixed/grants: how many unit-years (default 1000)
          --connections N      gRPC clients (default 1); routed, each has a channel to every server; otherwise each
                               has one channel to one server, at least one client per server
          --json PATH          where to write the results (default loadtest-results.json)
          --fault COMMAND      a shell command run once during the measured time (a fault to inject); the results
                               then say how long the rate took to come back
          --fault-at SECONDS   when into the measured time the fault starts (default 10)
          --today YYYY-MM-DD   the server's day when its clock is set elsewhere (Development:ClockStartsAt): invoices
                               are dated the day before, the programme year is its year (default: today, China time)
          --database CONNSTR   after the run, check in the ledger's database itself that every acknowledged deduction
                               and grant exists exactly once and nothing else was applied (what the run was not told of)
        """;

    public static Options Parse(string[] args)
    {
        var options = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.\n{Usage}");
            options = args[i] switch
            {
                "--address" => options with { Addresses = [.. value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(a => new Uri(a))] },
                "--scenario" => options with { Scenario = value is "hot" or "spread" or "grants" or "mixed" or "bulk" or "ping" ? value : throw new ArgumentException($"Unknown scenario {value}.\n{Usage}") },
                "--concurrency" => options with { Concurrency = Positive(value) },
                "--rate" => options with { Rate = int.Parse(value, CultureInfo.InvariantCulture) },
                "--duration" => options with { Duration = TimeSpan.FromSeconds(Positive(value)) },
                "--warmup" => options with { Warmup = TimeSpan.FromSeconds(int.Parse(value, CultureInfo.InvariantCulture)) },
                "--unit-years" => options with { UnitYears = Positive(value) },
                "--connections" => options with { Connections = Positive(value) },
                "--json" => options with { Json = value },
                "--fault" => options with { Fault = value },
                "--fault-at" => options with { FaultAt = TimeSpan.FromSeconds(Positive(value)) },
                "--database" => options with { Database = value },
                "--batch" => options with { Batch = Positive(value) },
                "--today" => options with { Today = DateOnly.ParseExact(value, "yyyy-MM-dd", CultureInfo.InvariantCulture) },
                "--routing" => options with { Routing = value is "affinity" or "none" ? value : throw new ArgumentException($"Unknown routing {value}.\n{Usage}") },
                _ => throw new ArgumentException($"Unknown option {args[i]}.\n{Usage}"),
            };
            i++;
        }

        return options;
    }

    private static int Positive(string value) =>
        int.TryParse(value, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"'{value}' is not a positive number.");
}
