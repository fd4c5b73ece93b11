using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <summary>The journal's commit order, for the change feed (LedgerService.Watch) and for ListEntries resuming by cursor.
    /// Every entry records the transaction that wrote it (<c>tx_id</c>, filled by its default, never by the code); a
    /// reader sends only entries whose transaction is below its snapshot's xmin, in (tx_id, id) order, so an entry that
    /// commits late with a smaller id is never skipped. Existing entries get this migration's transaction id, so they keep
    /// their id order, before every later entry. The column is read with SQL only and is not in the EF model. No
    /// trigger NOTIFYs the feeds: PostgreSQL serializes the commits of notifying transactions, so the feeds poll.</summary>
    public partial class JournalCommitOrder : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(
                """
                ALTER TABLE journal_entries ADD COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id();
                CREATE INDEX ix_journal_entries_tx_id_id ON journal_entries (tx_id, id);
                CREATE INDEX ix_alerts_tx_id_id ON alerts (tx_id, id);
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(
                """
                DROP INDEX ix_alerts_tx_id_id;
                DROP INDEX ix_journal_entries_tx_id_id;
                ALTER TABLE journal_entries DROP COLUMN tx_id;
                """);
        }
    }
}
