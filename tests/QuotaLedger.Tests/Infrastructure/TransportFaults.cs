using System.Globalization;
using System.Net;
using System.Net.Http.Headers;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>HTTP handlers that put the SDK's transport through what a network does to it: answers lost after the server
/// acted, connections refused, requests held back, a status answered without the server.</summary>
public static class TransportFaults
{
    /// <summary>The exception a reset connection gives after the server answered.</summary>
    public static HttpRequestException Reset() =>
        new("The connection was reset after the server answered.", new IOException("Connection reset by peer"));

    /// <summary>A trailers-only gRPC response carrying <paramref name="status"/>, as a server (or a proxy) answers one.</summary>
    public static HttpResponseMessage StatusOnly(Grpc.Core.StatusCode status, string message)
    {
        var response = new HttpResponseMessage(HttpStatusCode.OK) { Version = HttpVersion.Version20, Content = new ByteArrayContent([]) };
        response.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        response.Headers.Add("grpc-status", ((int)status).ToString(CultureInfo.InvariantCulture));
        response.Headers.Add("grpc-message", message);
        return response;
    }
}

/// <summary>Lets the server answer, then loses the response of one method the first <paramref name="drop"/> times, as a
/// dropped connection would. <see cref="Attempts"/> counts that method's requests.</summary>
public sealed class DropResponses(string path, int drop = 1) : DelegatingHandler
{
    private int _attempts;

    public int Attempts => _attempts;

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken);
        if (request.RequestUri!.AbsolutePath == path && Interlocked.Increment(ref _attempts) <= drop)
        {
            await response.Content.ReadAsByteArrayAsync(cancellationToken);
            response.Dispose();
            throw TransportFaults.Reset();
        }

        return response;
    }
}

/// <summary>Counts the requests that pass.</summary>
public sealed class CountRequests : DelegatingHandler
{
    private int _requests;

    public int Requests => _requests;

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _requests);
        return base.SendAsync(request, cancellationToken);
    }
}
