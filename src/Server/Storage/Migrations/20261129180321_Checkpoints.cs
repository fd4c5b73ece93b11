using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <summary>Signed checkpoints of the journal, append-only like the journal itself.</summary>
    public partial class Checkpoints : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "checkpoints",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    body = table.Column<byte[]>(type: "bytea", nullable: false),
                    digest = table.Column<byte[]>(type: "bytea", nullable: false),
                    key_id = table.Column<string>(type: "text", nullable: false),
                    signature = table.Column<byte[]>(type: "bytea", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_checkpoints", x => x.id);
                });

            migrationBuilder.Sql(
                """
                CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
                  FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
                CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
                  FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "checkpoints");
        }
    }
}
