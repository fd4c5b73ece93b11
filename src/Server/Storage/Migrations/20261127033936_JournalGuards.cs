using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <summary>What the database itself guarantees of the journal: entries balance, and history is never rewritten.</summary>
    public partial class JournalGuards : Migration
    {
        private static readonly string[] s_appendOnlyTables = ["journal_entries", "postings", "deductions", "unit_reviews"];

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // Checked at commit, when all of an entry's postings are written.
            migrationBuilder.Sql(
                """
                CREATE FUNCTION journal_entry_must_balance() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE
                  total bigint;
                  legs int;
                BEGIN
                  SELECT coalesce(sum(amount_fen), 0), count(*) INTO total, legs FROM postings WHERE entry_id = NEW.id;
                  IF legs < 2 OR total <> 0 THEN
                    RAISE EXCEPTION 'journal entry % does not balance: % postings summing to % fen', NEW.id, legs, total
                      USING ERRCODE = 'check_violation';
                  END IF;
                  RETURN NULL;
                END $$;

                CREATE CONSTRAINT TRIGGER journal_entries_balance
                  AFTER INSERT ON journal_entries DEFERRABLE INITIALLY DEFERRED
                  FOR EACH ROW EXECUTE FUNCTION journal_entry_must_balance();

                CREATE FUNCTION refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  RAISE EXCEPTION '% is append-only: % refused; corrections are new entries', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
                END $$;
                """);

            foreach (var table in s_appendOnlyTables)
            {
                migrationBuilder.Sql(
                    $"""
                    CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                      FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
                    CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                      FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
                    """);
            }
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            foreach (var table in s_appendOnlyTables)
            {
                migrationBuilder.Sql($"DROP TRIGGER {table}_append_only ON {table}; DROP TRIGGER {table}_no_truncate ON {table};");
            }

            migrationBuilder.Sql(
                """
                DROP TRIGGER journal_entries_balance ON journal_entries;
                DROP FUNCTION journal_entry_must_balance();
                DROP FUNCTION refuse_history_change();
                """);
        }
    }
}
