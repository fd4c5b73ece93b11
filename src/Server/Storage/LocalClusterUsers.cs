using System.Diagnostics;
using System.Globalization;

namespace QuotaLedger.Server.Storage;

/// <summary>
/// The servers using one <see cref="LocalPostgresCluster"/>, so that the last one out stops it and no server stops it
/// under another. Each user is a file in <c>&lt;data&gt;.users/</c> named <c>&lt;pid&gt;.&lt;start&gt;.&lt;instance&gt;</c>:
/// the process id, the process's start time (field 22 of <c>/proc/&lt;pid&gt;/stat</c>, or 0 where there is no /proc)
/// so that a reused pid does not pass for the process that registered, and an id per cluster instance. A file whose
/// process is gone (a server killed before it could leave) does not count and is removed. Joining, leaving and the
/// decisions that go with them are made under <see cref="LockAsync"/>.
/// </summary>
internal sealed class LocalClusterUsers(string dataDirectory)
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode PrivateFolder = OwnerOnly | UnixFileMode.UserExecute;
    private static readonly TimeSpan LockPatience = TimeSpan.FromMinutes(5); // longer than initdb plus three pg_ctl starts

    private readonly string _me = $"{Environment.ProcessId}.{StartTimeOf(Environment.ProcessId) ?? "0"}.{Guid.NewGuid():N}";

    public string Folder { get; } = dataDirectory + ".users";

    public string LockFile { get; } = dataDirectory + ".lock";

    /// <summary>Waits for, then holds, the lock on <c>&lt;data&gt;.lock</c> until the returned stream is disposed. It is an
    /// advisory flock (.NET takes one for <see cref="FileShare.None"/> on Unix), so it also separates two instances in
    /// one process, and the kernel releases it when its process dies. (DOTNET_SYSTEM_IO_DISABLEFILELOCKING would turn it off.)</summary>
    public async Task<FileStream> LockAsync(Action onWait, CancellationToken cancellationToken)
    {
        var options = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = OwnerOnly;
        }

        var started = Stopwatch.GetTimestamp();
        var waited = false;
        while (true)
        {
            try
            {
                return new FileStream(LockFile, options);
            }
            catch (IOException e) when (e.GetType() == typeof(IOException)) // held; a missing folder is a subclass
            {
                if (Stopwatch.GetElapsedTime(started) > LockPatience)
                {
                    throw new InvalidOperationException(
                        $"Another process has held {LockFile} for {LockPatience.TotalMinutes} minutes while starting or stopping the " +
                        $"PostgreSQL cluster in {dataDirectory}. Stop it, or set LocalPostgres:DataDirectory to another folder.", e);
                }

                if (!waited)
                {
                    waited = true;
                    onWait();
                }

                await Task.Delay(TimeSpan.FromMilliseconds(100), cancellationToken);
            }
        }
    }

    /// <summary>Registers this instance; returns how many registrations of processes that are gone it removed.</summary>
    public int Join()
    {
        var gone = RemoveGone();
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(Folder);
        }
        else
        {
            Directory.CreateDirectory(Folder, PrivateFolder);
        }

        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = OwnerOnly;
        }

        using (new FileStream(Path.Combine(Folder, _me), options))
        {
        }

        return gone;
    }

    /// <summary>Removes this instance's registration; returns how many other live users remain.</summary>
    public int Leave()
    {
        if (!Directory.Exists(Folder))
        {
            return 0; // a start that failed before it joined
        }

        File.Delete(Path.Combine(Folder, _me));
        RemoveGone();
        return Directory.EnumerateFiles(Folder).Count();
    }

    /// <summary>Removes the registry and the lock file, once the cluster itself is deleted.</summary>
    public void Delete()
    {
        if (Directory.Exists(Folder))
        {
            Directory.Delete(Folder, recursive: true);
        }

        // Unlinked while still held, so nobody takes it before the cluster is gone.
        File.Delete(LockFile);
    }

    private int RemoveGone()
    {
        if (!Directory.Exists(Folder))
        {
            return 0;
        }

        var gone = 0;
        foreach (var file in Directory.EnumerateFiles(Folder).ToList())
        {
            if (!IsAlive(Path.GetFileName(file)))
            {
                File.Delete(file);
                gone++;
            }
        }

        return gone;
    }

    private static bool IsAlive(string registration)
    {
        var parts = registration.Split('.');
        if (parts.Length != 3 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
        {
            return false; // not a registration this code wrote
        }

        if (Directory.Exists("/proc"))
        {
            return StartTimeOf(pid) is { } started && (parts[1] == "0" || parts[1] == started);
        }

        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>Field 22 of <c>/proc/&lt;pid&gt;/stat</c> (start time after boot, in clock ticks), or null when there is
    /// no such live process or no /proc. A zombie counts as gone.</summary>
    private static string? StartTimeOf(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        // The command name (field 2) is in parentheses and may hold spaces or parentheses itself: count from the last ')'.
        var fields = stat[(stat.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length < 20 || fields[0] is "Z" or "X")
        {
            return null;
        }

        return fields[19];
    }
}
