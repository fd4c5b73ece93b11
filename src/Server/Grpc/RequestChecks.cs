using System.Buffers;
using System.Buffers.Binary;
using Google.Api;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Microsoft.AspNetCore.Grpc.JsonTranscoding;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Grpc;

/// <summary>The <c>Requests</c> section: how large one request may be.</summary>
public sealed class RequestLimitOptions : ICheckedSettings
{
    public const long OneMebibyte = 1024 * 1024;

    /// <summary>The largest gRPC message or JSON body accepted, in bytes (1 MiB). Larger ones answer
    /// RESOURCE_EXHAUSTED / REQUEST_TOO_LARGE (HTTP 413 over JSON) before anything is read into a message.</summary>
    public int MaxBodyBytes { get; set; } = (int)OneMebibyte;

    public IEnumerable<string> Problems() => Settings.Range(nameof(MaxBodyBytes), MaxBodyBytes, 1024, 64 * OneMebibyte);

    /// <summary>The limit as configured, or the default, without the check (which runs at start).</summary>
    public static int MaxBodyBytesIn(IConfiguration configuration) =>
        int.TryParse(configuration["Requests:MaxBodyBytes"], System.Globalization.CultureInfo.InvariantCulture, out var limit) && limit > 0
            ? limit
            : (int)OneMebibyte;
}

/// <summary>The checks a request passes before its service method (and so before any interceptor) sees it, because they
/// are about the bytes, which a method never sees: the size limit on gRPC messages and JSON bodies alike, and the strict
/// protobuf JSON mapping on JSON (<see cref="StrictJson"/>). Each refusal carries its ErrorInfo as any other does;
/// nothing is read into a message and nothing runs.</summary>
internal static class RequestChecks
{
    public static void UseRequestChecks(this WebApplication app) => app.Use(CheckAsync);

    private static Task CheckAsync(HttpContext http, RequestDelegate next)
    {
        var limit = http.RequestServices.GetRequiredService<RequestLimitOptions>().MaxBodyBytes;
        if (JsonApi.IsGrpc(http.Request))
        {
            return CheckGrpcAsync(http, next, limit);
        }

        return http.GetEndpoint()?.Metadata.GetMetadata<GrpcJsonTranscodingMetadata>() is { } transcoded
            ? CheckJsonAsync(http, next, transcoded, limit)
            : next(http);
    }

    /// <summary>Every RPC takes one request message; its length prefix (after a one-byte compression flag) says its size
    /// before it is read. Peeked, not consumed: the gRPC handler reads the message as it arrived. (A compressed message
    /// that inflates past the limit is refused by gRPC's own MaxReceiveMessageSize, set to the same limit.)</summary>
    private static async Task CheckGrpcAsync(HttpContext http, RequestDelegate next, int limit)
    {
        var reader = http.Request.BodyReader;
        long length = 0;
        while (true)
        {
            var read = await reader.ReadAsync(http.RequestAborted);
            var buffer = read.Buffer;
            if (buffer.Length >= 5)
            {
                Span<byte> prefix = stackalloc byte[4];
                buffer.Slice(1, 4).CopyTo(prefix);
                length = BinaryPrimitives.ReadUInt32BigEndian(prefix);
                reader.AdvanceTo(buffer.Start);
                break;
            }

            if (read.IsCompleted)
            {
                reader.AdvanceTo(buffer.Start);
                break;
            }

            reader.AdvanceTo(buffer.Start, buffer.End);
        }

        if (length > limit)
        {
            WriteGrpcStatus(http.Response, TooLarge($"The request message is {length} bytes", limit));
            return;
        }

        await next(http);
    }

    /// <summary>A trailers-only gRPC answer (the status in the headers, no message), as gRPC answers a call it refuses
    /// before the method runs.</summary>
    private static void WriteGrpcStatus(HttpResponse response, Google.Rpc.Status status)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/grpc";
        response.Headers["grpc-status"] = status.Code.ToString(System.Globalization.CultureInfo.InvariantCulture);
        response.Headers["grpc-message"] = Uri.EscapeDataString(status.Message);
        response.Headers["grpc-status-details-bin"] = Convert.ToBase64String(status.ToByteArray());
    }

    private static async Task CheckJsonAsync(HttpContext http, RequestDelegate next, GrpcJsonTranscodingMetadata transcoded, int limit)
    {
        var request = transcoded.MethodDescriptor.InputType;
        var rule = transcoded.HttpRule;
        if (http.Request.ContentLength > limit)
        {
            await RefuseAsync(http, TooLarge($"The request body is {http.Request.ContentLength} bytes", limit), StatusCodes.Status413PayloadTooLarge);
            return;
        }

        var problem = PathProblem(http, request) ?? QueryProblem(http, request, rule);
        if (problem is null && rule.Body.Length > 0)
        {
            var body = await ReadAsync(http.Request.Body, limit, http.RequestAborted);
            if (body is null)
            {
                await RefuseAsync(http, TooLarge("The request body is larger", limit), StatusCodes.Status413PayloadTooLarge);
                return;
            }

            if (body.Length == 0)
            {
                body = "{}"u8.ToArray(); // No body: every field at its default, as an empty message over gRPC.
            }

            problem = BodyProblem(body, request, rule.Body);
            http.Request.Body = new MemoryStream(body, writable: false);
        }

        if (problem is not null)
        {
            var where = problem.Field.Length == 0 ? "The request body" : $"'{problem.Field}'";
            await RefuseAsync(http, ErrorInterceptor.ToStatus(Reason.MalformedRequest, $"{where}: {problem.Problem}. Nothing was done.",
                metadata: new Dictionary<string, string> { ["field"] = problem.Field, ["problem"] = problem.Problem }));
            return;
        }

        await next(http);
    }

    /// <summary>A body of <c>*</c> is the request message; a named body field is that field's message (or a list of them).</summary>
    private static JsonProblem? BodyProblem(byte[] body, MessageDescriptor request, string bodyField)
    {
        if (bodyField == "*")
        {
            return StrictJson.CheckBody(body, request);
        }

        var field = request.FindFieldByName(bodyField);
        return field.FieldType == FieldType.Message
            ? StrictJson.CheckBody(body, field.MessageType, field.IsRepeated)
            : new JsonProblem(bodyField, "a body field that is not a message is not served"); // None in the protos.
    }

    /// <summary>Path variables (<c>/v1/grants/{grant_id}</c>) hold scalar fields, named by their proto paths.</summary>
    private static JsonProblem? PathProblem(HttpContext http, MessageDescriptor request)
    {
        foreach (var (name, value) in http.Request.RouteValues)
        {
            if (value is string text && Resolve(request, name) is { } field && StrictJson.CheckText(field, text, name) is { } problem)
            {
                return problem;
            }
        }

        return null;
    }

    /// <summary>The query string holds the fields neither the path nor the body does; with a body of <c>*</c> it holds
    /// none. A name that is no field is refused, as an unknown body field is.</summary>
    private static JsonProblem? QueryProblem(HttpContext http, MessageDescriptor request, HttpRule rule)
    {
        foreach (var (name, values) in http.Request.Query)
        {
            if (rule.Body == "*")
            {
                return new JsonProblem(name, "unknown query parameter: this call takes every field in its JSON body");
            }

            if (Resolve(request, name) is not { } field)
            {
                return new JsonProblem(name, $"unknown query parameter: {request.Name} has no field '{name}'");
            }

            if (!field.IsRepeated && values.Count > 1)
            {
                return new JsonProblem(name, "given more than once");
            }

            foreach (var value in values)
            {
                if (StrictJson.CheckText(field, value ?? "", name) is { } problem)
                {
                    return problem;
                }
            }
        }

        return null;
    }

    /// <summary>The field a dotted path of JSON or proto names stands for, or null.</summary>
    private static FieldDescriptor? Resolve(MessageDescriptor type, string path)
    {
        FieldDescriptor? field = null;
        foreach (var name in path.Split('.'))
        {
            if (field is not null)
            {
                if (field.FieldType != FieldType.Message || field.IsRepeated)
                {
                    return null;
                }

                type = field.MessageType;
            }

            field = StrictJson.Find(type, name);
            if (field is null)
            {
                return null;
            }
        }

        return field;
    }

    /// <summary>The body, or null when it is longer than the limit (read no further than one byte past it).</summary>
    private static async Task<byte[]?> ReadAsync(Stream body, int limit, CancellationToken ct)
    {
        using var copy = new MemoryStream();
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            int read;
            while ((read = await body.ReadAsync(buffer, ct)) > 0)
            {
                copy.Write(buffer, 0, read);
                if (copy.Length > limit)
                {
                    return null;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return copy.ToArray();
    }

    private static Google.Rpc.Status TooLarge(string what, int limit) =>
        ErrorInterceptor.ToStatus(Reason.RequestTooLarge, $"{what}, over the limit of {limit} bytes (Requests:MaxBodyBytes); nothing was read or done.",
            metadata: new Dictionary<string, string> { ["limitBytes"] = limit.ToString(System.Globalization.CultureInfo.InvariantCulture) });

    private static Task RefuseAsync(HttpContext http, Google.Rpc.Status status, int? httpStatus = null) =>
        JsonApi.WriteStatusAsync(http.Response, status, httpStatus);
}
