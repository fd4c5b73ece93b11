using System.Diagnostics;
using System.Text.Json.Nodes;
using QuotaLedger.Tests.Infrastructure;

namespace QuotaLedger.Tests;

/// <summary>The API's contracts as other languages' standard tools read them, from the repository alone: the protos compiled
/// by Debian's <c>protoc</c>; the served OpenAPI document linted by Redocly (its <c>spec</c> and <c>recommended</c>
/// rulesets) and turned into a TypeScript client by openapi-typescript, compiled by tsc and run with openapi-fetch against
/// a real server. Slow (each starts processes); the tools are installed by .ci/run (apt-get protobuf-compiler;
/// <c>npm ci</c> in tests/openapi-client), and a missing tool fails the test saying what to install.</summary>
[Collection(SlowTests.Collection), Trait("Category", "Slow")]
public sealed class ContractToolingTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly string Root = PackageTests.RepositoryRoot();
    private static readonly string ClientFolder = Path.Combine(Root, "tests", "openapi-client");

    [Fact]
    public async Task The_protos_compile_with_protoc_from_the_repository_alone()
    {
        var output = Directory.CreateTempSubdirectory("quotaledger-protoc-").FullName;
        try
        {
            var protos = Directory.GetFiles(Path.Combine(Root, "protos", "quotaledger", "v1"), "*.proto").Select(p => Path.GetRelativePath(Root, p));
            // The command README gives: only the repository's protos/ on the path (and protoc's own well-known types).
            var (code, text) = await RunAsync("protoc", Root, ["-I", "protos", $"--python_out={output}", $"--descriptor_set_out={Path.Combine(output, "all.pb")}", "--include_imports", .. protos],
                install: "apt-get install -y protobuf-compiler");
            Assert.True(code == 0, text);
            Assert.True(File.Exists(Path.Combine(output, "quotaledger", "v1", "ledger_pb2.py")), text);
            Assert.True(File.Exists(Path.Combine(output, "all.pb")));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    [Fact]
    public async Task The_served_document_passes_redocly_and_generates_a_typescript_client_that_calls_the_server()
    {
        await using var server = await DevelopmentServer.StartAsync(fixture.Database, LedgerFixture.Now);
        using var http = new HttpClient { BaseAddress = server.WebAddress };
        var document = await http.GetStringAsync(new Uri("/openapi/v1.json", UriKind.Relative));
        var generated = Path.Combine(ClientFolder, "gen");
        Directory.CreateDirectory(generated);
        var documentPath = Path.Combine(generated, "openapi.json");
        await File.WriteAllTextAsync(documentPath, document);
        const string npm = "cd tests/openapi-client && npm ci";

        foreach (var ruleset in new[] { "spec", "recommended" })
        {
            var (code, text) = await RunAsync("node", ClientFolder, ["node_modules/@redocly/cli/bin/cli.js", "lint", "--extends", ruleset, "--format", "stylish", "gen/openapi.json"], npm);
            Assert.True(code == 0, $"Redocly's {ruleset} ruleset: {text}");
        }

        var (generateCode, generateText) = await RunAsync("node", ClientFolder, ["node_modules/openapi-typescript/bin/cli.js", "gen/openapi.json", "-o", "gen/schema.d.ts"], npm);
        Assert.True(generateCode == 0, generateText);
        var (compileCode, compileText) = await RunAsync("node", ClientFolder, ["node_modules/typescript/bin/tsc", "-p", "."], npm);
        Assert.True(compileCode == 0, $"The generated types do not fit the client: {compileText}");

        var provider = TestUscc.New();
        var (runCode, runText) = await RunAsync("node", ClientFolder, ["gen/dist/client.js", server.WebAddress.ToString().TrimEnd('/'), provider], npm);
        Assert.True(runCode == 0, runText);
        var answered = JsonNode.Parse(runText.Trim().Split('\n')[^1])!;
        var year = await server.Api.Admin.GetProgramYearAsync(new V1.GetProgramYearRequest { Year = 2026 });
        Assert.True(answered["ping"]!.GetValue<bool>());
        Assert.Equal("string", answered["fundedFenType"]!.GetValue<string>());
        Assert.Equal(year.FundedFen.ToString(System.Globalization.CultureInfo.InvariantCulture), answered["fundedFen"]!.GetValue<string>());
        Assert.Equal("Generated-client compute", answered["registeredName"]!.GetValue<string>());
        Assert.Equal(provider, answered["readUscc"]!.GetValue<string>());
        Assert.Equal(400, answered["misspelledStatus"]!.GetValue<int>());
        Assert.Equal("MALFORMED_REQUEST", answered["misspelledReason"]!.GetValue<string>());
        Assert.Equal("dryrun", answered["misspelledField"]!.GetValue<string>());
    }

    /// <summary>Runs a tool to its end; its exit code and everything it printed. A tool that is not there fails the test
    /// with the command that installs it.</summary>
    private static async Task<(int Code, string Output)> RunAsync(string tool, string folder, IEnumerable<string> arguments, string install)
    {
        if (tool == "node" && !Directory.Exists(Path.Combine(ClientFolder, "node_modules")))
        {
            Assert.Fail($"tests/openapi-client has no node_modules; install it with: {install} (as .ci/run does).");
        }

        var start = new ProcessStartInfo(tool) { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["REDOCLY_TELEMETRY"] = "off";
        start.Environment["REDOCLY_SUPPRESS_UPDATE_NOTICE"] = "true";
        start.Environment["NO_COLOR"] = "1";
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            Assert.Fail($"'{tool}' is not installed; install it with: {install} (as .ci/run does).");
            throw;
        }

        using (process)
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            await process.WaitForExitAsync(timeout.Token);
            return (process.ExitCode, await output + await error);
        }
    }
}
