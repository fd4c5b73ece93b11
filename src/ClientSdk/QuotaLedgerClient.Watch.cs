using System.Diagnostics;
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
        // One span for the watch, a client span for each stream it opens (as for a unary call and its attempts).
        var time = _options.TimeProvider;
        var started = time.GetTimestamp();
        using var span = StartSpan(s_watch, ActivityKind.Internal, requestId: null);
        // Failures in a row without an event in between, and since when: progress starts the allowance
        // (Watch:ReconnectFor) again, so a watch that is served runs for as long as the caller reads, through any
        // number of server restarts and outages shorter than the allowance.
        var failures = 0;
        long? failingSince = null;
        for (var stream = 1; ; stream++)
        {
            var wait = TimeSpan.Zero;
            using (var streamSpan = StartSpan(s_watch, ActivityKind.Client, requestId: null, stream, span))
            {
                using var call = _ledger.Watch(request, cancellationToken: cancellationToken);
                while (true)
                {
                    V1.WatchEvent current;
                    try
                    {
                        if (request.FromNow)
                        {
                            // The server names the place "now" put the watch at: a reconnect resumes from it, so nothing
                            // that commits between the first call and a reconnect is missed.
                            var headers = await call.ResponseHeadersAsync;
                            if (headers.GetValue(StartCursorHeader) is { Length: > 0 } start)
                            {
                                request.AfterCursor = start;
                                request.FromNow = false;
                            }
                        }

                        if (!await call.ResponseStream.MoveNext(cancellationToken))
                        {
                            // The server ends a watch only with an error; an end without one is a broken stream too.
                            throw new RpcException(new Status(StatusCode.Unavailable, "The watch ended without a status."));
                        }

                        current = call.ResponseStream.Current;
                    }
                    catch (Exception error) when (cancellationToken.IsCancellationRequested && error is RpcException or OperationCanceledException)
                    {
                        End(streamSpan, StatusCode.Cancelled, "");
                        Finish(span, s_watch, Outcomes.Canceled, StatusCode.Cancelled, "", stream, time.GetElapsedTime(started));
                        throw new OperationCanceledException($"{s_watch.FullName} was canceled.", error, cancellationToken);
                    }
                    catch (RpcException error) when (BrokenStream(error) && WithinAllowance(ref failingSince, time))
                    {
                        End(streamSpan, error.StatusCode, Word(error));
                        wait = WatchBackoff(++failures);
                        ClientLog.Retrying(_logger, s_watch.FullName, stream, error.StatusCode, Word(error), wait, null);
                        _metrics.Retry(s_watch, error.StatusCode);
                        break;
                    }
                    catch (RpcException error)
                    {
                        End(streamSpan, error.StatusCode, Word(error));
                        Finish(span, s_watch, IsRefusal(error.StatusCode) ? Outcomes.Refused : Outcomes.Unavailable, error.StatusCode, Word(error), stream,
                            time.GetElapsedTime(started));
                        throw StreamFailure(s_watch, error, stream, cancellationToken);
                    }

                    (failures, failingSince) = (0, null);
                    request.AfterCursor = current.Cursor;
                    request.FromNow = false;
                    yield return Map.From(current);
                }
            }

            try
            {
                await Task.Delay(wait, time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                Finish(span, s_watch, Outcomes.Canceled, StatusCode.Cancelled, "", stream, time.GetElapsedTime(started));
                throw;
            }
        }
    }

    /// <summary>Whether a watch's stream broke (the server restarting or killed, a connection lost or never made, the
    /// database failing over) rather than being refused: UNAVAILABLE, or a status the transport made up from a
    /// connection's failure (an HTTP/2 reset or an I/O error under CANCELLED, INTERNAL or UNKNOWN).</summary>
    private static bool BrokenStream(RpcException error) => error.StatusCode == StatusCode.Unavailable
        || (error.StatusCode is StatusCode.Cancelled or StatusCode.Internal or StatusCode.Unknown && error.Status.DebugException is IOException or HttpRequestException);

    /// <summary>Whether a watch failing since <paramref name="failingSince"/> (now, at its first failure) is still within
    /// <see cref="QuotaLedgerWatchOptions.ReconnectFor"/>.</summary>
    private bool WithinAllowance(ref long? failingSince, TimeProvider time)
    {
        failingSince ??= time.GetTimestamp();
        return time.GetElapsedTime(failingSince.Value) < _options.Watch.ReconnectFor;
    }

    /// <summary>Exponential backoff with full jitter, on the watch's own settings.</summary>
    private TimeSpan WatchBackoff(int failures)
    {
        var ceiling = Math.Min(_options.Watch.MaxBackoff.TotalMilliseconds, _options.Watch.InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(failures, 30) - 1));
        return TimeSpan.FromMilliseconds(ceiling * System.Security.Cryptography.RandomNumberGenerator.GetInt32(1_000, 10_001) / 10_000d);
    }
}
