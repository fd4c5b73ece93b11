using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <inheritdoc />
    public partial class Redemption : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "reverses_entry_id",
                table: "journal_entries",
                type: "bigint",
                nullable: true);

            migrationBuilder.CreateTable(
                name: "claw_backs",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    target_kind = table.Column<string>(type: "text", nullable: false),
                    target_id = table.Column<long>(type: "bigint", nullable: false),
                    amount_fen = table.Column<long>(type: "bigint", nullable: false),
                    reason = table.Column<string>(type: "text", nullable: false),
                    party_uscc = table.Column<string>(type: "text", nullable: false),
                    standing = table.Column<short>(type: "smallint", nullable: false),
                    at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_claw_backs", x => x.id);
                    table.CheckConstraint("ck_claw_backs_amount", "amount_fen > 0");
                });

            migrationBuilder.CreateTable(
                name: "redemption_batches",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    year = table.Column<int>(type: "integer", nullable: false),
                    opened_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    closes_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_redemption_batches", x => x.id);
                });

            migrationBuilder.CreateTable(
                name: "redemptions",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    batch_id = table.Column<long>(type: "bigint", nullable: false),
                    unit_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    year = table.Column<int>(type: "integer", nullable: false),
                    requested_fen = table.Column<long>(type: "bigint", nullable: false),
                    approved_fen = table.Column<long>(type: "bigint", nullable: true),
                    clawed_back_fen = table.Column<long>(type: "bigint", nullable: false),
                    state = table.Column<short>(type: "smallint", nullable: false),
                    reviewer = table.Column<string>(type: "text", nullable: true),
                    review_reason = table.Column<string>(type: "text", nullable: true),
                    payment_ref = table.Column<string>(type: "text", nullable: true),
                    submitted_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    reviewed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    disbursed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    disbursement_entry_id = table.Column<long>(type: "bigint", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_redemptions", x => x.id);
                    table.CheckConstraint("ck_redemptions_amounts", "requested_fen > 0 AND (approved_fen IS NULL OR approved_fen BETWEEN 0 AND requested_fen) AND clawed_back_fen >= 0");
                    table.ForeignKey(
                        name: "fk_redemptions_redemption_batches_batch_id",
                        column: x => x.batch_id,
                        principalTable: "redemption_batches",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_redemptions_units_unit_uscc",
                        column: x => x.unit_uscc,
                        principalTable: "units",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "redemption_evidence",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    redemption_id = table.Column<long>(type: "bigint", nullable: false),
                    kind = table.Column<short>(type: "smallint", nullable: false),
                    reference = table.Column<string>(type: "text", nullable: false),
                    sha256 = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_redemption_evidence", x => x.id);
                    table.ForeignKey(
                        name: "fk_redemption_evidence_redemptions_redemption_id",
                        column: x => x.redemption_id,
                        principalTable: "redemptions",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateIndex(
                name: "ix_claw_backs_target_kind_target_id",
                table: "claw_backs",
                columns: new[] { "target_kind", "target_id" });

            migrationBuilder.CreateIndex(
                name: "ix_redemption_evidence_redemption_id",
                table: "redemption_evidence",
                column: "redemption_id");

            migrationBuilder.CreateIndex(
                name: "ix_redemptions_batch_id",
                table: "redemptions",
                column: "batch_id");

            migrationBuilder.CreateIndex(
                name: "ix_redemptions_unit_uscc_year",
                table: "redemptions",
                columns: new[] { "unit_uscc", "year" });

            foreach (var table in new[] { "redemption_evidence", "claw_backs" })
            {
                migrationBuilder.Sql(
                    $"""
                    CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                      FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
                    """);
            }
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("DROP TRIGGER redemption_evidence_append_only ON redemption_evidence; DROP TRIGGER claw_backs_append_only ON claw_backs;");

            migrationBuilder.DropTable(
                name: "claw_backs");

            migrationBuilder.DropTable(
                name: "redemption_evidence");

            migrationBuilder.DropTable(
                name: "redemptions");

            migrationBuilder.DropTable(
                name: "redemption_batches");

            migrationBuilder.DropColumn(
                name: "reverses_entry_id",
                table: "journal_entries");
        }
    }
}
