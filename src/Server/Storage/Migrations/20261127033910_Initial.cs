using System;
using System.Collections.Generic;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <inheritdoc />
    public partial class Initial : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "idempotency_records",
                columns: table => new
                {
                    caller = table.Column<string>(type: "text", nullable: false),
                    request_id = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    method = table.Column<string>(type: "text", nullable: false),
                    request_hash = table.Column<byte[]>(type: "bytea", nullable: false),
                    outcome = table.Column<string>(type: "text", nullable: true),
                    message = table.Column<string>(type: "text", nullable: true),
                    response = table.Column<byte[]>(type: "bytea", nullable: true),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_idempotency_records", x => new { x.caller, x.request_id });
                });

            migrationBuilder.CreateTable(
                name: "providers",
                columns: table => new
                {
                    uscc = table.Column<string>(type: "character(18)", fixedLength: true, maxLength: 18, nullable: false),
                    name = table.Column<string>(type: "text", nullable: false),
                    licences = table.Column<List<string>>(type: "text[]", nullable: false),
                    standing = table.Column<short>(type: "smallint", nullable: false),
                    registered_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_providers", x => x.uscc);
                });

            migrationBuilder.CreateTable(
                name: "units",
                columns: table => new
                {
                    uscc = table.Column<string>(type: "character(18)", fixedLength: true, maxLength: 18, nullable: false),
                    name = table.Column<string>(type: "text", nullable: false),
                    kind = table.Column<short>(type: "smallint", nullable: false),
                    sme = table.Column<bool>(type: "boolean", nullable: false),
                    material_refs = table.Column<List<string>>(type: "text[]", nullable: false),
                    standing = table.Column<short>(type: "smallint", nullable: false),
                    registered_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_units", x => x.uscc);
                });

            migrationBuilder.CreateTable(
                name: "year_policies",
                columns: table => new
                {
                    year = table.Column<int>(type: "integer", nullable: false),
                    self_controllable_ratio_bp = table.Column<int>(type: "integer", nullable: false),
                    other_ratio_bp = table.Column<int>(type: "integer", nullable: false),
                    sme_bonus_bp = table.Column<int>(type: "integer", nullable: false),
                    unit_year_cap_fen = table.Column<long>(type: "bigint", nullable: false),
                    unit_year_floor_fen = table.Column<long>(type: "bigint", nullable: false),
                    year_total_fen = table.Column<long>(type: "bigint", nullable: false),
                    validity_months = table.Column<int>(type: "integer", nullable: false),
                    updated_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_year_policies", x => x.year);
                    table.CheckConstraint("ck_year_policies_ratios", "self_controllable_ratio_bp BETWEEN 0 AND 10000 AND other_ratio_bp BETWEEN 0 AND 10000 AND sme_bonus_bp BETWEEN 0 AND 10000");
                });

            migrationBuilder.CreateTable(
                name: "accounts",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    kind = table.Column<short>(type: "smallint", nullable: false),
                    year = table.Column<int>(type: "integer", nullable: false),
                    unit_uscc = table.Column<string>(type: "character(18)", nullable: true),
                    balance_fen = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_accounts", x => x.id);
                    table.CheckConstraint("ck_accounts_balance_not_negative", "balance_fen >= 0");
                    table.ForeignKey(
                        name: "fk_accounts_units_unit_uscc",
                        column: x => x.unit_uscc,
                        principalTable: "units",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "contracts",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    contract_no = table.Column<string>(type: "text", nullable: false),
                    provider_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    unit_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    accelerator = table.Column<string>(type: "text", nullable: false),
                    self_controllable = table.Column<bool>(type: "boolean", nullable: false),
                    service_mode = table.Column<string>(type: "text", nullable: false),
                    unit_price_fen = table.Column<long>(type: "bigint", nullable: false),
                    amount_fen = table.Column<long>(type: "bigint", nullable: false),
                    purpose = table.Column<string>(type: "text", nullable: false),
                    uses_innovation_voucher = table.Column<bool>(type: "boolean", nullable: false),
                    signed_on = table.Column<DateOnly>(type: "date", nullable: false),
                    granted_fen = table.Column<long>(type: "bigint", nullable: false),
                    invoiced_fen = table.Column<long>(type: "bigint", nullable: false),
                    registered_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_contracts", x => x.id);
                    table.CheckConstraint("ck_contracts_amounts", "amount_fen > 0 AND unit_price_fen > 0");
                    table.CheckConstraint("ck_contracts_granted", "granted_fen >= 0");
                    table.CheckConstraint("ck_contracts_invoiced", "invoiced_fen BETWEEN 0 AND amount_fen");
                    table.ForeignKey(
                        name: "fk_contracts_providers_provider_uscc",
                        column: x => x.provider_uscc,
                        principalTable: "providers",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_contracts_units_unit_uscc",
                        column: x => x.unit_uscc,
                        principalTable: "units",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "unit_reviews",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    provider_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    unit_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    approved = table.Column<bool>(type: "boolean", nullable: false),
                    reason = table.Column<string>(type: "text", nullable: false),
                    reviewed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_unit_reviews", x => x.id);
                    table.ForeignKey(
                        name: "fk_unit_reviews_providers_provider_uscc",
                        column: x => x.provider_uscc,
                        principalTable: "providers",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_unit_reviews_units_unit_uscc",
                        column: x => x.unit_uscc,
                        principalTable: "units",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "unit_years",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    unit_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    year = table.Column<int>(type: "integer", nullable: false),
                    deducted_account_id = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_unit_years", x => x.id);
                    table.ForeignKey(
                        name: "fk_unit_years_accounts_deducted_account_id",
                        column: x => x.deducted_account_id,
                        principalTable: "accounts",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_unit_years_units_unit_uscc",
                        column: x => x.unit_uscc,
                        principalTable: "units",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "grants",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    contract_id = table.Column<long>(type: "bigint", nullable: false),
                    provider_uscc = table.Column<string>(type: "text", nullable: false),
                    unit_uscc = table.Column<string>(type: "text", nullable: false),
                    year = table.Column<int>(type: "integer", nullable: false),
                    unit_year_id = table.Column<long>(type: "bigint", nullable: false),
                    account_id = table.Column<long>(type: "bigint", nullable: false),
                    ratio_bp = table.Column<int>(type: "integer", nullable: false),
                    amount_fen = table.Column<long>(type: "bigint", nullable: false),
                    state = table.Column<short>(type: "smallint", nullable: false),
                    returned_fen = table.Column<long>(type: "bigint", nullable: false),
                    granted_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    expires_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_grants", x => x.id);
                    table.CheckConstraint("ck_grants_amounts", "amount_fen > 0 AND returned_fen BETWEEN 0 AND amount_fen");
                    table.CheckConstraint("ck_grants_ratio", "ratio_bp BETWEEN 0 AND 10000");
                    table.ForeignKey(
                        name: "fk_grants_accounts_account_id",
                        column: x => x.account_id,
                        principalTable: "accounts",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_grants_contracts_contract_id",
                        column: x => x.contract_id,
                        principalTable: "contracts",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_grants_unit_years_unit_year_id",
                        column: x => x.unit_year_id,
                        principalTable: "unit_years",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "deductions",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    grant_id = table.Column<long>(type: "bigint", nullable: false),
                    provider_uscc = table.Column<string>(type: "text", nullable: false),
                    invoice_no = table.Column<string>(type: "text", nullable: false),
                    invoice_amount_fen = table.Column<long>(type: "bigint", nullable: false),
                    invoice_date = table.Column<DateOnly>(type: "date", nullable: false),
                    requested_fen = table.Column<long>(type: "bigint", nullable: false),
                    applied_fen = table.Column<long>(type: "bigint", nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_deductions", x => x.id);
                    table.CheckConstraint("ck_deductions_amounts", "invoice_amount_fen > 0 AND requested_fen > 0 AND applied_fen BETWEEN 1 AND requested_fen");
                    table.ForeignKey(
                        name: "fk_deductions_grants_grant_id",
                        column: x => x.grant_id,
                        principalTable: "grants",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "journal_entries",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    kind = table.Column<short>(type: "smallint", nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    year = table.Column<int>(type: "integer", nullable: false),
                    unit_uscc = table.Column<string>(type: "text", nullable: true),
                    provider_uscc = table.Column<string>(type: "text", nullable: true),
                    grant_id = table.Column<long>(type: "bigint", nullable: true),
                    deduction_id = table.Column<long>(type: "bigint", nullable: true),
                    request_id = table.Column<string>(type: "text", nullable: false),
                    caller = table.Column<string>(type: "text", nullable: false),
                    memo = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_journal_entries", x => x.id);
                    table.ForeignKey(
                        name: "fk_journal_entries_deductions_deduction_id",
                        column: x => x.deduction_id,
                        principalTable: "deductions",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_journal_entries_grants_grant_id",
                        column: x => x.grant_id,
                        principalTable: "grants",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "postings",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    entry_id = table.Column<long>(type: "bigint", nullable: false),
                    account_id = table.Column<long>(type: "bigint", nullable: false),
                    amount_fen = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_postings", x => x.id);
                    table.CheckConstraint("ck_postings_amount_not_zero", "amount_fen <> 0");
                    table.ForeignKey(
                        name: "fk_postings_accounts_account_id",
                        column: x => x.account_id,
                        principalTable: "accounts",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_postings_journal_entries_entry_id",
                        column: x => x.entry_id,
                        principalTable: "journal_entries",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.InsertData(
                table: "year_policies",
                columns: new[] { "year", "other_ratio_bp", "self_controllable_ratio_bp", "sme_bonus_bp", "unit_year_cap_fen", "unit_year_floor_fen", "updated_at", "validity_months", "year_total_fen" },
                values: new object[] { 2026, 3000, 5000, 1000, 500000000L, 1000000L, new DateTimeOffset(new DateTime(2026, 1, 1, 0, 0, 0, 0, DateTimeKind.Unspecified), new TimeSpan(0, 0, 0, 0, 0)), 1, 10000000000L });

            migrationBuilder.CreateIndex(
                name: "ix_accounts_kind_year_unit_uscc",
                table: "accounts",
                columns: new[] { "kind", "year", "unit_uscc" },
                unique: true,
                filter: "kind <> 3")
                .Annotation("Npgsql:NullsDistinct", false);

            migrationBuilder.CreateIndex(
                name: "ix_accounts_unit_uscc",
                table: "accounts",
                column: "unit_uscc");

            migrationBuilder.CreateIndex(
                name: "ix_contracts_provider_uscc_contract_no",
                table: "contracts",
                columns: new[] { "provider_uscc", "contract_no" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_contracts_unit_uscc",
                table: "contracts",
                column: "unit_uscc");

            migrationBuilder.CreateIndex(
                name: "ix_deductions_grant_id",
                table: "deductions",
                column: "grant_id");

            migrationBuilder.CreateIndex(
                name: "ix_deductions_provider_uscc_invoice_no",
                table: "deductions",
                columns: new[] { "provider_uscc", "invoice_no" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_grants_account_id",
                table: "grants",
                column: "account_id",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_grants_contract_id",
                table: "grants",
                column: "contract_id");

            migrationBuilder.CreateIndex(
                name: "ix_grants_unit_year_id_state",
                table: "grants",
                columns: new[] { "unit_year_id", "state" });

            migrationBuilder.CreateIndex(
                name: "ix_grants_year_state",
                table: "grants",
                columns: new[] { "year", "state" });

            migrationBuilder.CreateIndex(
                name: "ix_journal_entries_created_at",
                table: "journal_entries",
                column: "created_at");

            migrationBuilder.CreateIndex(
                name: "ix_journal_entries_deduction_id",
                table: "journal_entries",
                column: "deduction_id",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_journal_entries_grant_id_id",
                table: "journal_entries",
                columns: new[] { "grant_id", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_journal_entries_provider_uscc_id",
                table: "journal_entries",
                columns: new[] { "provider_uscc", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_journal_entries_unit_uscc_id",
                table: "journal_entries",
                columns: new[] { "unit_uscc", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_journal_entries_year_id",
                table: "journal_entries",
                columns: new[] { "year", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_postings_account_id",
                table: "postings",
                column: "account_id");

            migrationBuilder.CreateIndex(
                name: "ix_postings_entry_id",
                table: "postings",
                column: "entry_id");

            migrationBuilder.CreateIndex(
                name: "ix_unit_reviews_provider_uscc",
                table: "unit_reviews",
                column: "provider_uscc");

            migrationBuilder.CreateIndex(
                name: "ix_unit_reviews_unit_uscc_provider_uscc_id",
                table: "unit_reviews",
                columns: new[] { "unit_uscc", "provider_uscc", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_unit_years_deducted_account_id",
                table: "unit_years",
                column: "deducted_account_id",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_unit_years_unit_uscc_year",
                table: "unit_years",
                columns: new[] { "unit_uscc", "year" },
                unique: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "idempotency_records");

            migrationBuilder.DropTable(
                name: "postings");

            migrationBuilder.DropTable(
                name: "unit_reviews");

            migrationBuilder.DropTable(
                name: "year_policies");

            migrationBuilder.DropTable(
                name: "journal_entries");

            migrationBuilder.DropTable(
                name: "deductions");

            migrationBuilder.DropTable(
                name: "grants");

            migrationBuilder.DropTable(
                name: "contracts");

            migrationBuilder.DropTable(
                name: "unit_years");

            migrationBuilder.DropTable(
                name: "providers");

            migrationBuilder.DropTable(
                name: "accounts");

            migrationBuilder.DropTable(
                name: "units");
        }
    }
}
