using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Google.Api;
using Google.Protobuf.Reflection;
using Microsoft.AspNetCore.Grpc.JsonTranscoding;
using Microsoft.AspNetCore.Mvc.ApiExplorer;
using Microsoft.OpenApi.Any;
using Microsoft.OpenApi.Models;
using Microsoft.OpenApi.Writers;
using Swashbuckle.AspNetCore.Swagger;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace QuotaLedger.Server.Grpc;

/// <summary>The OpenAPI document of the JSON API, made to say exactly what the server sends and accepts, so a standard
/// generator makes a working client from it: each operation named after its RPC (<c>operationId</c>) with the RPC's
/// comment as summary and description; int64 as strings, Timestamps as RFC 3339 <c>date-time</c>, bytes as base64, enums
/// by name (the protobuf JSON mapping, <see cref="JsonApi"/>); one path per URL shape; the security schemes of secured
/// mode (a bearer token or a client certificate: mutual TLS); servers and licence. Written as OpenAPI 3.1, the version
/// that has a mutual-TLS scheme: Swashbuckle writes 3.0, and <see cref="To31"/> makes the few changes between them.</summary>
internal static partial class JsonApiDocument
{
    public const string BearerScheme = "bearer";
    public const string MutualTlsScheme = "mutualTLS";

    public static void Configure(SwaggerGenOptions swagger)
    {
        swagger.OperationFilter<RpcOperations>();
        swagger.DocumentFilter<ProtobufJsonMapping>();
    }

    /// <summary>The document as served: Swashbuckle's, then written as OpenAPI 3.1.</summary>
    public static string Write(ISwaggerProvider provider)
    {
        var document = provider.GetSwagger("v1");
        using var text = new StringWriter(System.Globalization.CultureInfo.InvariantCulture);
        document.SerializeAsV3(new OpenApiJsonWriter(text));
        var json = JsonNode.Parse(text.ToString())!.AsObject();
        To31(json);
        return json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>From OpenAPI 3.0 to 3.1: the version, <c>nullable</c> as a type list, the mutual-TLS scheme (3.1 only),
    /// and the licence by its SPDX identifier.</summary>
    private static void To31(JsonObject document)
    {
        document["openapi"] = "3.1.0";
        document["info"]!["license"] = new JsonObject { ["name"] = "Apache-2.0", ["identifier"] = "Apache-2.0" };
        document["components"]!["securitySchemes"]![MutualTlsScheme] = new JsonObject
        {
            ["type"] = "mutualTLS",
            ["description"] = "Secured mode: a client certificate from a trusted CA, the caller's USCC as the subject's single CN and one OU per " +
                "role (bureau, provider, unit, expert).",
        };
        Nullables(document);
    }

    private static void Nullables(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject schema:
                if (schema["nullable"] is JsonValue nullable && nullable.GetValue<bool>() && schema["type"] is JsonValue type)
                {
                    schema["type"] = new JsonArray(type.GetValue<string>(), "null");
                }

                schema.Remove("nullable");
                foreach (var (_, child) in schema.ToList())
                {
                    Nullables(child);
                }

                break;
            case JsonArray list:
                foreach (var child in list)
                {
                    Nullables(child);
                }

                break;
        }
    }

    /// <summary>The transcoding metadata of the operation Swashbuckle describes: its RPC and HTTP binding.</summary>
    private static GrpcJsonTranscodingMetadata? Rpc(ApiDescription description) =>
        description.ActionDescriptor.EndpointMetadata.OfType<GrpcJsonTranscodingMetadata>().FirstOrDefault();

    private static FieldDescriptor? FieldAt(MessageDescriptor type, string path)
    {
        FieldDescriptor? field = null;
        foreach (var name in path.Split('.'))
        {
            if (field is not null)
            {
                type = field.MessageType;
            }

            field = StrictJson.Find(type, name);
            if (field is null || (field.FieldType != FieldType.Message && name != path.Split('.')[^1]))
            {
                return null;
            }
        }

        return field;
    }

    /// <summary>An operation's name, summary and description from its RPC.</summary>
    private sealed class RpcOperations : IOperationFilter
    {
        public void Apply(OpenApiOperation operation, OperationFilterContext context)
        {
            if (Rpc(context.ApiDescription) is not { } rpc)
            {
                return;
            }

            var method = rpc.MethodDescriptor;
            operation.OperationId = method.Name + AdditionalBindingSuffix(method, rpc.HttpRule);
            var comment = (operation.Summary ?? "").Trim();
            if (comment.Length == 0)
            {
                comment = $"{method.Service.Name}.{method.Name}";
            }

            operation.Summary = FirstSentence(comment);
            operation.Description = comment;

            // Any call can be refused as malformed (or by its field checks) before it runs: a 400 with the same Status.
            if (operation.Responses.TryGetValue("default", out var error) && !operation.Responses.ContainsKey("400"))
            {
                operation.Responses["400"] = new OpenApiResponse
                {
                    Description = "INVALID_ARGUMENT (MALFORMED_REQUEST, INVALID_USCC, ...) or FAILED_PRECONDITION: a google.rpc.Status with the reason word in an ErrorInfo.",
                    Content = error.Content,
                };
            }

            // Path and query parameters are fields of the request too, named by their JSON paths.
            foreach (var parameter in operation.Parameters)
            {
                if (FieldAt(method.InputType, parameter.Name) is { } field && parameter.Schema is { } schema)
                {
                    ProtobufJsonMapping.Scalar(field, field.IsRepeated && schema.Items is not null ? schema.Items : schema);
                }
            }
        }

        /// <summary>An RPC's additional binding is a second operation; it is named after the last variable of its path
        /// (GetDeduction's <c>/v1/providers/{provider_uscc}/invoices/{invoice_no}/deduction</c> is
        /// <c>GetDeductionByInvoiceNo</c>).</summary>
        private static string AdditionalBindingSuffix(MethodDescriptor method, HttpRule binding)
        {
            var primary = method.GetOptions()?.GetExtension(AnnotationsExtensions.Http);
            if (primary is null || PathOf(primary) == PathOf(binding))
            {
                return "";
            }

            var variable = Variable().Matches(PathOf(binding)).LastOrDefault()?.Groups[1].Value ?? "Binding";
            return "By" + string.Concat(variable.Split('_', '.').Select(part => part.Length == 0 ? "" : char.ToUpperInvariant(part[0]) + part[1..]));
        }

        private static string PathOf(HttpRule rule) => rule.PatternCase switch
        {
            HttpRule.PatternOneofCase.Get => rule.Get,
            HttpRule.PatternOneofCase.Put => rule.Put,
            HttpRule.PatternOneofCase.Post => rule.Post,
            HttpRule.PatternOneofCase.Delete => rule.Delete,
            HttpRule.PatternOneofCase.Patch => rule.Patch,
            _ => rule.Custom?.Path ?? "",
        };

        private static string FirstSentence(string comment)
        {
            var line = comment.ReplaceLineEndings(" ");
            var end = Sentence().Match(line);
            var first = end.Success ? line[..(end.Index + 1)] : line;
            return first.Length <= 120 ? first : first[..117].TrimEnd() + "...";
        }
    }

    /// <summary>Each message's schema as the protobuf JSON mapping writes it, field by field from the descriptors; one path
    /// per URL shape; the Any of an error's details as what it is; the security schemes, servers and licence.</summary>
    private sealed class ProtobufJsonMapping : IDocumentFilter
    {
        public void Apply(OpenApiDocument document, DocumentFilterContext context)
        {
            var rpcs = context.ApiDescriptions.Select(Rpc).OfType<GrpcJsonTranscodingMetadata>().ToList();
            var messages = new Dictionary<string, MessageDescriptor>(StringComparer.Ordinal);
            foreach (var rpc in rpcs)
            {
                Collect(rpc.MethodDescriptor.InputType, messages);
                Collect(rpc.MethodDescriptor.OutputType, messages);
            }

            foreach (var (name, schema) in document.Components.Schemas)
            {
                if (messages.TryGetValue(name, out var message))
                {
                    Fields(message, schema);
                }
            }

            MergeIdenticalPaths(document);
            WellKnownTypes(document);
            Security(document);
            document.Info.License = new OpenApiLicense { Name = "Apache-2.0", Url = new Uri("https://www.apache.org/licenses/LICENSE-2.0") };
            document.Servers =
            [
                new OpenApiServer { Url = "http://127.0.0.1:5082", Description = "Development (`dotnet run --project src/Server`): no credentials, loopback only." },
                new OpenApiServer { Url = "https://127.0.0.1:5444", Description = "Secured mode as `dev-pki` configures it: a bearer token or a client certificate." },
            ];
        }

        private static void Collect(MessageDescriptor message, Dictionary<string, MessageDescriptor> messages)
        {
            if (message.File.Package == "google.protobuf" || !messages.TryAdd(message.Name, message))
            {
                return;
            }

            foreach (var field in message.Fields.InDeclarationOrder().Where(f => f.FieldType == FieldType.Message))
            {
                Collect(field.MessageType, messages);
            }
        }

        private static void Fields(MessageDescriptor message, OpenApiSchema schema)
        {
            foreach (var (name, property) in schema.Properties)
            {
                if (StrictJson.Find(message, name) is not { } field)
                {
                    continue;
                }

                var target = field.IsMap ? property.AdditionalProperties : field.IsRepeated ? property.Items : property;
                if (target is not null)
                {
                    Scalar(field.IsMap ? field.MessageType.FindFieldByNumber(2) : field, target);
                }
            }
        }

        /// <summary>A field's value schema as the mapping writes it (a message's own schema is its component's).</summary>
        public static void Scalar(FieldDescriptor field, OpenApiSchema schema)
        {
            switch (field.FieldType)
            {
                case FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64:
                    (schema.Type, schema.Format) = ("string", "int64");
                    schema.Pattern = "^-?[0-9]+$";
                    break;
                case FieldType.UInt64 or FieldType.Fixed64:
                    (schema.Type, schema.Format) = ("string", "uint64");
                    schema.Pattern = "^[0-9]+$";
                    break;
                case FieldType.Bytes:
                    (schema.Type, schema.Format) = ("string", "byte");
                    break;
                case FieldType.Message when field.MessageType.FullName == "google.protobuf.Timestamp":
                    (schema.Type, schema.Format) = ("string", "date-time");
                    schema.Reference = null;
                    break;
            }
        }

        /// <summary>Two bindings may spell one URL shape with different variable names (SetAlertRules' <c>{rules.year}</c>
        /// and GetAlertRules' <c>{year}</c>): one path for both, with the first's names. The URL is the same either way;
        /// the variables are matched by position.</summary>
        private static void MergeIdenticalPaths(OpenApiDocument document)
        {
            foreach (var group in document.Paths.GroupBy(path => Variable().Replace(path.Key, "{}")).Where(g => g.Count() > 1).ToList())
            {
                var keep = group.OrderBy(path => path.Key.Count(c => c == '.')).First();
                var names = Variable().Matches(keep.Key).Select(m => m.Groups[1].Value).ToList();
                foreach (var other in group.Where(path => path.Key != keep.Key))
                {
                    var renames = Variable().Matches(other.Key).Select((m, i) => (From: m.Groups[1].Value, To: names[i])).ToList();
                    foreach (var (verb, operation) in other.Value.Operations)
                    {
                        foreach (var parameter in operation.Parameters.Where(p => p.In == ParameterLocation.Path))
                        {
                            parameter.Name = renames.FirstOrDefault(r => r.From == parameter.Name).To ?? parameter.Name;
                        }

                        keep.Value.Operations[verb] = operation;
                    }

                    document.Paths.Remove(other.Key);
                }
            }
        }

        /// <summary>An error's <c>details</c> are <c>google.protobuf.Any</c>: an object with <c>@type</c> and that type's
        /// fields (an ErrorInfo, a RetryInfo). Swashbuckle describes the C# classes of Value and Struct instead.</summary>
        private static void WellKnownTypes(OpenApiDocument document)
        {
            var schemas = document.Components.Schemas;
            schemas["Any"] = new OpenApiSchema
            {
                Type = "object",
                Description = "A google.protobuf.Any: '@type' names the message, the other properties are its fields. An error carries a " +
                    "google.rpc.ErrorInfo (reason, domain 'quotaledger.v1', metadata) and, for RATE_LIMITED, a google.rpc.RetryInfo.",
                Required = new HashSet<string> { "@type" },
                Properties = new Dictionary<string, OpenApiSchema> { ["@type"] = new() { Type = "string", Example = new OpenApiString("type.googleapis.com/google.rpc.ErrorInfo") } },
                AdditionalProperties = new OpenApiSchema(),
                AdditionalPropertiesAllowed = true,
            };
            foreach (var unused in new[] { "Value", "Struct", "ListValue", "NullValue", "KindOneofCase" })
            {
                schemas.Remove(unused);
            }
        }

        private static void Security(OpenApiDocument document)
        {
            document.Components.SecuritySchemes[BearerScheme] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http,
                Scheme = "bearer",
                BearerFormat = "JWT",
                Description = "Secured mode: a token from the configured issuer, 'sub' the caller's USCC, 'roles' its roles, 'exp' required. " +
                    "Development mode (loopback only) takes no credentials.",
            };
            var either = new[] { BearerScheme, MutualTlsScheme }.Select(name => new OpenApiSecurityRequirement
            {
                [new OpenApiSecurityScheme { Reference = new OpenApiReference { Type = ReferenceType.SecurityScheme, Id = name } }] = [],
            });
            foreach (var operation in document.Paths.Values.SelectMany(path => path.Operations.Values))
            {
                operation.Security = [.. either];
            }
        }
    }

    [GeneratedRegex(@"\{([^}=]+)(=[^}]*)?\}")]
    private static partial Regex Variable();

    [GeneratedRegex(@"\.(\s|$)")]
    private static partial Regex Sentence();
}
