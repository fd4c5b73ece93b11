using Npgsql;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Storage;

/// <summary>Which database failures pass, and what a caller is told about them. A failure PostgreSQL reported for a
/// statement aborted its transaction, so nothing of the call was applied; a lost connection leaves the outcome of a
/// write unknown until the caller retries it with the same request id and the ledger replays or applies it.</summary>
internal static class StoreFailures
{
    private const string Retry = " Retry with the same request_id.";

    /// <summary>The refusal a transient store failure is answered with (UNAVAILABLE), a value the database cannot hold
    /// (INVALID_ARGUMENT), or null for anything else.</summary>
    public static LedgerException? Translate(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case PostgresException postgres when Known(postgres.SqlState) is { } known:
                    return new LedgerException(Reason.StoreUnavailable, known + Retry);
                // Class 22, data exception: a value the request carried that the database cannot hold (a date or number
                // out of its range, text it cannot encode). The request checks catch these first; this is the backstop,
                // and the statement's failure aborted its transaction, so nothing was applied.
                case PostgresException postgres when postgres.SqlState.StartsWith("22", StringComparison.Ordinal):
                    return new LedgerException(Reason.InvalidArgument,
                        $"A value of the request is outside what the ledger can store ({postgres.MessageText}); nothing was applied.");
                case PostgresException:
                    return null;
                case NpgsqlException { InnerException: TimeoutException } when e.Message.Contains("pool", StringComparison.OrdinalIgnoreCase):
                    return new LedgerException(Reason.Overloaded, "Every connection to the ledger's database is in use; nothing was applied." + Retry);
                // Any other failure Npgsql reports that PostgreSQL did not (a refused or broken connection, a read that timed
                // out, no suitable host of several while a standby is promoted): the connection, not the request, failed.
                case NpgsqlException and not PostgresException:
                    return new LedgerException(Reason.StoreUnavailable,
                        "The ledger's database could not be reached; a write's outcome is not known until it is retried." + Retry);
            }
        }

        return null;
    }

    private static string? Known(string sqlState) => sqlState switch
    {
        PostgresErrorCodes.LockNotAvailable => "A row this call needs was locked by another session for longer than the lock timeout; nothing was applied.",
        PostgresErrorCodes.QueryCanceled => "The database stopped a statement that ran past its timeout; nothing was applied.",
        PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected =>
            "The call raced another transaction on the same rows; nothing was applied.",
        // idle_in_transaction_session_timeout, which Npgsql names no constant for.
        "25P03" => "The database ended a transaction left idle; nothing was applied.",
        // A read-only server: a standby reached during a failover, or a primary being demoted or promoted.
        PostgresErrorCodes.ReadOnlySqlTransaction => "The database refused writes for now (a failover is under way); nothing was applied.",
        PostgresErrorCodes.TooManyConnections => "The database refused another connection; nothing was applied.",
        PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow =>
            "The database is restarting; a write's outcome is not known until it is retried.",
        _ when sqlState.StartsWith("08", StringComparison.Ordinal) =>
            "The connection to the database broke; a write's outcome is not known until it is retried.",
        _ => null,
    };
}
