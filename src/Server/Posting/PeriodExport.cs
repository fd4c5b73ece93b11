using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace QuotaLedger.Server.Posting;

/// <summary>The lines of a period's export ("quotaledger-period-export/1"): one JSON object per line,
/// <c>{"n":1,"type":"closing","format":"...","data":{...},"prev":"...","sha256":"..."}</c>. <c>type</c> is
/// <c>closing</c> (the first line: the Closing as GetClosing answers it), <c>checkpoint</c> (as ListCheckpoints streams
/// them) or <c>entry</c> (as ListEntries streams them); <c>data</c> is protobuf's JSON of it. <c>prev</c> is the
/// previous line's <c>sha256</c> (empty on the first) and <c>sha256</c> the hex SHA-256 of the line's UTF-8 text up to
/// <c>,"sha256"</c> with a closing brace: a line changed, dropped or moved breaks every hash after it. The line hashes
/// only show a file is whole; what the ledger signed is held by the checkpoints' signatures.</summary>
public sealed class PeriodExport
{
    private const string HashField = ",\"sha256\":\"";

    private string _previous = "";
    private long _count;

    /// <summary>The next line of the export (without its newline).</summary>
    public string Line(string type, string dataJson, string? format = null)
    {
        var head = new StringBuilder()
            .Append("{\"n\":").Append((++_count).ToString(CultureInfo.InvariantCulture))
            .Append(",\"type\":").Append(JsonSerializer.Serialize(type));
        if (format is not null)
        {
            head.Append(",\"format\":").Append(JsonSerializer.Serialize(format));
        }

        head.Append(",\"data\":").Append(dataJson).Append(",\"prev\":\"").Append(_previous).Append('"');
        _previous = HashOf(head + "}");
        return head.Append(HashField).Append(_previous).Append("\"}").ToString();
    }

    /// <summary>Checks a line's own hash and its link to the line before; the line's type, format and data (as JSON
    /// text), or the problem.</summary>
    public static (string Type, string? Format, string Data)? Read(string line, string previousHash, out string hash, out string? problem)
    {
        hash = "";
        problem = null;
        var at = line.LastIndexOf(HashField, StringComparison.Ordinal);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            problem = $"it is not JSON ({e.Message})";
            return null;
        }

        using (document)
        {
            var root = document.RootElement;
            if (at < 0 || !root.TryGetProperty("sha256", out var stated) || !root.TryGetProperty("prev", out var prev)
                || !root.TryGetProperty("type", out var type) || !root.TryGetProperty("data", out var data))
            {
                problem = "it lacks n, type, data, prev or sha256";
                return null;
            }

            hash = HashOf(line[..at] + "}");
            if (!string.Equals(stated.GetString(), hash, StringComparison.Ordinal))
            {
                problem = "its sha256 does not match its content";
            }
            else if (!string.Equals(prev.GetString(), previousHash, StringComparison.Ordinal))
            {
                problem = "it does not follow the line before it (a line was removed, inserted or moved)";
            }

            return (type.GetString() ?? "", root.TryGetProperty("format", out var format) ? format.GetString() : null, data.GetRawText());
        }
    }

    private static string HashOf(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}
