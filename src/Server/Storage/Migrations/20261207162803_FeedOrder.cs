using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <summary>The change feed's order keeps every hash chain in order. Until now an entry's place was the id of the
    /// transaction that wrote it, which PostgreSQL assigns at the transaction's first write or row lock: a transaction
    /// that wrote (its request-id claim) or locked one unit-year before it waited for another could take a chain's lock
    /// after a later transaction and so append to the chain after an entry with a larger id. Now each entry's place,
    /// <c>feed_order</c>, is its transaction id raised to its chain predecessor's place, set by a trigger on every
    /// insert, whatever path writes it: along a chain the places never go down, and entries of equal place keep their
    /// id order, which is the chain's order under its lock. A place is at least the writer's transaction id and at most
    /// the largest transaction id assigned so far, so a reader that sends only places below its snapshot's xmin still
    /// never skips or repeats a row, and nothing waits for a transaction not yet begun. An alert's place is its raising
    /// entry's (or its own transaction's, for a time-based alert), so it comes right after that entry. Existing rows
    /// keep their transaction id as their place: cursors already handed out stay valid. The columns are renamed, not
    /// rewritten; the journal stays append-only.</summary>
    public partial class FeedOrder : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(
                """
                ALTER TABLE journal_entries RENAME COLUMN tx_id TO feed_order;
                ALTER INDEX ix_journal_entries_tx_id_id RENAME TO ix_journal_entries_feed_order_id;
                ALTER TABLE alerts RENAME COLUMN tx_id TO feed_order;
                ALTER INDEX ix_alerts_tx_id_id RENAME TO ix_alerts_feed_order_id;

                CREATE FUNCTION journal_entries_feed_order() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  NEW.feed_order := greatest(pg_current_xact_id(),
                    (SELECT e.feed_order FROM journal_entries e WHERE e.chain_key = NEW.chain_key ORDER BY e.id DESC LIMIT 1));
                  RETURN NEW;
                END $$;
                CREATE TRIGGER journal_entries_feed_order BEFORE INSERT ON journal_entries
                  FOR EACH ROW EXECUTE FUNCTION journal_entries_feed_order();

                CREATE FUNCTION alerts_feed_order() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  NEW.feed_order := greatest(pg_current_xact_id(), (SELECT e.feed_order FROM journal_entries e WHERE e.id = NEW.entry_id));
                  RETURN NEW;
                END $$;
                CREATE TRIGGER alerts_feed_order BEFORE INSERT ON alerts
                  FOR EACH ROW EXECUTE FUNCTION alerts_feed_order();
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(
                """
                DROP TRIGGER alerts_feed_order ON alerts;
                DROP FUNCTION alerts_feed_order();
                DROP TRIGGER journal_entries_feed_order ON journal_entries;
                DROP FUNCTION journal_entries_feed_order();
                ALTER INDEX ix_alerts_feed_order_id RENAME TO ix_alerts_tx_id_id;
                ALTER TABLE alerts RENAME COLUMN feed_order TO tx_id;
                ALTER INDEX ix_journal_entries_feed_order_id RENAME TO ix_journal_entries_tx_id_id;
                ALTER TABLE journal_entries RENAME COLUMN feed_order TO tx_id;
                """);
        }
    }
}
