using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Posting;

/// <summary>Makes a signed checkpoint every <c>Checkpoints:Interval</c> (default 15 minutes) on the server's clock;
/// <c>Checkpoints:Enabled=false</c> leaves it to <c>AdminService.MakeCheckpoint</c>. Loads the signing key before the
/// server listens, so a missing or unreadable key stops the start.</summary>
internal sealed partial class CheckpointService(
    IServiceProvider services,
    LedgerDatabase database,
    TimeProvider time,
    CheckpointOptions options,
    ILogger<CheckpointService> logger) : BackgroundService
{
    public override Task StartAsync(CancellationToken cancellationToken)
    {
        _ = services.GetRequiredService<CheckpointSigner>();
        return base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Enabled)
        {
            return;
        }

        var signer = services.GetRequiredService<CheckpointSigner>();
        using var timer = new PeriodicTimer(options.Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                var checkpoint = await Checkpoints.MakeAsync(database, signer, time.GetUtcNow(), stoppingToken);
                LogMade(logger, checkpoint.Id);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogFailed(logger, e);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Checkpoint {CheckpointId} signs the journal")]
    private static partial void LogMade(ILogger logger, long checkpointId);

    [LoggerMessage(Level = LogLevel.Error, Message = "No checkpoint could be made; the next tick tries again")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
