using System.Globalization;
using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace QuotaLedger.Server.Grpc;

/// <summary>What is wrong with a JSON request, and where: <see cref="Field"/> is the path of the field in the request as
/// its JSON names spell it (<c>materials[2].kind</c>; empty for the body as a whole).</summary>
public sealed record JsonProblem(string Field, string Problem);

/// <summary>The protobuf JSON mapping, checked strictly against a request message's descriptor before transcoding reads
/// it: an unknown field, a value of the wrong type, an integer past its type's range, an enum name the enum does not
/// have, a time that is not RFC 3339. gRPC cannot carry any of these, so over JSON none of them may be dropped or
/// guessed at: each is refused, naming the field. Field names are the lowerCamelCase JSON name or the proto name, as the
/// mapping (and transcoding) accepts; null is a field's default. A pure function of the descriptor and the text.</summary>
public static class StrictJson
{
    /// <summary>How deep a body may nest; the API's messages nest a handful of levels.</summary>
    private const int MaxDepth = 32;

    /// <summary>The problem with a JSON body holding a <paramref name="type"/> message (or, for a repeated body field, a
    /// list of them), or null when there is none.</summary>
    public static JsonProblem? CheckBody(ReadOnlyMemory<byte> body, MessageDescriptor type, bool repeated = false)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = MaxDepth });
        }
        catch (JsonException e)
        {
            return new JsonProblem("", $"not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})");
        }

        using (document)
        {
            if (!repeated)
            {
                return Message(type, document.RootElement, "");
            }

            if (document.RootElement.ValueKind != JsonValueKind.Array)
            {
                return new JsonProblem("", "must be a JSON array");
            }

            var index = 0;
            foreach (var item in document.RootElement.EnumerateArray())
            {
                if (Message(type, item, $"[{index++}]") is { } problem)
                {
                    return problem;
                }
            }

            return null;
        }
    }

    /// <summary>The problem with a value given as text (a path variable or a query parameter) for a field of a scalar,
    /// enum or well-known type, or null when there is none.</summary>
    public static JsonProblem? CheckText(FieldDescriptor field, string text, string path)
    {
        if (field.FieldType == FieldType.Bool)
        {
            return text is "true" or "false" ? null : new JsonProblem(path, "must be true or false");
        }

        using var document = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(text));
        return field.FieldType == FieldType.Message && !IsWellKnown(field.MessageType)
            ? new JsonProblem(path, "is a message and cannot be given as text")
            : Single(field, document.RootElement, path);
    }

    /// <summary>The field a JSON name or proto name stands for in a message, or null.</summary>
    public static FieldDescriptor? Find(MessageDescriptor type, string name) =>
        type.Fields.InDeclarationOrder().FirstOrDefault(f => f.JsonName == name) ?? type.FindFieldByName(name);

    private static JsonProblem? Message(MessageDescriptor type, JsonElement value, string path)
    {
        if (IsWellKnown(type))
        {
            return WellKnown(type, value, path);
        }

        if (value.ValueKind != JsonValueKind.Object)
        {
            return new JsonProblem(path, $"must be a JSON object ({type.Name}), not {Kind(value)}");
        }

        foreach (var property in value.EnumerateObject())
        {
            var field = Find(type, property.Name);
            var at = Join(path, field?.JsonName ?? property.Name);
            if (field is null)
            {
                return new JsonProblem(at, $"unknown field: {type.Name} has no field '{property.Name}'");
            }

            if (Field(field, property.Value, at) is { } problem)
            {
                return problem;
            }
        }

        return null;
    }

    private static JsonProblem? Field(FieldDescriptor field, JsonElement value, string path)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (field.IsMap)
        {
            return Map(field, value, path);
        }

        if (!field.IsRepeated)
        {
            return Single(field, value, path);
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            return new JsonProblem(path, $"must be a JSON array, not {Kind(value)}");
        }

        var index = 0;
        foreach (var item in value.EnumerateArray())
        {
            var at = $"{path}[{index++}]";
            if (item.ValueKind == JsonValueKind.Null)
            {
                return new JsonProblem(at, "null in a list");
            }

            if (Single(field, item, at) is { } problem)
            {
                return problem;
            }
        }

        return null;
    }

    private static JsonProblem? Map(FieldDescriptor field, JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            return new JsonProblem(path, $"must be a JSON object (a map), not {Kind(value)}");
        }

        var key = field.MessageType.FindFieldByNumber(1);
        var entry = field.MessageType.FindFieldByNumber(2);
        foreach (var property in value.EnumerateObject())
        {
            var at = $"{path}[{property.Name}]";
            var problem = key.FieldType == FieldType.String ? null : CheckText(key, property.Name, at);
            problem ??= property.Value.ValueKind == JsonValueKind.Null ? new JsonProblem(at, "null as a map value") : Single(entry, property.Value, at);
            if (problem is not null)
            {
                return problem;
            }
        }

        return null;
    }

    private static JsonProblem? Single(FieldDescriptor field, JsonElement value, string path) => field.FieldType switch
    {
        FieldType.Message or FieldType.Group => Message(field.MessageType, value, path),
        FieldType.Enum => Enum(field.EnumType, value, path),
        FieldType.Bool => value.ValueKind is JsonValueKind.True or JsonValueKind.False ? null : Wrong(path, "true or false", value),
        FieldType.String => value.ValueKind == JsonValueKind.String ? null : Wrong(path, "a string", value),
        FieldType.Bytes => value.ValueKind == JsonValueKind.String && IsBase64(value.GetString()!) ? null : Wrong(path, "a base64 string", value),
        FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32 => Integer(value, path, int.MinValue, int.MaxValue, "int32"),
        FieldType.UInt32 or FieldType.Fixed32 => Integer(value, path, 0, uint.MaxValue, "uint32"),
        FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64 => Integer(value, path, long.MinValue, long.MaxValue, "int64"),
        FieldType.UInt64 or FieldType.Fixed64 => UInt64(value, path),
        FieldType.Double or FieldType.Float => Number(value, path),
        _ => new JsonProblem(path, $"has a type the server does not read ({field.FieldType})"),
    };

    private static JsonProblem? Enum(EnumDescriptor type, JsonElement value, string path)
    {
        if (value.ValueKind == JsonValueKind.String)
        {
            var name = value.GetString()!;
            return type.FindValueByName(name) is not null
                ? null
                : new JsonProblem(path, $"unknown value '{name}' of {type.Name} (one of {string.Join(", ", type.Values.Select(v => v.Name))})");
        }

        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var number))
        {
            return type.FindValueByNumber(number) is not null ? null : new JsonProblem(path, $"unknown value {number} of {type.Name}");
        }

        return Wrong(path, $"the name of a {type.Name} value", value);
    }

    /// <summary>An integer as a JSON number or a string of decimal digits (how int64 travels, past 2^53), within range.</summary>
    private static JsonProblem? Integer(JsonElement value, string path, long min, long max, string type)
    {
        var text = value.ValueKind switch
        {
            JsonValueKind.Number => value.GetRawText(),
            JsonValueKind.String => value.GetString()!,
            _ => null,
        };
        if (text is null || !IsDecimal(text.StartsWith('-') ? text[1..] : text))
        {
            return Wrong(path, $"an integer ({type}, as a number or a string of digits)", value);
        }

        return long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) && number >= min && number <= max
            ? null
            : new JsonProblem(path, $"{text} is out of range for {type} ({min} to {max})");
    }

    private static JsonProblem? UInt64(JsonElement value, string path)
    {
        var text = value.ValueKind switch
        {
            JsonValueKind.Number => value.GetRawText(),
            JsonValueKind.String => value.GetString()!,
            _ => null,
        };
        if (text is null || !IsDecimal(text))
        {
            return Wrong(path, "an unsigned integer (uint64, as a number or a string of digits)", value);
        }

        return ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out _) ? null : new JsonProblem(path, $"{text} is out of range for uint64");
    }

    private static JsonProblem? Number(JsonElement value, string path) => value.ValueKind switch
    {
        JsonValueKind.Number when value.TryGetDouble(out var number) && double.IsFinite(number) => null,
        JsonValueKind.String when value.GetString() is "NaN" or "Infinity" or "-Infinity" => null,
        _ => Wrong(path, "a number", value),
    };

    /// <summary>The well-known types have JSON forms of their own (a Timestamp is an RFC 3339 string); Google.Protobuf's
    /// parser is the reference for them.</summary>
    private static bool IsWellKnown(MessageDescriptor type) => type.File.Package == "google.protobuf";

    private static JsonProblem? WellKnown(MessageDescriptor type, JsonElement value, string path)
    {
        try
        {
            JsonParser.Default.Parse(value.GetRawText(), type);
            return null;
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or InvalidJsonException or FormatException or InvalidOperationException)
        {
            return type.FullName == "google.protobuf.Timestamp"
                ? Wrong(path, "an RFC 3339 time in UTC (\"2026-06-01T00:00:00Z\")", value)
                : new JsonProblem(path, $"is not a {type.FullName} in its JSON form: {e.Message}");
        }
    }

    private static bool IsDecimal(string digits) => digits.Length > 0 && digits.All(char.IsAsciiDigit);

    private static bool IsBase64(string text)
    {
        var standard = text.Replace('-', '+').Replace('_', '/');
        standard = standard.PadRight(standard.Length + ((4 - (standard.Length % 4)) % 4), '=');
        return Convert.TryFromBase64String(standard, new byte[standard.Length], out _);
    }

    private static JsonProblem Wrong(string path, string expected, JsonElement value) =>
        new(path, value.ValueKind == JsonValueKind.String
            ? $"must be {expected}, not the string {Quote(value.GetString()!)}"
            : $"must be {expected}, not {Kind(value)}");

    private static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => $"the number {value.GetRawText()}",
        JsonValueKind.True or JsonValueKind.False => $"the boolean {value.GetRawText()}",
        _ => "null",
    };

    private static string Quote(string text) => "'" + (text.Length > 40 ? text[..40] + "…" : text) + "'";

    private static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";
}
