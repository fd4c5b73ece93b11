using Npgsql;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Storage;

/// <summary>Which database failures pass, and what a caller is told about them. A failure PostgreSQL reported for a
/// statement rolled its transaction back (the messages say that, not "nothing was applied": a call of several
/// transactions, such as an expiry pass, may have committed earlier ones); a lost connection leaves the outcome of a
/// write unknown. Either way the caller retries with the same request id and the ledger replays or applies it.</summary>
internal static class StoreFailures
{
    private const string Retry = " Retry with the same request_id.";

    /// <summary>SQLSTATEs the journal's period guard raises: an entry dated inside a closed month, and an entry that would
    /// fund, grant, deduct or return quota in a closed year.</summary>
    public const string PeriodClosedState = "QLPC1";
    public const string ClosedYearState = "QLPC2";

    /// <summary>The refusal a transient store failure is answered with (UNAVAILABLE), a value the database cannot hold
    /// (INVALID_ARGUMENT), or null for anything else.</summary>
    public static LedgerException? Translate(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                // The journal's own guard (migration PeriodClose): an entry dated inside a closed period, or one that
                // would move a closed year's quota. Its statement failed, so its transaction was rolled back.
                case PostgresException { SqlState: PeriodClosedState or ClosedYearState } closed:
                    return new LedgerException(Reason.PeriodClosed,
                        $"{closed.MessageText}. A closed period accepts no entry dated inside it; a correction is an entry of the open period. Nothing was applied.");
                case PostgresException postgres when Known(postgres.SqlState) is { } known:
                    return new LedgerException(Reason.StoreUnavailable, known + Retry);
                // Class 22, data exception: a value the request carried that the database cannot hold (a date or number
                // out of its range, text it cannot encode). The request checks catch these first; this is the backstop,
                // and the statement's failure aborted its transaction, so nothing was applied.
                case PostgresException postgres when postgres.SqlState.StartsWith("22", StringComparison.Ordinal):
                    return new LedgerException(Reason.InvalidArgument,
                        $"A value of the request is outside what the ledger can store ({postgres.MessageText}); its transaction was rolled back.");
                case PostgresException:
                    return null;
                case NpgsqlException { InnerException: TimeoutException } when e.Message.Contains("pool", StringComparison.OrdinalIgnoreCase):
                    return new LedgerException(Reason.Overloaded, "Every connection to the ledger's database is in use." + Retry);
                // Any other failure Npgsql reports that PostgreSQL did not (a refused or broken connection, a read that timed
                // out, no suitable host of several while a standby is promoted): the connection, not the request, failed.
                case NpgsqlException npgsql and not PostgresException when ConnectionFailed(npgsql):
                    return new LedgerException(Reason.StoreUnavailable,
                        "The ledger's database could not be reached; a write's outcome is not known until it is retried." + Retry);
            }
        }

        return null;
    }

    /// <summary>A failure of the connection, not of the request: transient by Npgsql's own account, an I/O or socket
    /// failure or timeout beneath it, or no usable host among several (every one recently seen down or read-only, which
    /// Npgsql reports with no inner exception). Anything else Npgsql raises (a statement it cannot send, a setting it
    /// refuses) is a fault of the server or its configuration and stays INTERNAL, logged.</summary>
    private static bool ConnectionFailed(NpgsqlException e) =>
        e.IsTransient
        || e.InnerException is IOException or System.Net.Sockets.SocketException or TimeoutException
        || e.Message.Contains("suitable host", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether a failure says the host itself is gone or no longer takes writes (a connection refused or broken,
    /// no suitable host among several, a server shutting down, a read-only server): what a failover looks like, after
    /// which the pool's connections and host states are stale (<see cref="LedgerDatabase.ForgetHosts"/>). A lock or
    /// statement timeout, a deadlock or an exhausted pool is not.</summary>
    public static bool HostFailed(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case PostgresException postgres:
                    return postgres.SqlState is PostgresErrorCodes.ReadOnlySqlTransaction or PostgresErrorCodes.AdminShutdown
                        or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow
                        || postgres.SqlState.StartsWith("08", StringComparison.Ordinal);
                case NpgsqlException { InnerException: TimeoutException } when e.Message.Contains("pool", StringComparison.OrdinalIgnoreCase):
                    return false;
                case NpgsqlException npgsql when ConnectionFailed(npgsql):
                    return true;
            }
        }

        return false;
    }

    private static string? Known(string sqlState) => sqlState switch
    {
        PostgresErrorCodes.LockNotAvailable => "A row this call needs was locked by another session for longer than the lock timeout; its transaction was rolled back.",
        PostgresErrorCodes.QueryCanceled => "The database stopped a statement that ran past its timeout; its transaction was rolled back.",
        PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected =>
            "The call raced another transaction on the same rows; its transaction was rolled back.",
        // idle_in_transaction_session_timeout, which Npgsql names no constant for.
        "25P03" => "The database ended a transaction left idle and rolled it back.",
        // A read-only server: a standby reached during a failover, or a primary being demoted or promoted.
        PostgresErrorCodes.ReadOnlySqlTransaction => "The database refused writes for now (a failover is under way); the transaction was rolled back.",
        PostgresErrorCodes.TooManyConnections => "The database refused another connection.",
        PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow =>
            "The database is restarting; a write's outcome is not known until it is retried.",
        _ when sqlState.StartsWith("08", StringComparison.Ordinal) =>
            "The connection to the database broke; a write's outcome is not known until it is retried.",
        _ => null,
    };
}
