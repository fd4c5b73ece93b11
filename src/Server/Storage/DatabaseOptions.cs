using Npgsql;

namespace QuotaLedger.Server.Storage;

/// <summary>Limits on the serving role's sessions (configuration section <c>Database</c>), so that no lock, statement,
/// forgotten transaction or dead peer can hold the ledger up for long. Applied to every connection the server opens
/// to serve calls; migrations, which run as the schema owner, are not limited.</summary>
public sealed class DatabaseOptions : ICheckedSettings
{
    /// <summary>How long a statement waits for a row lock before it fails (<c>lock_timeout</c>). The deduction engine
    /// never waits on a unit-year another session holds while other unit-years wait behind it; a transaction that
    /// waits on its own gives up after this long, and its caller is answered UNAVAILABLE (STORE_UNAVAILABLE).</summary>
    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How long one statement may run (<c>statement_timeout</c>).</summary>
    public TimeSpan StatementTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long the journal's audits (VerifyJournal, checkpoints) may run one statement: they read the whole journal.</summary>
    public TimeSpan AuditStatementTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How long a session may sit idle inside a transaction before PostgreSQL ends it (<c>idle_in_transaction_session_timeout</c>).</summary>
    public TimeSpan IdleInTransactionTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Idle time after which TCP keepalives probe the database's end of a connection, so a peer that vanished
    /// is noticed in seconds instead of at the operating system's default of two hours.</summary>
    public TimeSpan KeepAlive { get; set; } = TimeSpan.FromSeconds(15);

    public IEnumerable<string> Problems() =>
        Settings.Range(nameof(LockTimeout), LockTimeout, TimeSpan.FromMilliseconds(1), TimeSpan.FromMinutes(10))
            .Concat(Settings.Range(nameof(StatementTimeout), StatementTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1)))
            .Concat(Settings.Range(nameof(AuditStatementTimeout), AuditStatementTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromDays(1)))
            .Concat(Settings.Range(nameof(IdleInTransactionTimeout), IdleInTransactionTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromHours(1)))
            .Concat(Settings.Range(nameof(KeepAlive), KeepAlive, TimeSpan.FromSeconds(1), TimeSpan.FromHours(2)));

    /// <summary>The serving connection string with these limits in it.</summary>
    internal NpgsqlConnectionStringBuilder Apply(NpgsqlConnectionStringBuilder builder)
    {
        var limits = $"-c lock_timeout={Milliseconds(LockTimeout)} -c statement_timeout={Milliseconds(StatementTimeout)} " +
            $"-c idle_in_transaction_session_timeout={Milliseconds(IdleInTransactionTimeout)}";
        builder.Options = string.IsNullOrWhiteSpace(builder.Options) ? limits : $"{builder.Options} {limits}";
        // The database ends a statement that runs too long; the client waits a little longer than the longest it
        // allows, so the server's timeout, which leaves the connection usable, is the one that fires.
        builder.CommandTimeout = (int)Math.Ceiling(Max(StatementTimeout, AuditStatementTimeout).TotalSeconds) + 10;
        builder.TcpKeepAlive = true;
        builder.TcpKeepAliveTime = (int)Math.Ceiling(KeepAlive.TotalSeconds);
        builder.TcpKeepAliveInterval = Math.Max(1, builder.TcpKeepAliveTime / 3);
        return builder;
    }

    /// <summary>Lets the statements of the current transaction run for <see cref="AuditStatementTimeout"/>.</summary>
    internal async Task AllowAuditAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT set_config('statement_timeout', $1, true)", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = Milliseconds(AuditStatementTimeout).ToString(System.Globalization.CultureInfo.InvariantCulture) });
        await command.ExecuteNonQueryAsync(ct);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private static long Milliseconds(TimeSpan span) => (long)Math.Ceiling(span.TotalMilliseconds);
}
