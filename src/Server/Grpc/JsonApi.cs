using Google.Protobuf;
using Google.Protobuf.Reflection;
using Google.Rpc;
using Grpc.AspNetCore.Server;
using Microsoft.OpenApi.Models;
using GrpcCode = Grpc.Core.StatusCode;

namespace QuotaLedger.Server.Grpc;

/// <summary>Every RPC also as JSON over HTTP/1.1, from the <c>google.api.http</c> bindings in the protos (gRPC JSON
/// transcoding), and the OpenAPI document that describes it. A transcoded call runs the same service method behind the
/// same interceptors as a gRPC call: the caller check, the rate limit and the error translation are not repeated here.</summary>
internal static class JsonApi
{
    /// <summary>Where the OpenAPI document is served. Stable: clients generate code from it.</summary>
    public const string OpenApiPath = "/openapi/v1.json";

    /// <summary>The types an error body may carry in its <c>details</c>: a refusal's ErrorInfo and, when it passes,
    /// RetryInfo. The JSON writer needs to know them to write a <c>google.protobuf.Any</c>.</summary>
    public static readonly TypeRegistry ErrorDetails = TypeRegistry.FromMessages(ErrorInfo.Descriptor, RetryInfo.Descriptor);

    private static readonly JsonFormatter StatusFormatter = new(JsonFormatter.Settings.Default.WithTypeRegistry(ErrorDetails));

    public static void AddJsonApi(this IGrpcServerBuilder grpc)
    {
        // A refusal's google.rpc.Status (grpc-status-details-bin) becomes the error body, ErrorInfo included.
        // int64 as JSON strings, as the protobuf JSON mapping writes them (a JSON number past 2^53 loses digits in most
        // parsers); enums by name; Timestamps as RFC 3339. Reading accepts int64 as a string or a number.
        grpc.AddJsonTranscoding(options =>
        {
            options.TypeRegistry = ErrorDetails;
            options.JsonSettings.WriteInt64sAsStrings = true;
        });

        grpc.Services.AddGrpcSwagger();
        grpc.Services.AddSwaggerGen(swagger =>
        {
            swagger.SwaggerDoc("v1", new OpenApiInfo
            {
                Title = "QuotaLedger",
                Version = "v1",
                Description = "The quotaledger.v1 gRPC services as JSON over HTTP. Errors are a google.rpc.Status whose details " +
                    "carry a google.rpc.ErrorInfo (domain quotaledger.v1) with the reason word.",
            });

            // The protos' comments, compiled into the server's XML documentation, describe the operations and fields.
            var comments = Path.Combine(AppContext.BaseDirectory, "QuotaLedger.Server.xml");
            if (File.Exists(comments))
            {
                swagger.IncludeXmlComments(comments);
                swagger.IncludeGrpcXmlComments(comments, includeControllerXmlComments: true);
            }

            JsonApiDocument.Configure(swagger);
        });
    }

    public static void MapOpenApiDocument(this WebApplication app)
    {
        var document = new Lazy<string>(() => JsonApiDocument.Write(app.Services.GetRequiredService<Swashbuckle.AspNetCore.Swagger.ISwaggerProvider>()));
        app.MapGet(OpenApiPath, () => Results.Text(document.Value, "application/json; charset=utf-8")).ExcludeFromDescription();
    }

    /// <summary>Whether a request is a gRPC call (as opposed to a transcoded JSON one, or a request for the document).</summary>
    public static bool IsGrpc(Microsoft.AspNetCore.Http.HttpRequest request) =>
        request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

    /// <summary>Answers a request refused before it reached a service (no interceptor ran) as transcoding answers a
    /// refusal: the HTTP status of the gRPC code, and the google.rpc.Status as the JSON body.</summary>
    public static async Task WriteStatusAsync(Microsoft.AspNetCore.Http.HttpResponse response, Google.Rpc.Status status, int? httpStatus = null)
    {
        response.StatusCode = httpStatus ?? HttpStatusOf((GrpcCode)status.Code);
        response.ContentType = "application/json; charset=utf-8";
        await response.WriteAsync(StatusFormatter.Format(status));
    }

    /// <summary>The HTTP status a gRPC code answers with over HTTP, as google.rpc maps it (and transcoding does).</summary>
    public static int HttpStatusOf(GrpcCode code) => code switch
    {
        GrpcCode.InvalidArgument or GrpcCode.FailedPrecondition or GrpcCode.OutOfRange => StatusCodes.Status400BadRequest,
        GrpcCode.Unauthenticated => StatusCodes.Status401Unauthorized,
        GrpcCode.PermissionDenied => StatusCodes.Status403Forbidden,
        GrpcCode.NotFound => StatusCodes.Status404NotFound,
        GrpcCode.AlreadyExists or GrpcCode.Aborted => StatusCodes.Status409Conflict,
        GrpcCode.ResourceExhausted => StatusCodes.Status429TooManyRequests,
        GrpcCode.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };
}
