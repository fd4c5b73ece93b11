using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace QuotaLedger.LoadTest;

/// <summary>The server on its no-configuration default (a private local PostgreSQL), built and started from this
/// checkout, on a free loopback port.</summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;

    private ServerProcess(Process process, Uri address)
    {
        _process = process;
        Address = address;
    }

    public Uri Address { get; }

    public int ProcessId => _process.Id;

    public static async Task<ServerProcess> StartAsync()
    {
        var root = RepositoryRoot();
        var output = Path.Combine(root, ".artifacts", "loadtest-server");
        Console.WriteLine($"Building the server (Release) into {output} ...");
        await RunAsync("dotnet", ["build", Path.Combine(root, "src", "Server", "Server.csproj"), "-c", "Release", "-o", output, "-v", "quiet", "-nologo"]);

        var port = FreePort();
        var address = new Uri($"http://127.0.0.1:{port}");
        var start = new ProcessStartInfo("dotnet", [Path.Combine(output, "QuotaLedger.Server.dll")])
        {
            WorkingDirectory = output,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment =
            {
                // The load test's own server runs the unauthenticated development mode, on loopback.
                ["ASPNETCORE_ENVIRONMENT"] = "Development",
                ["Kestrel__Endpoints__Grpc__Url"] = address.ToString(),
                // The development HTTP/1.1 endpoint (JSON API, bureau page) on a port of its own (several servers may run at once).
                ["Kestrel__Endpoints__Web__Url"] = "http://127.0.0.1:0",
                ["Logging__LogLevel__Default"] = "Warning",
                ["Logging__LogLevel__QuotaLedger"] = "Information",
                ["RateLimits__PermitsPerSecond"] = "1000000",
                ["RateLimits__Burst"] = "1000000",
            },
        };
        var process = Process.Start(start) ?? throw new InvalidOperationException("The server did not start.");
        process.OutputDataReceived += (_, e) => Echo(e.Data);
        process.ErrorDataReceived += (_, e) => Echo(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        Console.WriteLine($"Started the server (pid {process.Id}) on {address}");
        return new ServerProcess(process, address);
    }

    /// <summary>The server's peak resident memory so far, from /proc.</summary>
    public long? PeakRssKilobytes()
    {
        var status = $"/proc/{_process.Id}/status";
        if (!File.Exists(status))
        {
            return null;
        }

        var line = File.ReadLines(status).FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line is null ? null : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            // SIGTERM lets the server stop its PostgreSQL cluster.
            Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)])?.WaitForExit();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await _process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
            }
        }

        _process.Dispose();
    }

    private static void Echo(string? line)
    {
        if (!string.IsNullOrEmpty(line))
        {
            Console.WriteLine($"  [server] {line}");
        }
    }

    private static async Task RunAsync(string file, string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(file, args)) ?? throw new InvalidOperationException($"{file} did not start.");
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed with exit code {process.ExitCode}.");
        }
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "QuotaLedger.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("Run the load test from the QuotaLedger checkout, or pass --address.");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
