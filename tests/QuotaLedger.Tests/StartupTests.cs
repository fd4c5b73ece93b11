using System.Diagnostics;
using QuotaLedger.Client;
using QuotaLedger.Server;
using QuotaLedger.Server.Security;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>Development mode only when asked for, credentials over TLS only, secrets written private, configuration
/// overridable from outside: checked on the real server process where it matters.</summary>
[Collection(SlowTests.Collection), Trait("Category", "Slow")]
public sealed class StartupTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Theory]
    [InlineData("Production", "http://127.0.0.1:{0}", null, "not Development")]
    [InlineData("Staging", "http://127.0.0.1:{0}", null, "not Development")]
    [InlineData("Development", "http://0.0.0.0:{0}", null, "loopback only")]
    [InlineData("Production", "http://127.0.0.1:{0}", "ca.pem", "TLS only")]
    [InlineData("Production", "https://127.0.0.1:{0}", "/nonexistent/ca.pem", "cannot be used")]
    public async Task The_server_refuses_to_start_before_it_listens_unless_secured_or_explicitly_in_loopback_development(
        string environment, string url, string? trustedCa, string reason)
    {
        var port = TestPorts.Free();
        var variables = new Dictionary<string, string>
        {
            ["ConnectionStrings__Ledger"] = fixture.Database.ServingConnectionString,
            ["Kestrel__Endpoints__Grpc__Url"] = string.Format(System.Globalization.CultureInfo.InvariantCulture, url, port),
            ["ASPNETCORE_ENVIRONMENT"] = environment,
        };
        if (trustedCa is not null)
        {
            variables["Auth__TrustedClientCaFiles__0"] = trustedCa;
        }

        var (exitCode, output) = await RunServerAsync(variables, TimeSpan.FromSeconds(60));
        Assert.Equal(2, exitCode);
        Assert.Contains("refuses to start", output, StringComparison.Ordinal);
        Assert.Contains(reason, output, StringComparison.Ordinal);
        Assert.DoesNotContain("Now listening", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Production", "Development")]
    [InlineData("Development", "Production")]
    public async Task The_server_refuses_to_start_when_DOTNET_ENVIRONMENT_and_ASPNETCORE_ENVIRONMENT_disagree(string dotnetEnvironment, string aspNetCoreEnvironment)
    {
        var variables = new Dictionary<string, string>
        {
            ["ConnectionStrings__Ledger"] = fixture.Database.ServingConnectionString,
            ["ConnectionStrings__LedgerMigrations"] = fixture.Database.ConnectionString,
            ["Checkpoints__SigningKeyFile"] = fixture.Database.CheckpointKeyFile,
            ["Kestrel__Endpoints__Grpc__Url"] = $"http://127.0.0.1:{TestPorts.Free()}",
            ["Kestrel__Endpoints__Web__Url"] = "http://127.0.0.1:0",
            ["DOTNET_ENVIRONMENT"] = dotnetEnvironment,
            ["ASPNETCORE_ENVIRONMENT"] = aspNetCoreEnvironment,
        };

        var (exitCode, output) = await RunServerAsync(variables, TimeSpan.FromSeconds(60));
        Assert.Equal(2, exitCode);
        Assert.Contains("refuses to start", output, StringComparison.Ordinal);
        Assert.Contains($"DOTNET_ENVIRONMENT is '{dotnetEnvironment}' but ASPNETCORE_ENVIRONMENT is '{aspNetCoreEnvironment}'", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Now listening", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_secured_server_without_a_connection_string_refuses_to_start_instead_of_serving_a_private_cluster()
    {
        var folder = Directory.CreateTempSubdirectory("quotaledger-no-connection-").FullName;
        try
        {
            var settings = new Dictionary<string, string?>
            {
                ["ConnectionStrings:Ledger"] = "",
                ["ConnectionStrings:LedgerMigrations"] = "",
                // A folder the cluster would make for itself: nothing but the refusal stops it here.
                ["LocalPostgres:DataDirectory"] = Path.Combine(folder, "cluster", "pgdata"),
            };
            StartupRefusedException? refused = null;
            try
            {
                await using var started = await SecureServer.StartAsync(fixture.Database, LedgerFixture.Now, settings);
            }
            catch (StartupRefusedException e)
            {
                refused = e;
            }

            Assert.NotNull(refused);
            Assert.Contains("ConnectionStrings:Ledger is not set", refused.Message, StringComparison.Ordinal);
            Assert.Contains("ConnectionStrings__Ledger", refused.Message, StringComparison.Ordinal);
            Assert.False(Directory.Exists(Path.Combine(folder, "cluster")), "a cluster was made");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void Dev_pki_writes_every_key_and_token_0600_in_a_0700_folder()
    {
        var directory = Path.Combine(Directory.CreateTempSubdirectory("quotaledger-devpki-").FullName, "pki");
        try
        {
            Assert.Equal(0, DevelopmentPki.Run([directory]));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(directory));
            var secrets = Directory.GetFiles(directory).Where(f => f.EndsWith(".key", StringComparison.Ordinal) || f.EndsWith(".jwt", StringComparison.Ordinal)).ToList();
            Assert.True(secrets.Count >= 10, $"only {secrets.Count} keys and tokens");
            Assert.All(secrets, f => Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(f)));
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(directory)!, recursive: true);
        }
    }

    [Fact]
    public async Task A_config_file_is_overridden_by_environment_variables_and_the_command_line()
    {
        var file = Path.GetTempFileName();
        await File.WriteAllTextAsync(file, """{ "Deductions": { "MaxBatch": 7, "Workers": 3 }, "Expiry": { "Interval": "00:05:00" } }""");
        try
        {
            await using var app = QuotaLedgerHost.Build(["--config-file", file, "--Deductions:MaxBatch=9"], builder => builder.Environment.EnvironmentName = "Development");
            Assert.Equal("9", app.Configuration["Deductions:MaxBatch"]);
            Assert.Equal("3", app.Configuration["Deductions:Workers"]);
            Assert.Equal("00:05:00", app.Configuration["Expiry:Interval"]);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("--Deductions:MaxBatch=0", "Deductions:MaxBatch must be 1 to 10000; it is 0.")]
    [InlineData("--Deductions:MaxBach=5", "MaxBach")]
    [InlineData("--Database:LockTimeout=soon", "Database:LockTimeout")]
    [InlineData("--Database:StatementTimeout=00:00:00", "Database:StatementTimeout must be")]
    [InlineData("--RateLimits:Burst=-1", "RateLimits:Burst must be 1 to 1000000; it is -1.")]
    [InlineData("--Requests:MaxBodyBytes=100", "Requests:MaxBodyBytes must be 1024 to 67108864; it is 100.")]
    [InlineData("--Expiry:Interval=00:00:00", "Expiry:Interval must be")]
    [InlineData("--LocalPostgres:Database=bad name", "LocalPostgres:Database must be")]
    public async Task A_bad_setting_stops_the_start_with_a_message_naming_its_key(string setting, string expected)
    {
        await using var app = QuotaLedgerHost.Build([setting], builder => builder.Environment.EnvironmentName = "Development");
        var refused = await Assert.ThrowsAsync<StartupRefusedException>(() => app.StartAsync());
        Assert.Contains(expected, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_bad_auth_setting_stops_the_build_with_a_message_naming_its_key()
    {
        var refused = Assert.Throws<StartupRefusedException>(() => QuotaLedgerHost.Build(["--Auth:TrustedClientCaFile=ca.pem"]));
        Assert.Contains("TrustedClientCaFile", refused.Message, StringComparison.Ordinal);
        Assert.Contains("Auth", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_client_refuses_to_send_a_bearer_token_in_clear_text_unless_told_to_for_loopback()
    {
        static ValueTask<string> Token(CancellationToken _) => ValueTask.FromResult("token");
        var refused = Assert.Throws<InvalidOperationException>(() =>
            new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = new("http://127.0.0.1:5080"), TokenProvider = Token }));
        Assert.Contains("clear text", refused.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => new QuotaLedgerClient(new QuotaLedgerClientOptions
        {
            Address = new("http://ledger.example:5080"), TokenProvider = Token, AllowTokensOverPlainHttpOnLoopback = true,
        }));
        using var local = new QuotaLedgerClient(new QuotaLedgerClientOptions
        {
            Address = new("http://127.0.0.1:5080"), TokenProvider = Token, AllowTokensOverPlainHttpOnLoopback = true,
        });
        using var secure = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = new("https://ledger.example"), TokenProvider = Token });
    }

    private static async Task<(int ExitCode, string Output)> RunServerAsync(IDictionary<string, string> variables, TimeSpan timeout)
    {
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "QuotaLedger.Server.dll")])
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var (key, value) in variables)
        {
            start.Environment[key] = value;
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        return (process.ExitCode, await output + await error);
    }
}
