using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <inheritdoc />
    public partial class Lifecycle : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "counterparty_grant_id",
                table: "journal_entries",
                type: "bigint",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "counterparty_uscc",
                table: "journal_entries",
                type: "text",
                nullable: true);

            migrationBuilder.AddColumn<long>(
                name: "gifted_from_grant_id",
                table: "grants",
                type: "bigint",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "statement_ref",
                table: "grants",
                type: "text",
                nullable: true);

            migrationBuilder.CreateTable(
                name: "opc_residents",
                columns: table => new
                {
                    operator_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    resident_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    added_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_opc_residents", x => new { x.operator_uscc, x.resident_uscc });
                    table.ForeignKey(
                        name: "fk_opc_residents_units_operator_uscc",
                        column: x => x.operator_uscc,
                        principalTable: "units",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_opc_residents_units_resident_uscc",
                        column: x => x.resident_uscc,
                        principalTable: "units",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "related_parties",
                columns: table => new
                {
                    provider_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    unit_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    reason = table.Column<string>(type: "text", nullable: false),
                    declared_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_related_parties", x => new { x.provider_uscc, x.unit_uscc });
                    table.ForeignKey(
                        name: "fk_related_parties_providers_provider_uscc",
                        column: x => x.provider_uscc,
                        principalTable: "providers",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_related_parties_units_unit_uscc",
                        column: x => x.unit_uscc,
                        principalTable: "units",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "standing_changes",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    uscc = table.Column<string>(type: "text", nullable: false),
                    party = table.Column<string>(type: "text", nullable: false),
                    from = table.Column<short>(type: "smallint", nullable: false),
                    to = table.Column<short>(type: "smallint", nullable: false),
                    reason = table.Column<string>(type: "text", nullable: false),
                    changed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    request_id = table.Column<string>(type: "text", nullable: false),
                    caller = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_standing_changes", x => x.id);
                });

            migrationBuilder.CreateIndex(
                name: "ix_journal_entries_counterparty_grant_id_id",
                table: "journal_entries",
                columns: new[] { "counterparty_grant_id", "id" },
                filter: "counterparty_grant_id IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ix_journal_entries_counterparty_uscc_id",
                table: "journal_entries",
                columns: new[] { "counterparty_uscc", "id" },
                filter: "counterparty_uscc IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ix_grants_expires_at",
                table: "grants",
                column: "expires_at",
                filter: "state = 1");

            migrationBuilder.CreateIndex(
                name: "ix_grants_gifted_from_grant_id",
                table: "grants",
                column: "gifted_from_grant_id");

            migrationBuilder.CreateIndex(
                name: "ix_opc_residents_resident_uscc",
                table: "opc_residents",
                column: "resident_uscc");

            migrationBuilder.CreateIndex(
                name: "ix_related_parties_unit_uscc",
                table: "related_parties",
                column: "unit_uscc");

            migrationBuilder.CreateIndex(
                name: "ix_standing_changes_uscc_id",
                table: "standing_changes",
                columns: new[] { "uscc", "id" });

            migrationBuilder.AddForeignKey(
                name: "fk_grants_grants_gifted_from_grant_id",
                table: "grants",
                column: "gifted_from_grant_id",
                principalTable: "grants",
                principalColumn: "id",
                onDelete: ReferentialAction.Restrict);

            migrationBuilder.Sql(
                """
                CREATE TRIGGER standing_changes_append_only BEFORE UPDATE OR DELETE ON standing_changes
                  FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
                CREATE TRIGGER standing_changes_no_truncate BEFORE TRUNCATE ON standing_changes
                  FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("DROP TRIGGER standing_changes_append_only ON standing_changes; DROP TRIGGER standing_changes_no_truncate ON standing_changes;");

            migrationBuilder.DropForeignKey(
                name: "fk_grants_grants_gifted_from_grant_id",
                table: "grants");

            migrationBuilder.DropTable(
                name: "opc_residents");

            migrationBuilder.DropTable(
                name: "related_parties");

            migrationBuilder.DropTable(
                name: "standing_changes");

            migrationBuilder.DropIndex(
                name: "ix_journal_entries_counterparty_grant_id_id",
                table: "journal_entries");

            migrationBuilder.DropIndex(
                name: "ix_journal_entries_counterparty_uscc_id",
                table: "journal_entries");

            migrationBuilder.DropIndex(
                name: "ix_grants_expires_at",
                table: "grants");

            migrationBuilder.DropIndex(
                name: "ix_grants_gifted_from_grant_id",
                table: "grants");

            migrationBuilder.DropColumn(
                name: "counterparty_grant_id",
                table: "journal_entries");

            migrationBuilder.DropColumn(
                name: "counterparty_uscc",
                table: "journal_entries");

            migrationBuilder.DropColumn(
                name: "gifted_from_grant_id",
                table: "grants");

            migrationBuilder.DropColumn(
                name: "statement_ref",
                table: "grants");
        }
    }
}
