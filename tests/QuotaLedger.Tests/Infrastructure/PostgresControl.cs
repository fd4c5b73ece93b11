using System.Diagnostics;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>pg_ctl on a test's private cluster (<see cref="TestDatabase.StartPrivateAsync"/>), as the postgres user
/// when the tests run as root: the faults a person or a crash inflicts on PostgreSQL.</summary>
internal static class PostgresControl
{
    /// <summary>A crash and recovery: every backend dies without a checkpoint, then the server starts again and replays
    /// its WAL.</summary>
    public static Task RestartImmediateAsync(LocalPostgresCluster cluster) =>
        PgCtlAsync(cluster, "restart", "-m", "immediate", "-w", "-t", "120", "-l", cluster.DataDirectory + ".log");

    /// <summary>The server dies and stays down.</summary>
    public static Task StopImmediateAsync(LocalPostgresCluster cluster) => PgCtlAsync(cluster, "stop", "-m", "immediate", "-w", "-t", "60");

    /// <summary>Starts a stopped server with the options it last ran with (pg_ctl restart reads them from
    /// postmaster.opts when no server is running).</summary>
    public static Task StartAgainAsync(LocalPostgresCluster cluster) =>
        PgCtlAsync(cluster, "restart", "-w", "-t", "120", "-l", cluster.DataDirectory + ".log");

    private static async Task PgCtlAsync(LocalPostgresCluster cluster, params string[] arguments)
    {
        // postmaster.opts begins with the postgres binary the cluster runs; pg_ctl is beside it.
        var options = await File.ReadAllTextAsync(Path.Combine(cluster.DataDirectory, "postmaster.opts"));
        var postgres = options.TrimStart()[..options.TrimStart().IndexOf(' ', StringComparison.Ordinal)];
        var pgCtl = Path.Combine(Path.GetDirectoryName(postgres)!, "pg_ctl");
        var start = new ProcessStartInfo(Environment.IsPrivilegedProcess ? "runuser" : pgCtl)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetDirectoryName(cluster.DataDirectory)!,
        };
        if (Environment.IsPrivilegedProcess)
        {
            foreach (var argument in new[] { "-u", "postgres", "--", pgCtl })
            {
                start.ArgumentList.Add(argument);
            }
        }

        start.ArgumentList.Add("-D");
        start.ArgumentList.Add(cluster.DataDirectory);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"pg_ctl {string.Join(' ', arguments)} failed: {await output}{await error}");
    }
}
