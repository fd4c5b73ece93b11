using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Grpc.Health.V1;
using Grpc.Net.Client;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>The server as its own process (<c>dotnet QuotaLedger.Server.dll</c>, development mode, the real clock) on one
/// loopback port and one database for its whole life: stopped (SIGTERM), killed (SIGKILL, as <c>kill -9</c>) and
/// started again on the same port and database, as an operator's restart or a crash and its recovery do to a client.</summary>
public sealed class ServerProcess : IAsyncDisposable
{
    private readonly TestDatabase _database;
    private readonly StringBuilder _log = new();
    private Process? _process;

    private ServerProcess(TestDatabase database, int port)
    {
        _database = database;
        Port = port;
    }

    public int Port { get; }

    public Uri Address => new($"http://127.0.0.1:{Port}");

    /// <summary>Starts a server on a free port and waits until it serves.</summary>
    public static async Task<ServerProcess> StartAsync(TestDatabase database)
    {
        var server = new ServerProcess(database, TestPorts.Free());
        await server.StartAgainAsync();
        return server;
    }

    /// <summary>Starts the server (again) on its port and database, and waits until its health check says serving, or
    /// with <paramref name="untilListening"/> only until its port takes connections (the moment a client can be back).</summary>
    public async Task StartAgainAsync(bool untilListening = false)
    {
        if (_process is { HasExited: false })
        {
            throw new InvalidOperationException("The server is running.");
        }

        _process?.Dispose();
        var start = new ProcessStartInfo(Dotnet, [Path.Combine(AppContext.BaseDirectory, "QuotaLedger.Server.dll")])
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["ConnectionStrings__Ledger"] = _database.ServingConnectionString;
        start.Environment["ConnectionStrings__LedgerMigrations"] = _database.ConnectionString;
        // The run's key: a server with no key file of its own would make one in the default data folder.
        start.Environment["Checkpoints__SigningKeyFile"] = _database.CheckpointKeyFile;
        start.Environment["Kestrel__Endpoints__Grpc__Url"] = Address.ToString().TrimEnd('/');
        start.Environment["Kestrel__Endpoints__Web__Url"] = "http://127.0.0.1:0";
        start.Environment["DOTNET_ENVIRONMENT"] = "Development";
        start.Environment["Expiry__Enabled"] = "false";
        start.Environment["Alerts__Enabled"] = "false";
        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        if (untilListening)
        {
            await WaitUntilListeningAsync();
        }
        else
        {
            await WaitUntilServingAsync();
        }
    }

    /// <summary>An orderly stop (SIGTERM): the server finishes what it is doing and closes its connections.</summary>
    public async Task StopAsync()
    {
        var process = Running();
        using (var term = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!)
        {
            await term.WaitForExitAsync();
        }

        await process.WaitForExitAsync();
    }

    /// <summary>A crash (SIGKILL): no shutdown code runs; the kernel closes its sockets.</summary>
    public async Task KillAsync()
    {
        var process = Running();
        process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
    }

    /// <summary>What the server has printed, for a failure's message.</summary>
    public string Log()
    {
        lock (_log)
        {
            return _log.ToString();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }

        _process?.Dispose();
    }

    private Process Running() => _process is { HasExited: false } process ? process : throw new InvalidOperationException("The server is not running.");

    private async Task WaitUntilListeningAsync()
    {
        var giveUp = DateTime.UtcNow.AddSeconds(90);
        while (true)
        {
            if (_process!.HasExited)
            {
                throw new InvalidOperationException($"The server exited before listening:\n{Log()}");
            }

            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < giveUp)
            {
                await Task.Delay(20);
            }
        }
    }

    private async Task WaitUntilServingAsync()
    {
        using var channel = GrpcChannel.ForAddress(Address);
        var health = new Health.HealthClient(channel);
        var giveUp = DateTime.UtcNow.AddSeconds(90);
        while (true)
        {
            if (_process!.HasExited)
            {
                throw new InvalidOperationException($"The server exited before serving:\n{Log()}");
            }

            try
            {
                if ((await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(5))).Status == HealthCheckResponse.Types.ServingStatus.Serving)
                {
                    return;
                }
            }
            catch (Grpc.Core.RpcException) when (DateTime.UtcNow < giveUp)
            {
            }

            if (DateTime.UtcNow >= giveUp)
            {
                throw new InvalidOperationException($"The server did not serve within 90 s:\n{Log()}");
            }

            await Task.Delay(100);
        }
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_log)
            {
                _log.AppendLine(line);
            }
        }
    }

    /// <summary>The dotnet that runs the tests (the SDK's host sets DOTNET_HOST_PATH for the processes it starts).</summary>
    private static string Dotnet => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
}
