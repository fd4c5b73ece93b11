using System;
using System.Collections.Generic;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <summary>Alerts (append-only, with the id of the transaction that wrote each, for feeds ordered by transaction),
    /// the arming state of each figure's thresholds, and the bureau's rules per year.</summary>
    public partial class Alerts : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "alert_arming",
                columns: table => new
                {
                    year = table.Column<int>(type: "integer", nullable: false),
                    kind = table.Column<short>(type: "smallint", nullable: false),
                    subject = table.Column<string>(type: "text", nullable: false),
                    threshold_bp = table.Column<int>(type: "integer", nullable: false),
                    armed = table.Column<bool>(type: "boolean", nullable: false),
                    changed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_alert_arming", x => new { x.year, x.kind, x.subject, x.threshold_bp });
                });

            migrationBuilder.CreateTable(
                name: "alert_rules",
                columns: table => new
                {
                    year = table.Column<int>(type: "integer", nullable: false),
                    unit_year_cap_bp = table.Column<List<int>>(type: "integer[]", nullable: false),
                    pool_low_bp = table.Column<int>(type: "integer", nullable: false),
                    grant_expiry_days = table.Column<int>(type: "integer", nullable: false),
                    grant_unused_fen = table.Column<long>(type: "bigint", nullable: false),
                    redemption_pending_days = table.Column<int>(type: "integer", nullable: false),
                    updated_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_alert_rules", x => x.year);
                    table.CheckConstraint("ck_alert_rules_values", "pool_low_bp BETWEEN 0 AND 10000 AND grant_expiry_days BETWEEN 0 AND 31 AND grant_unused_fen >= 0 AND redemption_pending_days BETWEEN 0 AND 3650");
                });

            migrationBuilder.CreateTable(
                name: "alerts",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    year = table.Column<int>(type: "integer", nullable: false),
                    kind = table.Column<short>(type: "smallint", nullable: false),
                    threshold_bp = table.Column<int>(type: "integer", nullable: false),
                    threshold_days = table.Column<int>(type: "integer", nullable: false),
                    unit_uscc = table.Column<string>(type: "text", nullable: true),
                    provider_uscc = table.Column<string>(type: "text", nullable: true),
                    grant_id = table.Column<long>(type: "bigint", nullable: true),
                    redemption_id = table.Column<long>(type: "bigint", nullable: true),
                    figure_fen = table.Column<long>(type: "bigint", nullable: false),
                    limit_fen = table.Column<long>(type: "bigint", nullable: false),
                    base_fen = table.Column<long>(type: "bigint", nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    entry_id = table.Column<long>(type: "bigint", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_alerts", x => x.id);
                });

            migrationBuilder.CreateIndex(
                name: "ix_alerts_provider_uscc_id",
                table: "alerts",
                columns: new[] { "provider_uscc", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_alerts_unit_uscc_id",
                table: "alerts",
                columns: new[] { "unit_uscc", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_alerts_year_kind_id",
                table: "alerts",
                columns: new[] { "year", "kind", "id" });

            migrationBuilder.CreateIndex(
                name: "ux_alerts_grant_expiring",
                table: "alerts",
                column: "grant_id",
                unique: true,
                filter: "kind = 3");

            migrationBuilder.CreateIndex(
                name: "ux_alerts_redemption_pending",
                table: "alerts",
                column: "redemption_id",
                unique: true,
                filter: "kind = 4");

            migrationBuilder.Sql(
                """
                ALTER TABLE alerts ADD COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id();
                CREATE TRIGGER alerts_append_only BEFORE UPDATE OR DELETE ON alerts
                  FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
                CREATE TRIGGER alerts_no_truncate BEFORE TRUNCATE ON alerts
                  FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "alert_arming");

            migrationBuilder.DropTable(
                name: "alert_rules");

            migrationBuilder.DropTable(
                name: "alerts");
        }
    }
}
