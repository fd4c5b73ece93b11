using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Bureau;

/// <summary>The bureau's read-only page: <c>/bureau/</c> (a static page and the charting library, embedded in the
/// server) and <c>/bureau/api/summary?year=</c>, the JSON it draws. Every request is admitted by the
/// <see cref="CallerGate"/> the gRPC calls pass (in secured mode an authenticated caller over TLS, in development the
/// development identity on loopback) and needs the bureau role, checked by <see cref="Access"/> as the RPCs check it.
/// A browser speaks HTTP/1.1, so the page is served on an endpoint that does: <c>Web</c> in development, a TLS endpoint
/// with <c>Http1AndHttp2</c> in secured mode.</summary>
internal static class BureauPage
{
    public const string Path = "/bureau";

    /// <summary>The page's files, embedded as <c>bureau/NAME</c> (Server.csproj), and what each is.</summary>
    private static readonly Dictionary<string, string> s_contentTypes = new(StringComparer.Ordinal)
    {
        [".html"] = "text/html; charset=utf-8",
        [".js"] = "text/javascript; charset=utf-8",
        [".css"] = "text/css; charset=utf-8",
        [".svg"] = "image/svg+xml",
    };

    public static void MapBureauPage(this WebApplication app)
    {
        var page = app.MapGroup(Path).AddEndpointFilter(AdmitAsync);
        page.MapGet("/api/summary", SummaryAsync);
        page.MapGet("/", () => File("index.html"));
        page.MapGet("/{**file}", File);
    }

    /// <summary>The year's summary; the year defaults to the current programme year on the server's clock.</summary>
    private static async Task<IResult> SummaryAsync(int? year, LedgerDb db, LedgerDatabase database, CheckpointSigner signer, TimeProvider time, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var summary = await BureauSummary.ReadAsync(db, database, signer, Validate.Year(year ?? ChinaCalendar.YearOf(now)), now, ct);
        return Results.Json(summary);
    }

    private static IResult File(string file)
    {
        var stream = s_contentTypes.TryGetValue(System.IO.Path.GetExtension(file), out var contentType)
            ? typeof(BureauPage).Assembly.GetManifestResourceStream("bureau/" + file)
            : null;
        return stream is null ? Results.NotFound() : Results.Stream(stream, contentType);
    }

    private static async ValueTask<object?> AdmitAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var headers = http.Response.Headers;
        headers.ContentSecurityPolicy = "default-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'";
        headers.XContentTypeOptions = "nosniff";
        headers.CacheControl = "no-store";
        try
        {
            var (caller, lease) = http.RequestServices.GetRequiredService<CallerGate>().Admit(http);
            using (lease)
            {
                Access.Require(caller, Role.Bureau);
                return await next(context);
            }
        }
        catch (LedgerException refusal)
        {
            return Refusal(http, refusal);
        }
    }

    /// <summary>A refusal as HTTP: the status of the reason's gRPC code (<see cref="JsonApi.HttpStatusOf"/>), and the
    /// reason word and message as JSON.</summary>
    private static IResult Refusal(HttpContext http, LedgerException refusal)
    {
        var status = JsonApi.HttpStatusOf(refusal.Reason.Status());
        if (status == StatusCodes.Status401Unauthorized)
        {
            http.Response.Headers.WWWAuthenticate = "Bearer";
        }

        if (refusal.RetryAfter is { } retryAfter)
        {
            http.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        return Results.Json(new { reason = refusal.Reason.Word(), message = refusal.Message }, statusCode: status);
    }
}
