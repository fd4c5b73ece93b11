using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Npgsql;
using QuotaLedger.Server.Security;

namespace QuotaLedger.Server.Storage;

/// <summary>Settings for <see cref="LocalPostgresCluster"/>.</summary>
public sealed class LocalPostgresOptions : ICheckedSettings
{
    /// <summary>Where the cluster's data lives; reused across restarts. Default: <c>/var/tmp/quotaledger/pgdata</c>.</summary>
    public string? DataDirectory { get; set; }

    /// <summary>
    /// Folder holding <c>initdb</c> and <c>pg_ctl</c>. Default: the first PATH entry with <c>pg_ctl</c>,
    /// then the newest <c>/usr/lib/postgresql/*/bin</c>, then <c>/usr/local/pgsql/bin</c>.
    /// </summary>
    public string? BinDirectory { get; set; }

    /// <summary>The database created (if missing) and named in <see cref="LocalPostgresCluster.ConnectionString"/>.</summary>
    public string Database { get; set; } = "quotaledger";

    /// <summary>Remove the data directory when disposed (for throwaway clusters, e.g. in tests).</summary>
    public bool DeleteOnDispose { get; set; }

    public IEnumerable<string> Problems()
    {
        if (string.IsNullOrWhiteSpace(Database) || !Database.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
        {
            yield return $"{nameof(Database)} must be a name of letters, digits and underscores; it is '{Database}'.";
        }

        if (BinDirectory is { Length: > 0 } bin && !Directory.Exists(bin))
        {
            yield return $"{nameof(BinDirectory)} names a folder that does not exist: {bin}.";
        }
    }
}

/// <summary>Thrown when no PostgreSQL server binaries (<c>initdb</c>, <c>pg_ctl</c>) can be found.</summary>
public sealed class PostgresBinariesNotFoundException : Exception
{
    private const string Help =
        "Install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql), " +
        "set LocalPostgres:BinDirectory to the folder holding initdb and pg_ctl, " +
        "or set ConnectionStrings:Ledger to use an existing PostgreSQL server.";

    public PostgresBinariesNotFoundException()
        : base("PostgreSQL server binaries (initdb, pg_ctl) were not found. " + Help)
    {
    }

    public PostgresBinariesNotFoundException(string message)
        : base(message)
    {
    }

    public PostgresBinariesNotFoundException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    internal static PostgresBinariesNotFoundException Searched(string locations) =>
        new($"PostgreSQL server binaries (initdb, pg_ctl) were not found in {locations}. {Help}");
}

/// <summary>
/// A PostgreSQL cluster in a local folder, created with initdb on first use and started with pg_ctl on
/// a free loopback port. A cluster already running from the folder is reused. Every instance registers as a user of
/// the cluster (<see cref="LocalClusterUsers"/>) and the last live user stops it, whichever instance started it; a
/// cluster left running by a server that was killed is taken over by the next one.
/// When the process runs as root, the PostgreSQL tools run as the <c>postgres</c> user. Folders it creates are 0700 and
/// owned by the user that runs PostgreSQL; folders it did not create are never changed, only checked.
/// </summary>
public sealed class LocalPostgresCluster : IAsyncDisposable
{
    private const string DefaultDataDirectory = "/var/tmp/quotaledger/pgdata";
    private const string SuperUser = "quotaledger";
    private const string ServingUser = "quotaledger_app";
    private const string PostgresUser = "postgres";
    private const string PasswordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    private const int MaxSocketPathBytes = 100; // sun_path is 108 bytes on Linux, 104 on macOS.
    private const int StartAttempts = 3;

    private readonly ILogger _logger;
    private readonly string _binDirectory;
    private readonly string _parentDirectory;
    private readonly string _passwordFile;
    private readonly string _servingPasswordFile;
    private readonly string _logFile;
    private readonly string _database;
    private readonly bool _deleteOnDispose;
    private readonly bool _runAsPostgres;
    private readonly LocalClusterUsers _users;
    private readonly List<string> _createdDirectories = [];
    private string? _postgresOwner;
    private bool _locked;
    private int _disposed;

    private LocalPostgresCluster(LocalPostgresOptions options, string dataDirectory, string binDirectory, ILogger logger)
    {
        _logger = logger;
        _binDirectory = binDirectory;
        DataDirectory = dataDirectory;
        _parentDirectory = Path.GetDirectoryName(dataDirectory)
            ?? throw new ArgumentException("The data directory cannot be a file system root.", nameof(options));
        _passwordFile = dataDirectory + ".password";
        _servingPasswordFile = dataDirectory + ".serving-password";
        _logFile = dataDirectory + ".log";
        _database = options.Database;
        _deleteOnDispose = options.DeleteOnDispose;
        _runAsPostgres = !OperatingSystem.IsWindows() && Environment.IsPrivilegedProcess;
        _users = new LocalClusterUsers(dataDirectory);
    }

    /// <summary>Npgsql connection string for <see cref="LocalPostgresOptions.Database"/> as the cluster's superuser, which
    /// owns the schema and runs the migrations.</summary>
    public string ConnectionString { get; private set; } = string.Empty;

    /// <summary>The same database as the serving role <c>quotaledger_app</c>: a login with no rights of its own, which
    /// the migrations grant what the server needs (<see cref="DatabaseRoles"/>).</summary>
    public string ServingConnectionString { get; private set; } = string.Empty;

    /// <summary>Full path of the cluster's data directory.</summary>
    public string DataDirectory { get; }

    private string PgVersionFile => Path.Combine(DataDirectory, "PG_VERSION");

    /// <summary>Who runs PostgreSQL, for messages.</summary>
    private string PostgresRunner => _runAsPostgres ? $"{PostgresUser} user" : $"user {Environment.UserName}";

    /// <summary>Creates the cluster if needed, starts it unless it is already running, creates the database, and registers
    /// this instance as one of the cluster's users.</summary>
    public static async Task<LocalPostgresCluster> StartAsync(
        LocalPostgresOptions options, ILogger logger, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.Database);

        var dataDirectory = Path.TrimEndingDirectorySeparator(Path.GetFullPath(options.DataDirectory ?? DefaultDataDirectory));
        var cluster = new LocalPostgresCluster(options, dataDirectory, FindBinDirectory(options.BinDirectory), logger);
        try
        {
            await cluster.StartCoreAsync(cancellationToken);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Leaves the cluster and, if no other live server uses it, stops it, then deletes it if
    /// <see cref="LocalPostgresOptions.DeleteOnDispose"/> is set.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (_locked)
        {
            try
            {
                await LeaveAsync();
            }
            catch (Exception ex) when (ex is InvalidOperationException or Win32Exception or IOException or UnauthorizedAccessException)
            {
                LocalPostgresClusterLog.StopFailed(_logger, DataDirectory, ex);
                return; // Never delete the files of a server that may still be running.
            }
        }

        if (_deleteOnDispose || !_locked)
        {
            DeleteCreatedDirectories(); // only those left empty
        }
    }

    /// <summary>Under the lock: unregisters, and stops (and deletes) the cluster unless another live server uses it.</summary>
    private async Task LeaveAsync()
    {
        await using var gate = await LockAsync(CancellationToken.None);
        var others = _users.Leave();
        if (others > 0)
        {
            LocalPostgresClusterLog.LeftRunning(_logger, DataDirectory, others);
            if (_deleteOnDispose)
            {
                LocalPostgresClusterLog.NotDeletingRunning(_logger, DataDirectory, others);
            }

            return;
        }

        if (await IsRunningAsync(CancellationToken.None))
        {
            await RunToolAsync("pg_ctl", ["stop", "-D", DataDirectory, "-m", "fast", "-w", "-t", "60"], true, CancellationToken.None);
            LocalPostgresClusterLog.Stopped(_logger, DataDirectory);
        }

        if (_deleteOnDispose)
        {
            DeleteFiles();
        }
    }

    private async Task StartCoreAsync(CancellationToken cancellationToken)
    {
        await PrepareDirectoriesAsync(cancellationToken);

        // One server at a time creates, starts or joins the cluster, so two starting together share one.
        await using var gate = await LockAsync(cancellationToken);
        _locked = true;

        var password = File.Exists(PgVersionFile)
            ? await ReadPasswordAsync(cancellationToken)
            : await InitializeClusterAsync(cancellationToken);

        var port = await GetRunningPortAsync(cancellationToken);
        if (port is not null)
        {
            LocalPostgresClusterLog.Reusing(_logger, DataDirectory, port.Value, _logFile);
        }
        else
        {
            port = await StartServerAsync(cancellationToken);
        }

        ConnectionString = new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = port.Value,
            Username = SuperUser,
            Password = password,
            Database = _database,
        }.ConnectionString;

        await EnsureDatabaseAsync(cancellationToken);
        await EnsureServingRoleAsync(cancellationToken);

        var gone = _users.Join();
        if (gone > 0)
        {
            LocalPostgresClusterLog.TookOver(_logger, DataDirectory, gone);
        }
    }

    private Task<FileStream> LockAsync(CancellationToken cancellationToken) =>
        _users.LockAsync(() => LocalPostgresClusterLog.WaitingForLock(_logger, DataDirectory, _users.LockFile), cancellationToken);

    private async Task EnsureServingRoleAsync(CancellationToken cancellationToken)
    {
        string password;
        if (File.Exists(_servingPasswordFile))
        {
            password = (await File.ReadAllTextAsync(_servingPasswordFile, cancellationToken)).Trim();
        }
        else
        {
            password = RandomNumberGenerator.GetString(PasswordAlphabet, 32);
            await WriteSecretAsync(_servingPasswordFile, password, cancellationToken);
        }

        await using (var connection = new NpgsqlConnection(ConnectionString))
        {
            await connection.OpenAsync(cancellationToken);
            await DatabaseRoles.EnsureLoginRoleAsync(connection, ServingUser, password, cancellationToken);
        }

        ServingConnectionString = new NpgsqlConnectionStringBuilder(ConnectionString) { Username = ServingUser, Password = password }.ConnectionString;
    }

    /// <summary>Creates a file readable by its owner only (0600) before writing the secret into it.</summary>
    private static async Task WriteSecretAsync(string path, string secret, CancellationToken cancellationToken)
    {
        File.Delete(path);
        var fileOptions = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            fileOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        await using var stream = new FileStream(path, fileOptions);
        await stream.WriteAsync(Encoding.ASCII.GetBytes(secret + "\n"), cancellationToken);
    }

    /// <summary>Creates the missing folders down to the data directory's parent, and checks that the user that runs
    /// PostgreSQL may write where it must. A folder this process did not create is never chowned or chmodded: it could
    /// be anybody's, a system folder even.</summary>
    private async Task PrepareDirectoriesAsync(CancellationToken cancellationToken)
    {
        if (OperatingSystem.IsWindows())
        {
            if (!Directory.Exists(_parentDirectory))
            {
                Directory.CreateDirectory(_parentDirectory);
                _createdDirectories.Add(_parentDirectory);
            }

            return;
        }

        if (_runAsPostgres)
        {
            _postgresOwner = await GetPostgresOwnerAsync(cancellationToken);
        }

        var missing = new Stack<string>();
        for (var folder = _parentDirectory; !Directory.Exists(folder); folder = Path.GetDirectoryName(folder)!)
        {
            missing.Push(folder);
        }

        if (missing.TryPeek(out var top))
        {
            await RequireAccessAsync(Path.GetDirectoryName(top)!, write: false, cancellationToken);
        }

        while (missing.TryPop(out var folder))
        {
            if (await CreateDirectoryAsync(folder, cancellationToken))
            {
                _createdDirectories.Add(folder);
            }
        }

        if (!_createdDirectories.Contains(_parentDirectory))
        {
            await RequireAccessAsync(_parentDirectory, write: true, cancellationToken);
        }

        if (Directory.Exists(DataDirectory) && !File.Exists(PgVersionFile))
        {
            await RequireAccessAsync(DataDirectory, write: true, cancellationToken); // initdb fills it
        }
    }

    /// <summary>Creates <paramref name="folder"/>, where a cluster's data directory would go, as the cluster itself would:
    /// 0700 and owned by the user that runs PostgreSQL (<c>postgres</c> when this process is root), its missing parents
    /// likewise. For a server that needs only a file there (the development checkpoint key, beside the cluster), so that
    /// the next server to start the cluster finds a folder it can use. An existing folder is left as it is.</summary>
    internal static async Task CreateFolderAsync(string folder, CancellationToken cancellationToken)
    {
        if (Directory.Exists(folder))
        {
            return;
        }

        if (OperatingSystem.IsWindows() || !Environment.IsPrivilegedProcess)
        {
            DevelopmentPki.CreatePrivateDirectory(folder);
            return;
        }

        await CreateFolderAsync(Path.GetDirectoryName(folder)!, cancellationToken);
        var made = await RunProcessAsync("runuser", ["-u", PostgresUser, "--", "mkdir", "-m", "700", folder], false, cancellationToken, "/");
        if (made.ExitCode == 0 || Directory.Exists(folder))
        {
            return;
        }

        // The postgres user may not write the folder above: made here and given to it. Without a postgres user no cluster
        // can run here anyway, and the folder stays this process's.
        DevelopmentPki.CreatePrivateDirectory(folder);
        var uid = await RunProcessAsync("id", ["-u", PostgresUser], false, cancellationToken);
        var gid = await RunProcessAsync("id", ["-g", PostgresUser], false, cancellationToken);
        if (uid.ExitCode == 0 && gid.ExitCode == 0)
        {
            await RunProcessAsync("chown", [uid.Output + ":" + gid.Output, folder], true, cancellationToken);
        }
    }

    /// <summary>Creates one folder, 0700 and owned by the user that runs PostgreSQL; false if another process made it
    /// first (then it is not ours to change). mkdir itself says which, where checking beforehand could be outrun.</summary>
    private async Task<bool> CreateDirectoryAsync(string folder, CancellationToken cancellationToken)
    {
        // As that user where it may write the folder above (/tmp, /var/tmp): the folder is then never root's for a moment.
        var made = await RunToolAsync("mkdir", ["-m", "700", folder], false, cancellationToken, "/");
        if (made.ExitCode != 0 && !Directory.Exists(folder) && _postgresOwner is not null)
        {
            made = await RunProcessAsync("mkdir", ["-m", "700", folder], false, cancellationToken);
            if (made.ExitCode == 0)
            {
                await RunProcessAsync("chown", [_postgresOwner, folder], true, cancellationToken);
            }
        }

        if (made.ExitCode == 0)
        {
            return true;
        }

        return Directory.Exists(folder)
            ? false
            : throw new StartupRefusedException(
                $"Could not create {folder} for the PostgreSQL cluster in {DataDirectory}: {made.Output} " +
                "Set LocalPostgres:DataDirectory to a folder this user can create.");
    }

    private async Task RequireAccessAsync(string folder, bool write, CancellationToken cancellationToken)
    {
        string[] test = write ? ["-w", folder, "-a", "-x", folder] : ["-x", folder];
        if ((await RunToolAsync("test", test, false, cancellationToken, "/")).ExitCode == 0)
        {
            return;
        }

        throw new StartupRefusedException(write
            ? $"The {PostgresRunner} cannot write to {folder}, which the PostgreSQL cluster in {DataDirectory} needs; " +
              "this server changes the owner or mode only of folders it creates. Set LocalPostgres:DataDirectory to a folder " +
              $"elsewhere (the default is {DefaultDataDirectory}), or give the {PostgresRunner} write access to {folder} yourself."
            : $"The {PostgresRunner} cannot reach {folder}, so it cannot use a data directory below it. Choose a " +
              "LocalPostgres:DataDirectory whose parent folders it can reach (root's home folder, for example, is closed to " +
              $"other users), or fix the permissions of {folder} yourself.");
    }

    private async Task<string> InitializeClusterAsync(CancellationToken cancellationToken)
    {
        LocalPostgresClusterLog.Initializing(_logger, DataDirectory, _binDirectory);

        var password = RandomNumberGenerator.GetString(PasswordAlphabet, 32);
        await WriteSecretAsync(_passwordFile, password, cancellationToken);

        if (_postgresOwner is not null)
        {
            await RunProcessAsync("chown", [_postgresOwner, _passwordFile], true, cancellationToken);
        }

        List<string> arguments =
        [
            "-D", DataDirectory,
            "--username=" + SuperUser,
            "--pwfile=" + _passwordFile,
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ];
        if (_deleteOnDispose)
        {
            arguments.Add("--no-sync"); // throwaway cluster: skip flushing the fresh files to disk
        }

        await RunToolAsync("initdb", arguments, true, cancellationToken);
        return password;
    }

    private async Task<string> ReadPasswordAsync(CancellationToken cancellationToken)
    {
        var password = File.Exists(_passwordFile) ? (await File.ReadAllTextAsync(_passwordFile, cancellationToken)).Trim() : "";
        if (password.Length == 0)
        {
            throw new InvalidOperationException(
                $"The PostgreSQL cluster in {DataDirectory} exists, but its password file {_passwordFile} is missing or empty. " +
                $"Restore that file, or delete {DataDirectory} to create a new cluster.");
        }

        return password;
    }

    /// <summary>The port of a server already running from the data directory, or null (also for a stale postmaster.pid).</summary>
    private async Task<int?> GetRunningPortAsync(CancellationToken cancellationToken)
    {
        var pidFile = Path.Combine(DataDirectory, "postmaster.pid");
        if (!await IsRunningAsync(cancellationToken))
        {
            return null;
        }

        var lines = await File.ReadAllLinesAsync(pidFile, cancellationToken);
        if (lines.Length >= 4 && int.TryParse(lines[3], NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port > 0)
        {
            return port;
        }

        throw new InvalidOperationException($"PostgreSQL is running from {DataDirectory}, but {pidFile} holds no port.");
    }

    /// <summary>Whether a server runs from the data directory: pg_ctl checks that the pid in postmaster.pid is alive, so a
    /// file left by a crashed server does not count (and pg_ctl start replaces it).</summary>
    private async Task<bool> IsRunningAsync(CancellationToken cancellationToken) =>
        File.Exists(Path.Combine(DataDirectory, "postmaster.pid"))
        && (await RunToolAsync("pg_ctl", ["status", "-D", DataDirectory], false, cancellationToken)).ExitCode == 0;

    private async Task<int> StartServerAsync(CancellationToken cancellationToken)
    {
        string socketDirectory;
        if (Encoding.UTF8.GetByteCount(Path.Combine(_parentDirectory, ".s.PGSQL.65535")) <= MaxSocketPathBytes)
        {
            socketDirectory = "\"" + _parentDirectory.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
        }
        else
        {
            socketDirectory = ""; // no Unix socket: TCP only
            LocalPostgresClusterLog.SocketDisabled(_logger, _parentDirectory);
        }

        for (var attempt = 1; ; attempt++)
        {
            // The port is free now, but another process may take it before PostgreSQL binds it: retry then.
            var port = FindFreePort();
            string[] serverArguments =
            [
                "-p", port.ToString(CultureInfo.InvariantCulture),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "unix_socket_directories=" + socketDirectory,
                "-c", "max_connections=200",
                "-c", "shared_buffers=128MB",
            ];

            // pg_ctl hands -o to /bin/sh, so every argument is quoted for the shell. It creates the log under umask 077
            // (the data directory's mode), so the log is private too.
            var serverOptions = string.Join(' ', serverArguments.Select(a => "'" + a.Replace("'", "'\\''", StringComparison.Ordinal) + "'"));
            var logStart = File.Exists(_logFile) ? new FileInfo(_logFile).Length : 0;
            var result = await RunToolAsync(
                "pg_ctl",
                ["start", "-D", DataDirectory, "-l", _logFile, "-w", "-t", "60", "-o", serverOptions],
                false,
                cancellationToken);
            if (result.ExitCode == 0)
            {
                LocalPostgresClusterLog.Started(_logger, DataDirectory, port, _logFile);
                return port;
            }

            var serverLog = ReadLogSince(logStart);
            if (attempt < StartAttempts && serverLog.Contains("could not bind", StringComparison.Ordinal))
            {
                LocalPostgresClusterLog.PortTaken(_logger, port);
                continue;
            }

            throw new InvalidOperationException(
                $"pg_ctl start failed with exit code {result.ExitCode}: {result.Output}{Environment.NewLine}" +
                $"Server log {_logFile}:{Environment.NewLine}{serverLog}");
        }
    }

    private async Task EnsureDatabaseAsync(CancellationToken cancellationToken)
    {
        if (_database == "postgres")
        {
            return;
        }

        var adminConnectionString = new NpgsqlConnectionStringBuilder(ConnectionString) { Database = "postgres", Pooling = false };
        await using var connection = new NpgsqlConnection(adminConnectionString.ConnectionString);
        await connection.OpenAsync(cancellationToken);

        await using (var exists = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = $1", connection))
        {
            exists.Parameters.Add(new NpgsqlParameter { Value = _database });
            if (await exists.ExecuteScalarAsync(cancellationToken) is not null)
            {
                return;
            }
        }

        var quotedName = "\"" + _database.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
        await using var create = new NpgsqlCommand("CREATE DATABASE " + quotedName, connection);
        try
        {
            await create.ExecuteNonQueryAsync(cancellationToken);
            LocalPostgresClusterLog.DatabaseCreated(_logger, _database);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.DuplicateDatabase)
        {
            // Created concurrently by another process: fine.
        }
    }

    /// <summary>Under the lock, once the cluster is stopped: its data, secrets, log and registry.</summary>
    private void DeleteFiles()
    {
        try
        {
            // Only delete what looks like a cluster (or an empty folder), never an unrelated directory.
            if (Directory.Exists(DataDirectory)
                && (File.Exists(PgVersionFile) || !Directory.EnumerateFileSystemEntries(DataDirectory).Any()))
            {
                Directory.Delete(DataDirectory, recursive: true);
            }

            File.Delete(_passwordFile);
            File.Delete(_servingPasswordFile);
            File.Delete(_logFile);
            _users.Delete();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LocalPostgresClusterLog.DeleteFailed(_logger, DataDirectory, ex);
        }
    }

    /// <summary>The folders this instance created, deepest first, as far as they are empty.</summary>
    private void DeleteCreatedDirectories()
    {
        try
        {
            foreach (var folder in Enumerable.Reverse(_createdDirectories))
            {
                if (Directory.Exists(folder) && !Directory.EnumerateFileSystemEntries(folder).Any())
                {
                    Directory.Delete(folder);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LocalPostgresClusterLog.DeleteFailed(_logger, DataDirectory, ex);
        }
    }

    private string ReadLogSince(long offset)
    {
        try
        {
            using var stream = new FileStream(_logFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            stream.Seek(Math.Min(offset, stream.Length), SeekOrigin.Begin);
            using var reader = new StreamReader(stream);
            var text = reader.ReadToEnd().Trim();
            return text.Length <= 4000 ? text : text[^4000..];
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return $"(could not read the server log: {ex.Message})";
        }
    }

    private static int FindFreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        finally
        {
            listener.Stop();
        }
    }

    private static string FindBinDirectory(string? configured)
    {
        if (!string.IsNullOrWhiteSpace(configured))
        {
            var directory = Path.GetFullPath(configured);
            return HasServerBinaries(directory) ? directory : throw PostgresBinariesNotFoundException.Searched(directory);
        }

        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        var candidates = path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        const string debianRoot = "/usr/lib/postgresql";
        if (Directory.Exists(debianRoot))
        {
            candidates.AddRange(Directory.EnumerateDirectories(debianRoot)
                .Select(d => (Directory: d, Version: decimal.TryParse(Path.GetFileName(d), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var v) ? v : -1))
                .OrderByDescending(d => d.Version)
                .Select(d => Path.Combine(d.Directory, "bin")));
        }

        candidates.Add("/usr/local/pgsql/bin");
        return candidates.FirstOrDefault(HasServerBinaries) is { } found
            ? Path.GetFullPath(found)
            : throw PostgresBinariesNotFoundException.Searched($"PATH, {debianRoot}/*/bin and /usr/local/pgsql/bin");
    }

    private static bool HasServerBinaries(string directory) =>
        File.Exists(Path.Combine(directory, ExecutableName("pg_ctl"))) && File.Exists(Path.Combine(directory, ExecutableName("initdb")));

    private static string ExecutableName(string tool) => OperatingSystem.IsWindows() ? tool + ".exe" : tool;

    /// <summary>"uid:gid" of the postgres user, for chown.</summary>
    private static async Task<string> GetPostgresOwnerAsync(CancellationToken cancellationToken)
    {
        var uid = await RunProcessAsync("id", ["-u", PostgresUser], false, cancellationToken);
        var gid = await RunProcessAsync("id", ["-g", PostgresUser], false, cancellationToken);
        if (uid.ExitCode != 0 || gid.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"This process runs as root, which PostgreSQL refuses, and there is no '{PostgresUser}' user to run it as. " +
                "Install the postgresql package (it creates that user) or run as a non-root user.");
        }

        return uid.Output + ":" + gid.Output;
    }

    /// <summary>Runs a tool (from the bin directory when it has it), as the postgres user when this process is root.</summary>
    private Task<ProcessResult> RunToolAsync(
        string tool, IReadOnlyList<string> arguments, bool throwOnFailure, CancellationToken cancellationToken, string? workingDirectory = null)
    {
        var toolPath = Path.Combine(_binDirectory, ExecutableName(tool));
        var executable = File.Exists(toolPath) ? toolPath : tool;
        workingDirectory ??= _parentDirectory;
        return _runAsPostgres
            ? RunProcessAsync("runuser", ["-u", PostgresUser, "--", executable, .. arguments], throwOnFailure, cancellationToken, workingDirectory)
            : RunProcessAsync(executable, arguments, throwOnFailure, cancellationToken, workingDirectory);
    }

    private static async Task<ProcessResult> RunProcessAsync(
        string fileName,
        IReadOnlyList<string> arguments,
        bool throwOnFailure,
        CancellationToken cancellationToken,
        string? workingDirectory = null)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? "",
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        using var process = Process.Start(startInfo)
            ?? throw new InvalidOperationException($"Could not start {fileName}.");
        process.StandardInput.Close();
        var standardOutput = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var standardError = process.StandardError.ReadToEndAsync(cancellationToken);
        try
        {
            await process.WaitForExitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        var output = ((await standardOutput) + (await standardError)).Trim();
        if (throwOnFailure && process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"'{fileName} {string.Join(' ', arguments)}' failed with exit code {process.ExitCode}:{Environment.NewLine}{output}");
        }

        return new ProcessResult(process.ExitCode, output);
    }

    private readonly record struct ProcessResult(int ExitCode, string Output);
}

internal static partial class LocalPostgresClusterLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Creating a PostgreSQL cluster in {DataDirectory} with the tools in {BinDirectory}")]
    public static partial void Initializing(ILogger logger, string dataDirectory, string binDirectory);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Started PostgreSQL from {DataDirectory} on 127.0.0.1:{Port}; server log: {LogFile}")]
    public static partial void Started(ILogger logger, string dataDirectory, int port, string logFile);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Reusing PostgreSQL already running from {DataDirectory} on 127.0.0.1:{Port}; server log: {LogFile}")]
    public static partial void Reusing(ILogger logger, string dataDirectory, int port, string logFile);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "Created database {Database}")]
    public static partial void DatabaseCreated(ILogger logger, string database);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "Stopped PostgreSQL in {DataDirectory}")]
    public static partial void Stopped(ILogger logger, string dataDirectory);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "Could not stop PostgreSQL in {DataDirectory}")]
    public static partial void StopFailed(ILogger logger, string dataDirectory, Exception exception);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "Port {Port} was taken before PostgreSQL could bind it; trying another")]
    public static partial void PortTaken(ILogger logger, int port);

    [LoggerMessage(EventId = 8, Level = LogLevel.Warning, Message = "Not deleting {DataDirectory}: {Users} other server(s) still use it")]
    public static partial void NotDeletingRunning(ILogger logger, string dataDirectory, int users);

    [LoggerMessage(EventId = 9, Level = LogLevel.Warning, Message = "Could not delete {DataDirectory}")]
    public static partial void DeleteFailed(ILogger logger, string dataDirectory, Exception exception);

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "The path {Directory} is too long for a Unix socket; PostgreSQL will listen on TCP only")]
    public static partial void SocketDisabled(ILogger logger, string directory);

    [LoggerMessage(EventId = 11, Level = LogLevel.Information, Message = "Leaving PostgreSQL in {DataDirectory} running for {Users} other server(s); the last to stop stops it")]
    public static partial void LeftRunning(ILogger logger, string dataDirectory, int users);

    [LoggerMessage(EventId = 12, Level = LogLevel.Information, Message = "Waiting for another server to finish starting or stopping PostgreSQL in {DataDirectory} (lock {LockFile})")]
    public static partial void WaitingForLock(ILogger logger, string dataDirectory, string lockFile);

    [LoggerMessage(EventId = 13, Level = LogLevel.Information, Message = "PostgreSQL in {DataDirectory} was used by {Gone} server process(es) that are gone (killed, say); this server takes their place and stops it when it is the last user")]
    public static partial void TookOver(ILogger logger, string dataDirectory, int gone);
}
