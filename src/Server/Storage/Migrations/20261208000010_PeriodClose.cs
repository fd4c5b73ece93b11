using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <summary>Closing a month or a year. A closing is append-only. Every journal insert, whatever path writes it, is
    /// checked against the closings: an entry dated before the end of the last closed month is refused (SQLSTATE
    /// QLPC1, PERIOD_CLOSED), and so is an entry of a closed year that would fund, grant, deduct or return quota in it
    /// (QLPC2), and so is a closed year's settled pool growing again (QLPC2). A close takes <c>lock_journal_for_closing()</c>, which holds off journal inserts until the close
    /// commits: the serving role may insert into the journal but not lock it, so the function runs as the owner.</summary>
    public partial class PeriodClose : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "period_closings",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    year = table.Column<int>(type: "integer", nullable: false),
                    month = table.Column<short>(type: "smallint", nullable: false),
                    starts_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    ends_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    closed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    closed_by = table.Column<string>(type: "text", nullable: false),
                    request_id = table.Column<string>(type: "text", nullable: false),
                    checkpoint_id = table.Column<long>(type: "bigint", nullable: false),
                    body = table.Column<byte[]>(type: "bytea", nullable: false),
                    digest = table.Column<byte[]>(type: "bytea", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_period_closings", x => x.id);
                    table.CheckConstraint("ck_period_closings_month", "month BETWEEN 0 AND 12");
                    table.ForeignKey(
                        name: "fk_period_closings_checkpoints_checkpoint_id",
                        column: x => x.checkpoint_id,
                        principalTable: "checkpoints",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateIndex(
                name: "ix_period_closings_checkpoint_id",
                table: "period_closings",
                column: "checkpoint_id");

            migrationBuilder.CreateIndex(
                name: "ix_period_closings_year_month",
                table: "period_closings",
                columns: new[] { "year", "month" },
                unique: true);

            migrationBuilder.Sql(
                $"""
                CREATE TRIGGER period_closings_append_only BEFORE UPDATE OR DELETE ON period_closings
                  FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
                CREATE TRIGGER period_closings_no_truncate BEFORE TRUNCATE ON period_closings
                  FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();

                CREATE INDEX ix_period_closings_months_ends_at ON period_closings (ends_at) WHERE month > 0;

                -- One check per statement (the engine writes a batch's entries in one), over the rows it inserted; each
                -- read of period_closings is an index probe: the engine's transactions turn sequential scans off, and a
                -- scan priced as disabled would be JIT-compiled every time.
                CREATE FUNCTION journal_entries_period_open() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE
                  closed_through timestamptz;
                  inside timestamptz;
                  closed_year int;
                BEGIN
                  SELECT c.ends_at INTO closed_through FROM period_closings c WHERE c.month > 0 ORDER BY c.ends_at DESC LIMIT 1;
                  IF closed_through IS NOT NULL THEN
                    SELECT min(i.created_at) INTO inside FROM inserted i WHERE i.created_at < closed_through;
                    IF inside IS NOT NULL THEN
                      RAISE EXCEPTION 'journal entry dated % is inside a closed period (the books are closed through %)', inside, closed_through
                        USING ERRCODE = 'QLPC1';
                    END IF;
                  END IF;
                  SELECT i.year INTO closed_year FROM inserted i
                  WHERE i.kind IN ({ClosedYearKinds}) AND EXISTS (SELECT 1 FROM period_closings c WHERE c.year = i.year AND c.month = 0)
                  LIMIT 1;
                  IF closed_year IS NOT NULL THEN
                    RAISE EXCEPTION 'year % is closed: an entry would fund, grant, deduct or return its quota', closed_year
                      USING ERRCODE = 'QLPC2';
                  END IF;
                  RETURN NULL;
                END $$;
                CREATE TRIGGER journal_entries_period_open AFTER INSERT ON journal_entries
                  REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION journal_entries_period_open();

                CREATE FUNCTION accounts_closed_year_pool() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF EXISTS (SELECT 1 FROM period_closings c WHERE c.year = NEW.year AND c.month = 0) THEN
                    RAISE EXCEPTION 'year % is closed: its pool, settled, takes nothing back', NEW.year USING ERRCODE = 'QLPC2';
                  END IF;
                  RETURN NEW;
                END $$;
                CREATE TRIGGER accounts_closed_year_pool BEFORE UPDATE OF balance_fen ON accounts
                  FOR EACH ROW WHEN (NEW.kind = {(short)AccountKind.Pool} AND NEW.balance_fen > OLD.balance_fen)
                  EXECUTE FUNCTION accounts_closed_year_pool();

                CREATE INDEX ix_journal_entries_reverses_entry_id ON journal_entries (reverses_entry_id)
                  WHERE reverses_entry_id IS NOT NULL;

                CREATE FUNCTION lock_journal_for_closing() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
                  SET search_path = pg_catalog, public AS $$
                BEGIN
                  LOCK TABLE public.journal_entries IN SHARE MODE;
                END $$;
                REVOKE EXECUTE ON FUNCTION lock_journal_for_closing() FROM PUBLIC;
                """);
        }

        /// <summary>The entry kinds a closed year refuses: funding, grant, deduction, expiry, release, gift.</summary>
        private const string ClosedYearKinds = "1, 2, 3, 4, 5, 6";

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(
                """
                DROP FUNCTION lock_journal_for_closing();
                DROP INDEX ix_journal_entries_reverses_entry_id;
                DROP TRIGGER accounts_closed_year_pool ON accounts;
                DROP FUNCTION accounts_closed_year_pool();
                DROP TRIGGER journal_entries_period_open ON journal_entries;
                DROP FUNCTION journal_entries_period_open();
                DROP INDEX ix_period_closings_months_ends_at;
                """);
            migrationBuilder.DropTable(
                name: "period_closings");
        }
    }
}
