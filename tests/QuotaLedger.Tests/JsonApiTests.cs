using System.Net;
using System.Net.Http.Json;
using System.Reflection;
using System.Text.Json.Nodes;
using Google.Api;
using Google.Protobuf.Reflection;
using Grpc.Core;
using QuotaLedger.Server.Security;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Every RPC is also JSON over HTTP/1.1 (gRPC JSON transcoding from the protos' google.api.http bindings), with
/// the same callers, roles, request-id idempotency and reason words as over gRPC, and an OpenAPI document describing it.</summary>
public sealed class JsonApiTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private const int Year = 2094;

    /// <summary>RPCs deliberately not served as JSON, each with the reason. Transcoding serves unary and server-streaming
    /// RPCs only: a client- or bidirectional-streaming RPC belongs here.</summary>
    private static readonly Dictionary<string, string> NotOverJson = [];

    [Fact]
    public async Task The_provider_flow_runs_over_plain_json_with_the_grpc_rules_and_reason_words()
    {
        await using var server = fixture.StartServer(new DateTimeOffset(Year, 6, 2, 1, 0, 0, TimeSpan.Zero));
        using var http = new HttpClient(server.CreateHandler()) { BaseAddress = server.BaseAddress };

        // The bureau: the year's policy and its funding.
        await OkAsync(await http.PutAsJsonAsync($"/v1/program-years/{Year}/policy", new
        {
            requestId = Ids.New(), selfControllableRatioBp = 5_000, otherRatioBp = 3_000, smeBonusBp = 1_000,
            unitYearCapFen = 10_000_000, unitYearFloorFen = 0, yearTotalFen = 1_000_000_000, validityMonths = 3,
        }));
        var funded = await OkAsync(await http.PostAsJsonAsync($"/v1/program-years/{Year}/fundings", new { requestId = Ids.New(), amountFen = 500_000_000 }));
        Assert.Equal(500_000_000, Fen(funded["fundedFen"]));

        // The registry: a provider, a unit it approves, a contract between them.
        var provider = TestUscc.New();
        var unit = TestUscc.New();
        await OkAsync(await http.PostAsJsonAsync("/v1/providers", new { requestId = Ids.New(), providerUscc = provider, name = "JSON compute", licences = new[] { "IDC-B1-20260001" } }));
        await OkAsync(await http.PostAsJsonAsync("/v1/units", new
        {
            requestId = Ids.New(), unitUscc = unit, name = "JSON AI company", kind = "ENTERPRISE",
            materials = new[] { "APPLICATION_FORM", "REGISTRATION_CERTIFICATE", "INTEGRITY_PLEDGE", "CREDIT_REPORT" }
                .Select(kind => new { kind = "MATERIAL_KIND_" + kind, reference = $"docs/{kind}.pdf" }),
        }));
        var reviewed = await OkAsync(await http.PostAsJsonAsync($"/v1/units/{unit}/reviews", new { requestId = Ids.New(), providerUscc = provider, approve = true, reason = "materials complete" }));
        Assert.True(reviewed["approved"]!.GetValue<bool>());
        var contractNo = "C-" + Ids.New()[..12];
        await OkAsync(await http.PostAsJsonAsync($"/v1/providers/{provider}/contracts", new
        {
            requestId = Ids.New(), contractNo, unitUscc = unit, accelerator = "Ascend 910B", selfControllable = true,
            serviceMode = "SERVICE_MODE_BARE_METAL", unitPriceFen = 2_500, amountFen = 100_000_000, purpose = "model training", signedOn = $"{Year}-02-01",
        }));

        // Grant: the request id in the body makes it idempotent, exactly as over gRPC.
        var grantRequest = new { requestId = Ids.New(), providerUscc = provider, contractNo, amountFen = 1_000_000 };
        var grant = await OkAsync(await http.PostAsJsonAsync("/v1/grants", grantRequest));
        var grantId = Fen(grant["grantId"]);
        Assert.Equal(1_000_000, Fen(grant["amountFen"]));
        var replay = await OkAsync(await http.PostAsJsonAsync("/v1/grants", grantRequest));
        Assert.Equal(grantId, Fen(replay["grantId"]));
        await AssertRefusedAsync(await http.PostAsJsonAsync("/v1/grants", grantRequest with { amountFen = 2_000_000 }),
            HttpStatusCode.Conflict, StatusCode.AlreadyExists, "REQUEST_ID_REUSED");

        // Deduct against the grant named in the path; the same invoice again is refused with its reason word.
        var invoice = new { requestId = Ids.New(), providerUscc = provider, invoiceNo = "INV-" + Ids.New()[..12], invoiceAmountFen = 400_000, invoiceDate = $"{Year}-06-02" };
        var deduction = await OkAsync(await http.PostAsJsonAsync($"/v1/grants/{grantId}/deductions", invoice));
        Assert.Equal(200_000, Fen(deduction["appliedFen"]));
        Assert.Equal(800_000, Fen(deduction["grantRemainingFen"]));
        await AssertRefusedAsync(await http.PostAsJsonAsync($"/v1/grants/{grantId}/deductions", invoice with { requestId = Ids.New() }),
            HttpStatusCode.Conflict, StatusCode.AlreadyExists, "DUPLICATE_INVOICE");
        await AssertRefusedAsync(await http.PostAsJsonAsync($"/v1/grants/{grantId + 1_000_000}/deductions", invoice with { requestId = Ids.New(), invoiceNo = "INV-" + Ids.New()[..12] }),
            HttpStatusCode.NotFound, StatusCode.NotFound, "UNKNOWN_GRANT");

        // Read the unit-year: the same figures as over gRPC.
        var unitYear = await OkAsync(await http.GetAsync($"/v1/unit-years/{unit}/{Year}"));
        Assert.Equal(200_000, Fen(unitYear["deductedFen"]));
        Assert.Equal(800_000, Fen(unitYear["grantedOpenFen"]));
        var overGrpc = await server.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = unit, Year = Year });
        Assert.Equal(overGrpc.HeadroomFen, Fen(unitYear["headroomFen"]));
        var before = await OkAsync(await http.GetAsync($"/v1/unit-years/{unit}/{Year}?asOf={Year}-06-01T00:00:00Z"));
        Assert.Equal((0L, 0L), (Fen(before["deductedFen"]), Fen(before["grantedOpenFen"])));
        Assert.Equal("OPEN", (await OkAsync(await http.GetAsync($"/v1/grants/{grantId}")))["status"]!.GetValue<string>());
        Assert.Equal(Fen(deduction["deductionId"]),
            Fen((await OkAsync(await http.GetAsync($"/v1/providers/{provider}/invoices/{invoice.invoiceNo}/deduction")))["deductionId"]));

        // A server-streaming RPC: one JSON object per journal entry, newline-delimited.
        using var entries = await http.GetAsync($"/v1/entries?grantId={grantId}");
        var lines = (await entries.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(["ENTRY_KIND_GRANT", "ENTRY_KIND_DEDUCTION"], lines.Select(line => JsonNode.Parse(line)!["kind"]!.GetValue<string>()));

        // The change feed over JSON: a stream that stays open, one event per line with its cursor, resumable by it.
        using var watching = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var cursor = "";
        foreach (var expected in new[] { "ENTRY_KIND_GRANT", "ENTRY_KIND_DEDUCTION" })
        {
            using var watch = await http.GetAsync($"/v1/watch?grantId={grantId}&afterCursor={Uri.EscapeDataString(cursor)}",
                HttpCompletionOption.ResponseHeadersRead, watching.Token);
            Assert.Equal(HttpStatusCode.OK, watch.StatusCode);
            using var reader = new StreamReader(await watch.Content.ReadAsStreamAsync(watching.Token));
            var watched = JsonNode.Parse((await reader.ReadLineAsync(watching.Token))!)!;
            Assert.Equal(expected, watched["entry"]!["kind"]!.GetValue<string>());
            cursor = watched["cursor"]!.GetValue<string>();
        }
    }

    [Fact]
    public async Task Secured_json_calls_are_authenticated_and_authorized_like_grpc_calls_on_one_tls_port()
    {
        // One TLS endpoint for both: ALPN gives gRPC clients HTTP/2 and JSON clients HTTP/1.1.
        await using var server = await SecureServer.StartAsync(fixture.Database, LedgerFixture.Now,
            new Dictionary<string, string?> { ["Kestrel:Endpoints:Grpc:Protocols"] = "Http1AndHttp2" });
        var provider = TestUscc.New();

        await AssertRefusedAsync(await server.Http().GetAsync("/v1/ping"), HttpStatusCode.Unauthorized, StatusCode.Unauthenticated, "UNAUTHENTICATED");
        await AssertRefusedAsync(await server.Http(bearerToken: "not-a-token").GetAsync("/v1/ping"),
            HttpStatusCode.Unauthorized, StatusCode.Unauthenticated, "UNAUTHENTICATED");

        var unit = server.Http(bearerToken: server.Token(TestUscc.New(), Role.Unit));
        await AssertRefusedAsync(await unit.PostAsJsonAsync("/v1/program-years/2026/fundings", new { requestId = Ids.New(), amountFen = 1 }),
            HttpStatusCode.Forbidden, StatusCode.PermissionDenied, "ROLE_REQUIRED");

        var asProvider = server.Http(server.Certificate(provider, Role.Provider));
        await OkAsync(await asProvider.GetAsync("/v1/ping"));
        await AssertRefusedAsync(await asProvider.PostAsJsonAsync("/v1/grants", new { requestId = Ids.New(), providerUscc = TestUscc.New(), contractNo = "C-1", amountFen = 1 }),
            HttpStatusCode.Forbidden, StatusCode.PermissionDenied, "NOT_YOUR_RESOURCE");

        var bureau = server.Http(bearerToken: server.Token(TestUscc.New(), Role.Bureau));
        var year = await OkAsync(await bureau.GetAsync("/v1/program-years/2026"));
        Assert.Equal(2026, year["year"]!.GetValue<int>());

        // And gRPC on the same port.
        await server.As(server.Certificate(provider, Role.Provider)).Ledger.PingAsync(new PingRequest());
    }

    [Fact]
    public async Task An_address_that_keeps_failing_authentication_over_json_is_turned_away_with_a_json_status()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, LedgerFixture.Now, new Dictionary<string, string?>
        {
            ["Kestrel:Endpoints:Grpc:Protocols"] = "Http1AndHttp2",
            ["RateLimits:FailedAuthenticationBurst"] = "2",
            ["RateLimits:FailedAuthenticationsPerSecond"] = "1",
        });
        var anonymous = server.Http();
        for (var i = 0; i < 2; i++)
        {
            await AssertRefusedAsync(await anonymous.GetAsync("/v1/ping"), HttpStatusCode.Unauthorized, StatusCode.Unauthenticated, "UNAUTHENTICATED");
        }

        using var limited = await anonymous.GetAsync("/v1/ping");
        Assert.NotNull(limited.Headers.RetryAfter);
        await AssertRefusedAsync(limited, HttpStatusCode.TooManyRequests, StatusCode.ResourceExhausted, "RATE_LIMITED");
    }

    [Fact]
    public async Task The_openapi_document_is_served_at_its_stable_path_and_lists_every_http_binding()
    {
        using var http = new HttpClient(fixture.Server.CreateHandler()) { BaseAddress = fixture.Server.BaseAddress };
        var document = await OkAsync(await http.GetAsync("/openapi/v1.json"));
        var paths = document["paths"]!.AsObject();
        // Paths by URL shape: two bindings of one shape are one path (SetAlertRules' {rules.year}, GetAlertRules' {year}).
        var shapes = paths.ToDictionary(path => Shape(path.Key), path => path.Value);

        var missing = HttpBindings()
            .Where(binding => shapes.GetValueOrDefault(Shape(DocumentPath(binding.Path)))?[binding.Verb] is null)
            .Select(binding => $"{binding.Verb.ToUpperInvariant()} {binding.Path} ({binding.Method})")
            .ToList();
        Assert.True(missing.Count == 0, $"Not in the OpenAPI document: {string.Join("; ", missing)}. Paths: {string.Join(", ", paths.Select(p => p.Key))}");
        Assert.NotNull(paths["/v1/grants/{grantId}/deductions"]?["post"]);
    }

    [Fact]
    public void Every_rpc_of_every_service_has_an_http_binding_unless_exempted_with_a_reason()
    {
        var methods = Services().SelectMany(service => service.Methods).ToList();
        Assert.True(methods.Count > 40, $"only {methods.Count} RPCs found");

        var unbound = methods
            .Where(method => method.GetOptions()?.GetExtension(AnnotationsExtensions.Http) is not { PatternCase: not HttpRule.PatternOneofCase.None })
            .Select(method => method.FullName)
            .Where(name => !NotOverJson.ContainsKey(name))
            .ToList();
        Assert.True(unbound.Count == 0, $"RPCs with no google.api.http binding (add one, or exempt it in NotOverJson with the reason): {string.Join(", ", unbound)}");

        var streamingIn = methods.Where(method => method.IsClientStreaming).Select(method => method.FullName).Where(name => !NotOverJson.ContainsKey(name));
        Assert.Empty(streamingIn);
    }

    /// <summary>Bodies a JSON client can get wrong in ways gRPC cannot carry, each with the field it names.</summary>
    public static TheoryData<string, string, string> MalformedGrantBodies(string provider, string contractNo) => new()
    {
        // A misspelled field would otherwise be dropped: "dryrun" for dryRun made a real grant.
        { $$"""{"requestId":"r","providerUscc":"{{provider}}","contractNo":"{{contractNo}}","amountFen":"1000","dryrun":true}""", "dryrun", "unknown field" },
        { """{"requestId":"r","amountFen":""", "", "not valid JSON" },
        { """{"requestId":"r",}""", "", "not valid JSON" },
        { """[1,2]""", "", "must be a JSON object" },
        { """{"requestId":7}""", "requestId", "must be a string" },
        { """{"amountFen":"12abc"}""", "amountFen", "must be an integer" },
        { """{"amountFen":1.5}""", "amountFen", "must be an integer" },
        { """{"amountFen":99999999999999999999}""", "amountFen", "out of range for int64" },
        { """{"amountFen":"9223372036854775808"}""", "amountFen", "out of range for int64" },
        { """{"amountFen":true}""", "amountFen", "must be an integer" },
        { """{"dryRun":"true"}""", "dryRun", "must be true or false" },
        { """{"dryRun":1}""", "dryRun", "must be true or false" },
    };

    [Fact]
    public async Task Every_malformed_json_body_is_refused_with_malformed_request_naming_the_field_and_nothing_is_written()
    {
        await using var server = fixture.StartServer(LedgerFixture.Now);
        var deal = await server.NewDealAsync(contractAmountFen: 10_000_000);
        using var http = new HttpClient(server.CreateHandler()) { BaseAddress = server.BaseAddress };

        foreach (var row in MalformedGrantBodies(deal.Provider, deal.ContractNo))
        {
            var (body, field, problem) = ((string)row[0], (string)row[1], (string)row[2]);
            using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
            await AssertMalformedAsync(await http.PostAsync("/v1/grants", content), field, problem, body);
        }

        // The other kinds of value: an enum name the enum does not have, a list that is not one, an element of the wrong
        // type, a nested unknown field, a time that is not RFC 3339, a path variable and a query parameter of the wrong type.
        await AssertMalformedAsync(await http.PostAsJsonAsync("/v1/units", new { requestId = "r", kind = "COMPANY" }), "kind", "unknown value 'COMPANY' of UnitKind");
        await AssertMalformedAsync(await http.PostAsJsonAsync("/v1/units", new { requestId = "r", materials = "all" }), "materials", "must be a JSON array");
        await AssertMalformedAsync(await http.PostAsJsonAsync("/v1/units", new { materials = new object[] { new { kind = "MATERIAL_KIND_APPLICATION_FORM", referance = "x" } } }),
            "materials[0].referance", "unknown field");
        await AssertMalformedAsync(await http.PostAsJsonAsync("/v1/batches", new { requestId = "r", year = Year, closesAt = "next week" }), "closesAt", "RFC 3339");
        await AssertMalformedAsync(await http.PostAsJsonAsync("/v1/batches", new { requestId = "r", year = 3_000_000_000 }), "year", "out of range for int32");
        await AssertMalformedAsync(await http.GetAsync("/v1/grants/abc"), "grant_id", "must be an integer");
        await AssertMalformedAsync(await http.GetAsync($"/v1/unit-years/{deal.Unit}/{Year}?asOf=yesterday"), "asOf", "RFC 3339");
        await AssertMalformedAsync(await http.GetAsync($"/v1/unit-years/{deal.Unit}/{Year}?asof=2026-01-01T00:00:00Z"), "asof", "unknown query parameter");
        await AssertMalformedAsync(await http.PostAsJsonAsync("/v1/grants?dryRun=true", new { requestId = "r" }), "dryRun", "unknown query parameter");

        // Nothing was granted: the contract is untouched.
        var contract = await server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = deal.Provider, ContractNo = deal.ContractNo });
        Assert.Equal(0, contract.GrantedFen);

        // The field names the mapping accepts are still accepted: JSON names and proto names, int64 as a string or a number.
        var dryRun = await OkAsync(await http.PostAsync("/v1/grants", new StringContent(
            $$"""{"request_id":"r","providerUscc":"{{deal.Provider}}","contract_no":"{{deal.ContractNo}}","amountFen":"1000","dry_run":true}""",
            System.Text.Encoding.UTF8, "application/json")));
        Assert.NotNull(dryRun["explanation"]);
        Assert.Equal(0, (await server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = deal.Provider, ContractNo = deal.ContractNo })).GrantedFen);
    }

    [Fact]
    public async Task Int64_figures_are_written_as_json_strings_as_the_protobuf_json_mapping_says()
    {
        using var http = new HttpClient(fixture.Server.CreateHandler()) { BaseAddress = fixture.Server.BaseAddress };
        var year = await OkAsync(await http.GetAsync("/v1/program-years/2026"));
        Assert.Equal(System.Text.Json.JsonValueKind.String, year["fundedFen"]!.GetValueKind());
        var overGrpc = await fixture.Server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 });
        Assert.Equal(overGrpc.FundedFen.ToString(System.Globalization.CultureInfo.InvariantCulture), year["fundedFen"]!.GetValue<string>());
        Assert.Equal(System.Text.Json.JsonValueKind.Number, year["year"]!.GetValueKind()); // int32 stays a number.
    }

    [Fact]
    public async Task A_body_or_message_over_the_limit_is_refused_with_request_too_large_over_json_and_grpc()
    {
        await using var server = fixture.StartServer(LedgerFixture.Now);
        using var http = new HttpClient(server.CreateHandler()) { BaseAddress = server.BaseAddress };
        var provider = TestUscc.New();

        // A valid request padded with whitespace past 1 MiB (the default limit).
        var padded = $$"""{"requestId":"{{Ids.New()}}","providerUscc":"{{provider}}","name":"padded",{{new string(' ', 1024 * 1024)}}"licences":["IDC-B1-20260001"]}""";
        await AssertRefusedAsync(await http.PostAsync("/v1/providers", new StringContent(padded, System.Text.Encoding.UTF8, "application/json")),
            HttpStatusCode.RequestEntityTooLarge, StatusCode.ResourceExhausted, "REQUEST_TOO_LARGE");
        // Without a Content-Length too (chunked): counted as it is read.
        var chunked = new StreamContent(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(padded)));
        chunked.Headers.ContentType = new("application/json");
        await AssertRefusedAsync(await http.PostAsync("/v1/providers", chunked), HttpStatusCode.RequestEntityTooLarge, StatusCode.ResourceExhausted, "REQUEST_TOO_LARGE");

        var tooLarge = await Assert.ThrowsAsync<RpcException>(() => server.Registry.RegisterProviderAsync(new RegisterProviderRequest
        {
            RequestId = Ids.New(), ProviderUscc = provider, Name = new string('x', 1024 * 1024), Licences = { "IDC-B1-20260001" },
        }).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, tooLarge.StatusCode);
        Assert.Equal("REQUEST_TOO_LARGE", tooLarge.GetRpcStatus()?.GetDetail<Google.Rpc.ErrorInfo>()?.Reason);

        // Nothing was registered; under the limit the same provider registers.
        await Assert.ThrowsAsync<RpcException>(() => server.Registry.GetProviderAsync(new GetProviderRequest { ProviderUscc = provider }).ResponseAsync);
        await OkAsync(await http.PostAsJsonAsync("/v1/providers", new { requestId = Ids.New(), providerUscc = provider, name = "small", licences = new[] { "IDC-B1-20260001" } }));
    }

    [Fact]
    public async Task The_openapi_document_is_openapi_3_1_with_an_operation_id_per_rpc_security_and_int64_as_strings()
    {
        using var http = new HttpClient(fixture.Server.CreateHandler()) { BaseAddress = fixture.Server.BaseAddress };
        var document = await OkAsync(await http.GetAsync("/openapi/v1.json"));
        Assert.Equal("3.1.0", document["openapi"]!.GetValue<string>());
        Assert.Equal("Apache-2.0", document["info"]!["license"]!["identifier"]!.GetValue<string>());
        Assert.NotEmpty(document["servers"]!.AsArray());
        Assert.Equal("mutualTLS", document["components"]!["securitySchemes"]!["mutualTLS"]!["type"]!.GetValue<string>());
        Assert.Equal("bearer", document["components"]!["securitySchemes"]!["bearer"]!["scheme"]!.GetValue<string>());

        var operations = document["paths"]!.AsObject().SelectMany(path => path.Value!.AsObject().Select(op => op.Value!)).ToList();
        var ids = operations.Select(op => op["operationId"]?.GetValue<string>()).ToList();
        Assert.DoesNotContain(null, ids);
        Assert.Equal(ids.Count, ids.Distinct().Count());
        var rpcs = Services().SelectMany(service => service.Methods).Select(method => method.Name).ToHashSet();
        Assert.All(ids, id => Assert.Contains(rpcs, rpc => id == rpc || id!.StartsWith(rpc + "By", StringComparison.Ordinal)));
        Assert.All(operations, op => Assert.Equal(2, op["security"]!.AsArray().Count));
        Assert.All(operations, op => Assert.False(string.IsNullOrWhiteSpace(op["summary"]?.GetValue<string>())));

        // One path per URL shape, whatever its variables are called.
        var shapes = document["paths"]!.AsObject().Select(path => Shape(path.Key)).ToList();
        Assert.Equal(shapes.Count, shapes.Distinct().Count());

        var unitYear = document["components"]!["schemas"]!["UnitYear"]!["properties"]!;
        Assert.Equal(("string", "int64"), (unitYear["capFen"]!["type"]!.GetValue<string>(), unitYear["capFen"]!["format"]!.GetValue<string>()));
        Assert.Equal("integer", unitYear["year"]!["type"]!.GetValue<string>());
        Assert.Equal("date-time", document["components"]!["schemas"]!["GrantInfo"]!["properties"]!["expiresAt"]!["format"]!.GetValue<string>());
    }

    private static async Task AssertMalformedAsync(HttpResponseMessage response, string field, string problem, string? sent = null)
    {
        var body = await response.Content.ReadAsStringAsync();
        await AssertRefusedAsync(response, HttpStatusCode.BadRequest, StatusCode.InvalidArgument, "MALFORMED_REQUEST");
        var info = JsonNode.Parse(body)!["details"]!.AsArray().Single(d => d!["@type"]!.GetValue<string>().EndsWith("ErrorInfo", StringComparison.Ordinal))!;
        Assert.True(field == info["metadata"]!["field"]!.GetValue<string>(), $"{sent}: expected the field '{field}', got {body}");
        Assert.True(info["metadata"]!["problem"]!.GetValue<string>().Contains(problem, StringComparison.Ordinal), $"{sent}: expected '{problem}', got {body}");
    }

    /// <summary>Every quotaledger.v1 service the server was compiled with (its generated reflection classes), so a new
    /// proto file is checked without being named here.</summary>
    private static IEnumerable<ServiceDescriptor> Services() =>
        typeof(Program).Assembly.GetTypes()
            .Select(type => type.GetProperty("Descriptor", BindingFlags.Public | BindingFlags.Static))
            .Where(property => property?.PropertyType == typeof(FileDescriptor))
            .Select(property => (FileDescriptor)property!.GetValue(null)!)
            .Where(file => file.Package == "quotaledger.v1")
            .SelectMany(file => file.Services);

    private static IEnumerable<(string Method, string Verb, string Path)> HttpBindings()
    {
        foreach (var method in Services().SelectMany(service => service.Methods))
        {
            if (method.GetOptions()?.GetExtension(AnnotationsExtensions.Http) is not { } rule)
            {
                continue;
            }

            foreach (var binding in rule.AdditionalBindings.Prepend(rule))
            {
                var (verb, path) = binding.PatternCase switch
                {
                    HttpRule.PatternOneofCase.Get => ("get", binding.Get),
                    HttpRule.PatternOneofCase.Put => ("put", binding.Put),
                    HttpRule.PatternOneofCase.Post => ("post", binding.Post),
                    HttpRule.PatternOneofCase.Delete => ("delete", binding.Delete),
                    HttpRule.PatternOneofCase.Patch => ("patch", binding.Patch),
                    _ => throw new InvalidOperationException($"{method.FullName}: an unexpected binding {binding}"),
                };
                yield return (method.FullName, verb, path);
            }
        }
    }

    private static string Shape(string path) => System.Text.RegularExpressions.Regex.Replace(path, @"\{[^}]*\}", "{}");

    /// <summary>A binding's path as the document writes it: path variables by their JSON (lowerCamelCase) names.</summary>
    private static string DocumentPath(string path) =>
        System.Text.RegularExpressions.Regex.Replace(path, "_([a-z])", m => m.Groups[1].Value.ToUpperInvariant());

    private static long Fen(JsonNode? node) => long.Parse(node!.ToString(), System.Globalization.CultureInfo.InvariantCulture);

    private static async Task<JsonNode> OkAsync(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode} {response.RequestMessage?.Method} {response.RequestMessage?.RequestUri}: {body}");
        return JsonNode.Parse(body)!;
    }

    /// <summary>The refusal as a JSON client sees it: the HTTP status of the gRPC code, and a google.rpc.Status body whose
    /// details carry the ErrorInfo with the reason word.</summary>
    private static async Task AssertRefusedAsync(HttpResponseMessage response, HttpStatusCode httpStatus, StatusCode code, string reason)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == httpStatus, $"expected {(int)httpStatus}, got {(int)response.StatusCode}: {body}");
        Assert.StartsWith("application/json", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        var status = JsonNode.Parse(body)!;
        Assert.Equal((int)code, status["code"]!.GetValue<int>());
        Assert.False(string.IsNullOrWhiteSpace(status["message"]?.GetValue<string>()), body);
        var info = Assert.Single(status["details"]!.AsArray(), d => d!["@type"]!.GetValue<string>() == "type.googleapis.com/google.rpc.ErrorInfo")!;
        Assert.Equal(reason, info["reason"]!.GetValue<string>());
        Assert.Equal("quotaledger.v1", info["domain"]!.GetValue<string>());
    }
}
