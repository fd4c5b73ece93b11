using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.Versioning;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>The no-configuration local cluster on a developer's machine: it changes no folder it did not create, keeps
/// its files to itself, and is stopped by the last server using it, never under another. Each test has its own folder
/// under the temp folder. As root (as on CI) PostgreSQL runs as the postgres user; as anyone else it runs as that user,
/// and the tests check the same rules for that user.</summary>
[UnsupportedOSPlatform("windows")]
[Collection(SlowTests.Collection), Trait("Category", "Slow")]
public sealed class LocalClusterTests : IAsyncLifetime
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode OthersMask = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    private readonly string _root = Path.Combine(Path.GetTempPath(), $"quotaledger-cluster-{Guid.NewGuid():N}");

    /// <summary>The user that runs PostgreSQL, and so owns what the cluster creates.</summary>
    private static string Runner => Environment.IsPrivilegedProcess ? "postgres" : Environment.UserName;

    private string Data => Path.Combine(_root, "pgdata");

    public Task InitializeAsync() => Task.CompletedTask;

    /// <summary>Stops whatever a failed test left running from its folder (found by its command line, even if its files
    /// are gone), then removes the folder.</summary>
    public async Task DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        foreach (var postmaster in Processes().Where(p => CommandLine(p) is { } line && line.Contains("postgres\0-D\0" + _root, StringComparison.Ordinal)))
        {
            await RunAsync("kill", "-INT", postmaster.ToString(CultureInfo.InvariantCulture)); // a fast shutdown
            await WaitUntilGoneAsync([postmaster]);
        }

        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_second_server_keeps_the_cluster_running_when_the_first_stops(bool theStarterStopsFirst)
    {
        var starter = await StartAsync(Data);
        var second = await StartAsync(Data);
        Assert.Equal(Port(starter), Port(second));

        var (first, last) = theStarterStopsFirst ? (starter, second) : (second, starter);
        await first.DisposeAsync();
        Assert.Equal(1, await QueryAsync(last));

        await last.DisposeAsync();
        await AssertStoppedAsync(last);
        Assert.False(Directory.Exists(Data));
    }

    [Fact]
    public async Task Two_servers_starting_and_stopping_together_share_one_cluster_and_stop_it()
    {
        var clusters = await Task.WhenAll(StartAsync(Data), StartAsync(Data));
        Assert.Equal(Port(clusters[0]), Port(clusters[1]));
        Assert.Equal(1, await QueryAsync(clusters[1]));

        await Task.WhenAll(clusters.Select(c => c.DisposeAsync().AsTask()));
        await AssertStoppedAsync(clusters[0]);
        Assert.False(Directory.Exists(Data));
    }

    [Fact]
    public async Task A_cluster_left_by_a_killed_server_is_reused_and_stopped_by_the_last_user()
    {
        using (var server = await StartServerProcessAsync(Data))
        {
            server.Kill(); // SIGKILL: no shutdown code runs
            await server.WaitForExitAsync();
        }

        var postmaster = File.ReadAllLines(Path.Combine(Data, "postmaster.pid"));
        var killedUser = Assert.Single(Directory.GetFiles(Data + ".users"));

        var next = await StartAsync(Data);
        Assert.Equal(int.Parse(postmaster[3], CultureInfo.InvariantCulture), Port(next));
        Assert.Equal(postmaster[0], File.ReadLines(Path.Combine(Data, "postmaster.pid")).First()); // reused, not restarted
        Assert.DoesNotContain(killedUser, Directory.GetFiles(Data + ".users"));

        await next.DisposeAsync();
        await AssertStoppedAsync(next);
        Assert.False(Directory.Exists(Data));
    }

    [Fact]
    public async Task A_registration_whose_process_is_gone_or_whose_pid_was_reused_does_not_keep_the_cluster_running()
    {
        var cluster = await StartAsync(Data, deleteOnDispose: false);
        var exited = Process.Start("sleep", "0")!;
        await exited.WaitForExitAsync();
        var users = Data + ".users";
        File.WriteAllText(Path.Combine(users, $"{exited.Id}.1.{Guid.NewGuid():N}"), ""); // killed long ago
        File.WriteAllText(Path.Combine(users, $"{Environment.ProcessId}.1.{Guid.NewGuid():N}"), ""); // our pid, an older start
        exited.Dispose();

        await cluster.DisposeAsync();
        await AssertStoppedAsync(cluster);
        Assert.Empty(Directory.GetFiles(users));
    }

    [Fact]
    public async Task A_stale_postmaster_pid_from_a_crashed_postgres_does_not_stop_the_next_start()
    {
        var crashed = await StartAsync(Data, deleteOnDispose: false);
        var postmaster = int.Parse(File.ReadLines(Path.Combine(Data, "postmaster.pid")).First(), CultureInfo.InvariantCulture);
        var children = ChildrenOf(postmaster);
        await RunAsync("kill", "-KILL", postmaster.ToString(CultureInfo.InvariantCulture));
        await WaitUntilGoneAsync([postmaster, .. children]);
        await crashed.DisposeAsync(); // finds nothing running to stop
        Assert.True(File.Exists(Path.Combine(Data, "postmaster.pid")));

        var next = await StartAsync(Data);
        Assert.Equal(1, await QueryAsync(next));
        Assert.NotEqual(postmaster.ToString(CultureInfo.InvariantCulture), File.ReadLines(Path.Combine(Data, "postmaster.pid")).First());
        await next.DisposeAsync();
        await AssertStoppedAsync(next);
    }

    [Fact]
    public async Task A_development_checkpoint_key_written_before_the_cluster_leaves_the_cluster_a_folder_it_can_use()
    {
        // A development server with a connection string (as the tests' servers are) needs only its checkpoint key, which
        // lives beside the cluster's data directory; the next server without one starts the cluster there.
        var keyFile = Path.Combine(_root, "checkpoint-signing.key");
        using (CheckpointSigner.FromOptions(new CheckpointOptions(), development: true, keyFile))
        {
        }

        Assert.Equal(Runner, await OwnerAsync(_root));
        Assert.Equal(Private, File.GetUnixFileMode(_root));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyFile));

        var cluster = await StartAsync(Data);
        try
        {
            Assert.Equal(1, await QueryAsync(cluster));
        }
        finally
        {
            await cluster.DisposeAsync();
        }
    }

    [Fact]
    public async Task An_existing_parent_folder_keeps_its_owner()
    {
        // As root a root-owned 0755 folder is closed to postgres; as anyone else, a 0555 folder of one's own is closed too.
        Directory.CreateDirectory(_root);
        var closed = Environment.IsPrivilegedProcess ? (UnixFileMode)0b111_101_101 : (UnixFileMode)0b101_101_101;
        File.SetUnixFileMode(_root, closed);
        var before = await OwnerAsync(_root);

        var refused = await Assert.ThrowsAsync<StartupRefusedException>(() => StartAsync(Data));
        Assert.Contains(_root, refused.Message, StringComparison.Ordinal);
        Assert.Contains("LocalPostgres:DataDirectory", refused.Message, StringComparison.Ordinal);
        Assert.Equal(before, await OwnerAsync(_root));
        Assert.Equal(closed, File.GetUnixFileMode(_root));
        Assert.False(Directory.Exists(Data));

        // A folder its user was given is used as it is.
        if (Environment.IsPrivilegedProcess)
        {
            await RunAsync("chown", "postgres:", _root);
        }

        File.SetUnixFileMode(_root, Private);
        var cluster = await StartAsync(Data);
        Assert.Equal(1, await QueryAsync(cluster));
        await cluster.DisposeAsync();
        Assert.Equal(Runner, await OwnerAsync(_root));
        Assert.Equal(Private, File.GetUnixFileMode(_root));
        Assert.True(Directory.Exists(_root)); // not the cluster's to delete
    }

    [Fact]
    public async Task An_existing_empty_data_directory_keeps_its_owner()
    {
        Directory.CreateDirectory(_root, Private);
        if (Environment.IsPrivilegedProcess)
        {
            await RunAsync("chown", "postgres:", _root);
        }

        // As root an empty folder of root's is closed to postgres; as anyone else, a 0555 folder of one's own is closed too.
        Directory.CreateDirectory(Data);
        var closed = Environment.IsPrivilegedProcess ? Private : (UnixFileMode)0b101_101_101;
        File.SetUnixFileMode(Data, closed);
        var before = await OwnerAsync(Data);

        var refused = await Assert.ThrowsAsync<StartupRefusedException>(() => StartAsync(Data));
        Assert.Contains(Data, refused.Message, StringComparison.Ordinal);
        Assert.Equal(before, await OwnerAsync(Data));
        Assert.Equal(closed, File.GetUnixFileMode(Data));
    }

    [Fact]
    public async Task The_cluster_files_are_private()
    {
        var parent = Path.Combine(_root, "cluster");
        var data = Path.Combine(parent, "pgdata");
        var cluster = await StartAsync(data, deleteOnDispose: false);
        try
        {
            foreach (var folder in new[] { _root, parent })
            {
                Assert.Equal(Private, File.GetUnixFileMode(folder));
                Assert.Equal(Runner, await OwnerAsync(folder));
            }

            Assert.Equal(Private, File.GetUnixFileMode(data));
            Assert.Equal(Private, File.GetUnixFileMode(data + ".users"));
            string[] files = [data + ".password", data + ".serving-password", data + ".log", data + ".lock", .. Directory.GetFiles(data + ".users")];
            Assert.Equal(5, files.Length);
            Assert.All(files, f => Assert.Equal((UnixFileMode)0, File.GetUnixFileMode(f) & OthersMask));
        }
        finally
        {
            await cluster.DisposeAsync();
        }

        await AssertStoppedAsync(cluster);
    }

    private static Task<LocalPostgresCluster> StartAsync(string dataDirectory, bool deleteOnDispose = true) =>
        LocalPostgresCluster.StartAsync(
            new LocalPostgresOptions { DataDirectory = dataDirectory, DeleteOnDispose = deleteOnDispose },
            NullLogger.Instance);

    private static int Port(LocalPostgresCluster cluster) => new NpgsqlConnectionStringBuilder(cluster.ConnectionString).Port;

    private static async Task<int> QueryAsync(LocalPostgresCluster cluster)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(cluster.ConnectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT 1", connection);
        return (int)(await command.ExecuteScalarAsync())!;
    }

    private static async Task AssertStoppedAsync(LocalPostgresCluster cluster)
    {
        NpgsqlConnection.ClearAllPools();
        var refused = await Assert.ThrowsAnyAsync<NpgsqlException>(() => QueryAsync(cluster));
        Assert.IsType<SocketException>(refused.InnerException, exactMatch: false);
    }

    /// <summary>The real server, with no connection string, on a cluster in <paramref name="dataDirectory"/>; returned
    /// once it listens.</summary>
    private static async Task<Process> StartServerProcessAsync(string dataDirectory)
    {
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "QuotaLedger.Server.dll")])
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment =
            {
                ["ConnectionStrings__Ledger"] = "",
                ["LocalPostgres__DataDirectory"] = dataDirectory,
                ["Kestrel__Endpoints__Grpc__Url"] = $"http://127.0.0.1:{TestPorts.Free()}",
                ["Kestrel__Endpoints__Web__Url"] = "http://127.0.0.1:0",
                ["DOTNET_ENVIRONMENT"] = "Development",
                ["Expiry__Enabled"] = "false",
                ["Checkpoints__Enabled"] = "false",
            },
        };
        var output = new StringBuilder();
        var listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = Process.Start(start)!;
        void OnLine(object sender, DataReceivedEventArgs line)
        {
            lock (output)
            {
                output.AppendLine(line.Data);
            }

            if (line.Data?.Contains("Now listening on", StringComparison.Ordinal) == true)
            {
                listening.TrySetResult();
            }
        }

        process.OutputDataReceived += OnLine;
        process.ErrorDataReceived += OnLine;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var exited = process.WaitForExitAsync();
        if (await Task.WhenAny(listening.Task, exited, Task.Delay(TimeSpan.FromMinutes(3))) != listening.Task)
        {
            process.Kill(entireProcessTree: true);
            lock (output)
            {
                Assert.Fail($"The server did not start listening:{Environment.NewLine}{output}");
            }
        }

        return process;
    }

    /// <summary>Owner of a file, by name.</summary>
    private static async Task<string> OwnerAsync(string path) => await RunAsync("stat", "-c", "%U", path);

    private static async Task<string> RunAsync(string fileName, params string[] arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(fileName, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = await process.StandardOutput.ReadToEndAsync();
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"{fileName} {string.Join(' ', arguments)}: {error}");
        return output.Trim();
    }

    /// <summary>The processes whose parent is <paramref name="pid"/> (field 4 of /proc/*/stat).</summary>
    private static int[] ChildrenOf(int pid) => Processes().Where(child => ParentOf(child) == pid).ToArray();

    private static IEnumerable<int> Processes() =>
        Directory.EnumerateDirectories("/proc")
            .Select(d => int.TryParse(Path.GetFileName(d), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : 0)
            .Where(pid => pid > 0);

    private static int? ParentOf(int pid) =>
        Read($"/proc/{pid}/stat") is { } stat ? int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], CultureInfo.InvariantCulture) : null;

    private static string? CommandLine(int pid) => Read($"/proc/{pid}/cmdline");

    private static string? Read(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (IOException)
        {
            return null; // the process is gone
        }
    }

    /// <summary>Until none of the processes exists, not even as a zombie waiting to be reaped.</summary>
    private static async Task WaitUntilGoneAsync(int[] pids)
    {
        using var patience = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        while (pids.Any(pid => Directory.Exists($"/proc/{pid}")))
        {
            await Task.Delay(100, patience.Token);
        }
    }
}
