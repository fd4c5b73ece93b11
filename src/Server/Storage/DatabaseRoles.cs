using Npgsql;

namespace QuotaLedger.Server.Storage;

/// <summary>Least privilege in the database. The owner role runs the migrations and owns every table (it alone could
/// disable or drop the journal's triggers); the serving role, which the server connects as, may read every table,
/// insert rows, and update only the columns that move. It owns nothing, so it can neither alter a table nor disable a
/// trigger, and it has no UPDATE, DELETE or TRUNCATE on any append-only table.</summary>
public static class DatabaseRoles
{
    /// <summary>What the serving role may change, table by table: INSERT, and UPDATE of the listed columns only. Every
    /// table of the schema is here (a test checks it); a table with no columns listed is append-only.</summary>
    public static readonly IReadOnlyDictionary<string, string[]> Writable = new Dictionary<string, string[]>
    {
        // Append-only: the journal, and every history.
        ["journal_entries"] = [],
        ["postings"] = [],
        ["deductions"] = [],
        ["unit_reviews"] = [],
        ["standing_changes"] = [],
        ["related_parties"] = [],
        ["opc_residents"] = [],
        ["opc_operator_confirmations"] = [],
        ["redemption_batches"] = [],
        ["redemption_evidence"] = [],
        ["claw_backs"] = [],
        ["checkpoints"] = [],
        ["period_closings"] = [],
        ["alerts"] = [],
        // Rows that are created and then only locked: UPDATE of one column is what SELECT ... FOR UPDATE needs, and the
        // table's append-only trigger refuses any real update.
        ["unit_years"] = ["year"],
        // The figures that move.
        ["accounts"] = ["balance_fen"],
        ["contracts"] = ["granted_fen", "invoiced_fen"],
        ["grants"] = ["state", "returned_fen", "clawed_back_fen", "statement_ref"],
        ["providers"] = ["standing"],
        ["units"] = ["standing"],
        ["idempotency_records"] = ["outcome", "message", "response"],
        ["redemptions"] =
        [
            "state", "approved_fen", "outstanding_fen", "disbursed_fen", "clawed_back_fen", "reviewer", "review_reason", "payment_ref",
            "reviewed_at", "disbursed_at", "submitted_entry_id", "reviewed_entry_id", "disbursement_entry_id",
        ],
        // A threshold disarmed when it fires and armed again when its figure goes back (ON CONFLICT DO UPDATE needs it).
        ["alert_arming"] = ["armed", "changed_at"],
        ["alert_rules"] = ["unit_year_cap_bp", "pool_low_bp", "grant_expiry_days", "grant_unused_fen", "redemption_pending_days", "updated_at"],
        ["year_policies"] =
        [
            "self_controllable_ratio_bp", "other_ratio_bp", "sme_bonus_bp", "unit_year_cap_fen", "unit_year_floor_fen", "year_total_fen",
            "validity_months", "effective_from", "updated_at",
        ],
    };

    /// <summary>Tables the serving role reads and never writes.</summary>
    public static readonly string[] ReadOnly = ["__EFMigrationsHistory"];

    /// <summary>Gives <paramref name="servingRole"/> exactly the privileges above on the schema, taking away any other it
    /// had. Run by the owner after every migration. Serialised by an advisory lock, since PostgreSQL refuses concurrent
    /// GRANTs on one table.</summary>
    public static async Task GrantServingAsync(NpgsqlConnection owner, string servingRole, CancellationToken ct)
    {
        await using var transaction = await owner.BeginTransactionAsync(ct);
        await using var batch = new NpgsqlBatch(owner, transaction);
        batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT pg_advisory_xact_lock(7170001)"));
        batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT set_config('quotaledger.serving_role', $1, true)")
        {
            Parameters = { new() { Value = servingRole } },
        });
        batch.BatchCommands.Add(new NpgsqlBatchCommand(
            """
            DO $$
            DECLARE
              role text := current_setting('quotaledger.serving_role');
            BEGIN
              EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', role);
              EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM %I', role);
              EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', role);
              EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', role);
              EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I', role);
              -- The one function that runs as the owner: a month's close holding journal inserts off (migration PeriodClose).
              EXECUTE format('GRANT EXECUTE ON FUNCTION lock_journal_for_closing() TO %I', role);
            END $$
            """));
        foreach (var (table, columns) in Writable)
        {
            // Identifiers cannot be parameters: the table and column names (this class's constants) and the role travel
            // as settings of the transaction and are quoted by format().
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT set_config('quotaledger.table', $1, true), set_config('quotaledger.columns', $2, true)")
            {
                Parameters = { new() { Value = table }, new() { Value = string.Join(',', columns) } },
            });
            batch.BatchCommands.Add(new NpgsqlBatchCommand(
                """
                DO $$
                DECLARE
                  role text := current_setting('quotaledger.serving_role');
                  tab text := current_setting('quotaledger.table');
                  cols text := current_setting('quotaledger.columns');
                BEGIN
                  EXECUTE format('GRANT INSERT ON %I TO %I', tab, role);
                  IF cols <> '' THEN
                    EXECUTE format('GRANT UPDATE (%s) ON %I TO %I',
                      (SELECT string_agg(quote_ident(c), ', ') FROM unnest(string_to_array(cols, ',')) c), tab, role);
                  END IF;
                END $$
                """));
        }

        await batch.ExecuteNonQueryAsync(ct);
        await transaction.CommitAsync(ct);
    }

    /// <summary>Creates a login role with no rights of its own (no superuser, no database or role creation), or sets
    /// the password of the existing one. For the embedded development cluster and the test fixture.</summary>
    public static async Task EnsureLoginRoleAsync(NpgsqlConnection superuser, string role, string password, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(superuser);
        batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT set_config('quotaledger.login_role', $1, false), set_config('quotaledger.login_password', $2, false)")
        {
            Parameters = { new() { Value = role }, new() { Value = password } },
        });
        batch.BatchCommands.Add(new NpgsqlBatchCommand(
            """
            DO $$
            DECLARE
              role text := current_setting('quotaledger.login_role');
            BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role) THEN
                EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT', role);
              END IF;
              EXECUTE format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L', role, current_setting('quotaledger.login_password'));
            END $$
            """));
        batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT set_config('quotaledger.login_password', '', false)"));
        await batch.ExecuteNonQueryAsync(ct);
    }

    /// <summary>Whether the connection's role may run the migrations: a superuser, the owner of the ledger's tables, or,
    /// before there are any, a role that may create them (whoever creates them owns them).</summary>
    public static async Task<bool> OwnsSchemaAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                OR coalesce((SELECT pg_get_userbyid(c.relowner) = current_user FROM pg_class c
                             WHERE c.relname = '__EFMigrationsHistory' AND c.relnamespace = 'public'::regnamespace),
                            has_schema_privilege('public', 'CREATE'))
            """,
            connection);
        return (bool)(await command.ExecuteScalarAsync(ct))!;
    }
}
