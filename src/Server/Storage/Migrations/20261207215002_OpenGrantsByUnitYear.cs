using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <inheritdoc />
    public partial class OpenGrantsByUnitYear : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateIndex(
                name: "ix_grants_unit_year_id_expires_at",
                table: "grants",
                columns: new[] { "unit_year_id", "expires_at" },
                filter: "state = 1")
                .Annotation("Npgsql:IndexInclude", new[] { "account_id" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_grants_unit_year_id_expires_at",
                table: "grants");
        }
    }
}
