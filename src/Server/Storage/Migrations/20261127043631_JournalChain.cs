using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <inheritdoc />
    public partial class JournalChain : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "chain_key",
                table: "journal_entries",
                type: "text",
                nullable: true);

            migrationBuilder.AddColumn<byte[]>(
                name: "hash",
                table: "journal_entries",
                type: "bytea",
                nullable: true);

            migrationBuilder.AddColumn<byte[]>(
                name: "prev_hash",
                table: "journal_entries",
                type: "bytea",
                nullable: true);

            migrationBuilder.CreateIndex(
                name: "ix_journal_entries_chain_key_id",
                table: "journal_entries",
                columns: new[] { "chain_key", "id" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_journal_entries_chain_key_id",
                table: "journal_entries");

            migrationBuilder.DropColumn(
                name: "chain_key",
                table: "journal_entries");

            migrationBuilder.DropColumn(
                name: "hash",
                table: "journal_entries");

            migrationBuilder.DropColumn(
                name: "prev_hash",
                table: "journal_entries");
        }
    }
}
