using System.Runtime.CompilerServices;
using Grpc.Core;

namespace QuotaLedger.Client;

public sealed partial class QuotaLedgerClient
{
    /// <summary>The response header in which the server names a watch's starting cursor.</summary>
    private const string StartCursorHeader = "quotaledger-start-cursor";

    /// <inheritdoc />
    public async IAsyncEnumerable<LedgerEvent> WatchAsync(WatchFilter? filter = null, string? afterCursor = null, bool fromNow = false,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (fromNow && afterCursor is not null)
        {
            throw new ArgumentException("Pass afterCursor or fromNow, not both.", nameof(fromNow));
        }

        var request = Map.ToRequest(filter ?? new WatchFilter());
        request.AfterCursor = afterCursor ?? "";
        request.FromNow = fromNow;
        // Failures in a row without an event in between: progress starts the count again, so a watch that is served
        // runs for as long as the caller reads, through any number of server restarts.
        var failures = 0;
        while (true)
        {
            using var call = _ledger.Watch(request, cancellationToken: cancellationToken);
            var stream = call.ResponseStream;
            var wait = TimeSpan.Zero;
            while (true)
            {
                V1.WatchEvent current;
                try
                {
                    if (request.FromNow)
                    {
                        // The server names the place "now" put the watch at: a reconnect resumes from it, so nothing that
                        // commits between the first call and a reconnect is missed.
                        var headers = await call.ResponseHeadersAsync;
                        if (headers.GetValue(StartCursorHeader) is { Length: > 0 } start)
                        {
                            request.AfterCursor = start;
                            request.FromNow = false;
                        }
                    }

                    if (!await stream.MoveNext(cancellationToken))
                    {
                        // The server ends a watch only with an error; an end without one is a broken stream too.
                        throw new RpcException(new Status(StatusCode.Unavailable, "The watch ended without a status."));
                    }

                    current = stream.Current;
                }
                catch (RpcException error) when (!cancellationToken.IsCancellationRequested && error.StatusCode == StatusCode.Unavailable
                    && ++failures < _options.Retry.MaxAttempts)
                {
                    wait = Backoff(failures);
                    ClientLog.Retrying(_logger, s_watch.FullName, failures, error.StatusCode, Word(error), wait, null);
                    _metrics.Retry(s_watch, error.StatusCode);
                    break;
                }
                catch (RpcException error)
                {
                    throw StreamFailure(s_watch, error, Math.Max(failures, 1), cancellationToken);
                }

                failures = 0;
                request.AfterCursor = current.Cursor;
                request.FromNow = false;
                yield return Map.From(current);
            }

            await Task.Delay(wait, _options.TimeProvider, cancellationToken);
        }
    }
}
