using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Xml.Linq;
using Grpc.Health.V1;
using Grpc.Net.Client;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>The SDK as a partner gets it: <c>dotnet pack</c> of src/ClientSdk, the package's metadata, and a project
/// outside the solution (samples/ProviderFlow, copied out of the repository) that restores the package from a feed,
/// builds and runs the provider flow against the real server process.</summary>
[Collection(LedgerCollection.Name)]
public sealed class PackageTests(LedgerFixture fixture)
{
    private const string PackageId = "QuotaLedger.ClientSdk";

    private static readonly TimeSpan s_buildTimeout = TimeSpan.FromMinutes(5);

    private static readonly TimeSpan s_runTimeout = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task The_packed_sdk_builds_and_runs_the_provider_flow_outside_the_solution()
    {
        var repository = RepositoryRoot();
        var work = Directory.CreateTempSubdirectory("quotaledger-package-test-").FullName;
        // NuGet keeps a package by id and version in the global packages folder (~/.nuget/packages) and never looks at
        // a feed again for a version it holds: packing the same version twice would build the consumer against the copy
        // cached by the first run, not against the SDK as it is now. So each run packs a version of its own, given to
        // MinVer (which alone reads MinVerVersionOverride: a version that is not this one means MinVer is not wired in),
        // and removes that version from the global packages folder afterwards.
        var version = $"0.0.0-packagetest-{Guid.NewGuid():N}";
        var cached = Path.Combine(GlobalPackagesFolder(), PackageId.ToLowerInvariant(), version);
        var server = (Process?)null;
        var serverLog = new StringBuilder();
        try
        {
            var feed = Path.Combine(work, "feed");
            var pack = await RunAsync(repository, s_buildTimeout, "pack", Path.Combine(repository, "src", "ClientSdk"),
                "-c", "Release", "-o", feed, $"-p:MinVerVersionOverride={version}", "--disable-build-servers");
            Assert.True(pack.ExitCode == 0, pack.Describe());

            CheckPackage(Path.Combine(feed, $"{PackageId}.{version}.nupkg"), version);
            Assert.True(File.Exists(Path.Combine(feed, $"{PackageId}.{version}.snupkg")),
                $"no symbols package; the feed holds: {string.Join(", ", Directory.GetFiles(feed).Select(Path.GetFileName))}");

            // A copy outside the repository: nothing of the repository's build files (Directory.Build.props,
            // Directory.Packages.props, global.json, .editorconfig) can reach it, and its bin/ and obj/ stay out of the tree.
            var consumer = Path.Combine(work, "ProviderFlow");
            CopyDirectory(Path.Combine(repository, "samples", "ProviderFlow"), consumer);
            // The local feed besides the machine's own sources (this file adds to the user's NuGet.Config, no <clear/>).
            await File.WriteAllTextAsync(Path.Combine(work, "NuGet.Config"),
                $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <add key="quotaledger-package-test" value="{feed}" />
                  </packageSources>
                </configuration>
                """);
            var output = Path.Combine(work, "out");
            var build = await RunAsync(work, s_buildTimeout, "build", consumer, "-c", "Release", "-o", output,
                $"-p:QuotaLedgerSdkVersion={version}", "--disable-build-servers");
            Assert.True(build.ExitCode == 0, build.Describe());
            Assert.True(File.Exists(Path.Combine(output, $"{PackageId}.dll")), $"the consumer's output has no {PackageId}.dll\n{build.Describe()}");

            var port = TestPorts.Free();
            server = StartServer(port, serverLog);
            await WaitUntilServingAsync(port, server, serverLog);

            var run = await RunAsync(work, s_runTimeout, Path.Combine(output, "ProviderFlow.dll"), $"http://127.0.0.1:{port}");
            var lastLine = run.StandardOutput.TrimEnd().Split('\n')[^1];
            Assert.True(run.ExitCode == 0 && lastLine.StartsWith("provider flow ok: ", StringComparison.Ordinal),
                $"{run.Describe()}\n--- server ---\n{Read(serverLog)}");
            Assert.Contains("refused: DuplicateInvoice", run.StandardOutput, StringComparison.Ordinal);
        }
        finally
        {
            if (server is not null)
            {
                server.Kill(entireProcessTree: true);
                await server.WaitForExitAsync();
                server.Dispose();
            }

            TryDelete(work);
            TryDelete(cached);
            if (Directory.Exists(Path.GetDirectoryName(cached)) && !Directory.EnumerateFileSystemEntries(Path.GetDirectoryName(cached)!).Any())
            {
                TryDelete(Path.GetDirectoryName(cached)!);
            }
        }
    }

    /// <summary>The nupkg (a zip): the nuspec's license, repository and release notes, the version, and an XML doc
    /// without the internal generated types.</summary>
    private static void CheckPackage(string nupkg, string version)
    {
        Assert.True(File.Exists(nupkg), $"no package at {nupkg}");
        using var zip = ZipFile.OpenRead(nupkg);

        var nuspecEntry = Assert.Single(zip.Entries, e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using var nuspecStream = nuspecEntry.Open();
        var metadata = XDocument.Load(nuspecStream).Root!.Elements().Single(e => e.Name.LocalName == "metadata");
        string? Field(string name) => metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value;
        Assert.Equal(PackageId, Field("id"));
        Assert.Equal(version, Field("version"));
        Assert.NotEqual("0.1.0", Field("version"));

        var license = metadata.Elements().Single(e => e.Name.LocalName == "license");
        Assert.Equal("expression", (string?)license.Attribute("type"));
        Assert.Equal("Apache-2.0", license.Value);

        var repository = metadata.Elements().Single(e => e.Name.LocalName == "repository");
        Assert.Equal("git", (string?)repository.Attribute("type"));
        Assert.Equal("https://github.com/quotaledger/quotaledger", (string?)repository.Attribute("url"));

        var releaseNotes = Field("releaseNotes");
        Assert.False(string.IsNullOrWhiteSpace(releaseNotes), "the nuspec has no release notes");
        Assert.Contains("# Changelog of QuotaLedger.ClientSdk", releaseNotes, StringComparison.Ordinal);

        var docEntry = Assert.Single(zip.Entries, e => e.FullName == $"lib/net10.0/{PackageId}.xml");
        using var docStream = docEntry.Open();
        var members = XDocument.Load(docStream).Descendants("member").Select(m => (string?)m.Attribute("name") ?? "").ToList();
        Assert.Contains("T:QuotaLedger.Client.QuotaLedgerClient", members);
        Assert.DoesNotContain(members, m => m.Contains("QuotaLedger.V1", StringComparison.Ordinal));
    }

    private Process StartServer(int port, StringBuilder log)
    {
        var start = new ProcessStartInfo(Dotnet, [Path.Combine(AppContext.BaseDirectory, "QuotaLedger.Server.dll")])
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        CleanEnvironment(start);
        start.Environment["ConnectionStrings__Ledger"] = fixture.Database.ServingConnectionString;
        start.Environment["ConnectionStrings__LedgerMigrations"] = fixture.Database.ConnectionString;
        start.Environment["Checkpoints__SigningKeyFile"] = fixture.Database.CheckpointKeyFile;
        start.Environment["Kestrel__Endpoints__Grpc__Url"] = $"http://127.0.0.1:{port}";
        start.Environment["Kestrel__Endpoints__Web__Url"] = "http://127.0.0.1:0";
        start.Environment["DOTNET_ENVIRONMENT"] = "Development";
        start.Environment["Expiry__Enabled"] = "false";
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => Append(log, e.Data);
        process.ErrorDataReceived += (_, e) => Append(log, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task WaitUntilServingAsync(int port, Process server, StringBuilder log)
    {
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
        var health = new Health.HealthClient(channel);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            Assert.False(server.HasExited, $"the server exited before serving:\n{Read(log)}");
            try
            {
                var status = (await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(5))).Status;
                Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, status);
                return;
            }
            catch (Grpc.Core.RpcException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(200);
            }
        }
    }

    /// <summary>The dotnet that runs this test (the SDK's host sets DOTNET_HOST_PATH for the processes it starts).</summary>
    private static string Dotnet => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";

    /// <summary>Runs dotnet with the arguments, output captured; killed (with its children) after the timeout.</summary>
    private static async Task<ProcessResult> RunAsync(string workingDirectory, TimeSpan timeout, params string[] arguments)
    {
        var start = new ProcessStartInfo(Dotnet, arguments)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        CleanEnvironment(start);
        var command = $"dotnet {string.Join(' ', arguments)}";
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Append(stdout, e.Data);
        process.ErrorDataReceived += (_, e) => Append(stderr, e.Data);
        var clock = Stopwatch.StartNew();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            Assert.Fail(new ProcessResult(command, -1, Read(stdout), Read(stderr) + $"\n(killed after {timeout.TotalSeconds:0} s)", clock.Elapsed).Describe());
        }

        return new ProcessResult(command, process.ExitCode, Read(stdout), Read(stderr), clock.Elapsed);
    }

    private static void Append(StringBuilder text, string? line)
    {
        if (line is not null)
        {
            lock (text)
            {
                text.AppendLine(line);
            }
        }
    }

    private static string Read(StringBuilder text)
    {
        lock (text)
        {
            return text.ToString();
        }
    }

    /// <summary>The test host runs inside an MSBuild-started process whose variables (MSBuildSDKsPath, MSBUILD_EXE_PATH,
    /// MSBuildExtensionsPath...) would make a nested build use the outer one's SDK and settings: they go.</summary>
    private static void CleanEnvironment(ProcessStartInfo start)
    {
        foreach (var name in start.Environment.Keys.Where(k => k.Contains("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(name);
        }

        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
    }

    internal static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "QuotaLedger.sln")))
            {
                return folder.FullName;
            }
        }

        throw new InvalidOperationException($"No QuotaLedger.sln above {AppContext.BaseDirectory}.");
    }

    private static string GlobalPackagesFolder() =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } folder
            ? folder
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    /// <summary>Copies the sample's sources, leaving out any bin/ and obj/ of an in-place build.</summary>
    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }

        foreach (var folder in Directory.GetDirectories(from).Where(d => Path.GetFileName(d) is not ("bin" or "obj")))
        {
            CopyDirectory(folder, Path.Combine(to, Path.GetFileName(folder)));
        }
    }

    private static void TryDelete(string folder)
    {
        try
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private sealed record ProcessResult(string Command, int ExitCode, string StandardOutput, string StandardError, TimeSpan Took)
    {
        public string Describe() =>
            $"{Command}\nexit code {ExitCode} after {Took.TotalSeconds:0.0} s\n--- stdout ---\n{Tail(StandardOutput)}\n--- stderr ---\n{Tail(StandardError)}";

        private static string Tail(string text) => text.Length <= 20_000 ? text : "...\n" + text[^20_000..];
    }
}
