using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <summary>Every journal entry is chained: its chain key, its predecessor's hash and its own hash are required.</summary>
    public partial class ChainEveryEntry : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // Every entry has been chained by the step that runs before this migration (LegacyChains): a null left here
            // is a bug, and the statement fails rather than filling in an empty hash.
            migrationBuilder.Sql(
                """
                ALTER TABLE journal_entries
                  ALTER COLUMN chain_key SET NOT NULL,
                  ALTER COLUMN prev_hash SET NOT NULL,
                  ALTER COLUMN hash SET NOT NULL,
                  ADD CONSTRAINT ck_journal_entries_hashes CHECK (length(hash) = 32 AND length(prev_hash) IN (0, 32));
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(
                """
                ALTER TABLE journal_entries
                  DROP CONSTRAINT ck_journal_entries_hashes,
                  ALTER COLUMN chain_key DROP NOT NULL,
                  ALTER COLUMN prev_hash DROP NOT NULL,
                  ALTER COLUMN hash DROP NOT NULL;
                """);
        }
    }
}
