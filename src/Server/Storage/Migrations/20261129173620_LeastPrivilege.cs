using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <summary>A unit-year row is created once and then only locked: the database refuses any change of it, so the
    /// UPDATE privilege the serving role holds on one of its columns (which SELECT ... FOR UPDATE needs) changes nothing.</summary>
    public partial class LeastPrivilege : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(
                """
                CREATE TRIGGER unit_years_append_only BEFORE UPDATE OR DELETE ON unit_years
                  FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
                CREATE TRIGGER unit_years_no_truncate BEFORE TRUNCATE ON unit_years
                  FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("DROP TRIGGER unit_years_append_only ON unit_years; DROP TRIGGER unit_years_no_truncate ON unit_years;");
        }
    }
}
