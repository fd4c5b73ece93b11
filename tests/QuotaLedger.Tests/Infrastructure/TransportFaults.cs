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

/// <summary>Breaks the first <paramref name="breaks"/> responses of one streaming method: each passes
/// <paramref name="afterBytes"/> bytes of its body (headers always), then, once <paramref name="hold"/> completes (at once
/// when null), fails the read as a reset connection does, wherever in a message that falls.</summary>
public sealed class BreakStreams(string path, int breaks, long afterBytes, Task? hold = null) : DelegatingHandler
{
    private int _responses;

    /// <summary>How many responses of the method have come (broken ones included).</summary>
    public int Responses => _responses;

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken);
        if (request.RequestUri!.AbsolutePath != path || Interlocked.Increment(ref _responses) > breaks)
        {
            return response;
        }

        var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        var cut = new StreamContent(new CutStream(body, afterBytes, hold ?? Task.CompletedTask));
        foreach (var header in response.Content.Headers)
        {
            cut.Headers.TryAddWithoutValidation(header.Key, header.Value);
        }

        response.Content = cut;
        return response;
    }

    private sealed class CutStream(Stream inner, long allowed, Task hold) : Stream
    {
        private long _left = allowed;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_left <= 0)
            {
                await hold.WaitAsync(cancellationToken);
                throw TransportFaults.Reset();
            }

            var read = await inner.ReadAsync(buffer[..(int)Math.Min(buffer.Length, _left)], cancellationToken);
            _left -= read;
            return read;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count).GetAwaiter().GetResult();
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
