using Grpc.Core;

namespace QuotaLedger.Client;

public sealed partial class QuotaLedgerClient
{
    // Closing months and years.

    /// <inheritdoc />
    public async Task<ClosingInfo> ClosePeriodAsync(int year, int month, string? requestId = null, CancellationToken cancellationToken = default)
    {
        var request = new V1.ClosePeriodRequest { RequestId = requestId ?? NewRequestId(), Year = year, Month = month };
        return Map.From(await CallAsync(s_closePeriod, request.RequestId, o => _admin.ClosePeriodAsync(request, o), cancellationToken));
    }

    /// <inheritdoc />
    public async Task<ClosingInfo> GetClosingAsync(int year, int month, CancellationToken cancellationToken = default) =>
        Map.From(await CallAsync(s_getClosing, null, o => _admin.GetClosingAsync(new V1.GetClosingRequest { Year = year, Month = month }, o), cancellationToken));

    /// <inheritdoc />
    public async Task<IReadOnlyList<ClosingInfo>> ListClosingsAsync(int year = 0, CancellationToken cancellationToken = default) =>
        [.. (await CallAsync(s_listClosings, null, o => _admin.ListClosingsAsync(new V1.ListClosingsRequest { Year = year }, o), cancellationToken)).Closings.Select(Map.From)];

    /// <inheritdoc />
    public async Task<long> ExportPeriodAsync(int year, int month, TextWriter destination, CancellationToken cancellationToken = default)
    {
        var written = 0L;
        try
        {
            using var call = _admin.ExportPeriod(new V1.ExportPeriodRequest { Year = year, Month = month }, cancellationToken: cancellationToken);
            await foreach (var line in call.ResponseStream.ReadAllAsync(cancellationToken))
            {
                // Each line's hash chains to the one before: written as sent, each ended by '\n' whatever the platform's newline.
                await destination.WriteAsync((line.Line + "\n").AsMemory(), cancellationToken);
                written++;
            }
        }
        catch (RpcException error)
        {
            throw StreamFailure(s_exportPeriod, error, attempts: 1, cancellationToken);
        }

        return written;
    }
}
