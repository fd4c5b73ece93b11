using System;
using System.Collections.Generic;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace QuotaLedger.Server.Storage.Migrations
{
    /// <summary>Issue "policy holes": the year's effective date, claw-backs kept apart from returns, related parties and
    /// OPC lists as append-only histories with the bureau's confirmations, unit materials, the contract's service mode as
    /// an enum, applications that can be clawed back at every stage, and invariants the database now holds itself. Existing
    /// rows are carried over so that they keep their meaning.</summary>
    public partial class PolicyHoles : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropPrimaryKey(
                name: "pk_related_parties",
                table: "related_parties");

            migrationBuilder.DropCheckConstraint(
                name: "ck_redemptions_amounts",
                table: "redemptions");

            migrationBuilder.DropPrimaryKey(
                name: "pk_opc_residents",
                table: "opc_residents");

            migrationBuilder.DropCheckConstraint(
                name: "ck_grants_amounts",
                table: "grants");

            migrationBuilder.DropCheckConstraint(
                name: "ck_contracts_granted",
                table: "contracts");

            migrationBuilder.RenameColumn(
                name: "declared_at",
                table: "related_parties",
                newName: "recorded_at");

            migrationBuilder.RenameColumn(
                name: "added_at",
                table: "opc_residents",
                newName: "recorded_at");

            migrationBuilder.AddColumn<DateOnly>(
                name: "effective_from",
                table: "year_policies",
                type: "date",
                nullable: false,
                defaultValue: new DateOnly(1, 1, 1));

            migrationBuilder.AddColumn<List<string>>(
                name: "materials",
                table: "units",
                type: "text[]",
                nullable: false,
                defaultValueSql: "'{}'");

            migrationBuilder.AddColumn<long>(
                name: "id",
                table: "related_parties",
                type: "bigint",
                nullable: false,
                defaultValue: 0L)
                .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn);

            migrationBuilder.AddColumn<string>(
                name: "caller",
                table: "related_parties",
                type: "text",
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<bool>(
                name: "related",
                table: "related_parties",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            migrationBuilder.AddColumn<string>(
                name: "request_id",
                table: "related_parties",
                type: "text",
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<long>(
                name: "disbursed_fen",
                table: "redemptions",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);

            migrationBuilder.AddColumn<long>(
                name: "outstanding_fen",
                table: "redemptions",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);

            migrationBuilder.AddColumn<long>(
                name: "reviewed_entry_id",
                table: "redemptions",
                type: "bigint",
                nullable: true);

            migrationBuilder.AddColumn<long>(
                name: "submitted_entry_id",
                table: "redemptions",
                type: "bigint",
                nullable: true);

            migrationBuilder.AddColumn<long>(
                name: "id",
                table: "opc_residents",
                type: "bigint",
                nullable: false,
                defaultValue: 0L)
                .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn);

            migrationBuilder.AddColumn<string>(
                name: "caller",
                table: "opc_residents",
                type: "text",
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<string>(
                name: "reason",
                table: "opc_residents",
                type: "text",
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<string>(
                name: "request_id",
                table: "opc_residents",
                type: "text",
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<short>(
                name: "status",
                table: "opc_residents",
                type: "smallint",
                nullable: false,
                defaultValue: (short)0);

            migrationBuilder.AddColumn<long>(
                name: "clawed_back_fen",
                table: "grants",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);

            // Free-text modes become the enum where the text says which; anything else stays UNSPECIFIED (0), which only
            // contracts registered before the enum may carry.
            migrationBuilder.Sql(
                """
                ALTER TABLE contracts ALTER COLUMN service_mode TYPE smallint USING (CASE
                  WHEN service_mode ILIKE '%bare%' OR service_mode ILIKE '%physical%' OR service_mode LIKE '%物理%' OR service_mode LIKE '%裸金属%' THEN 1
                  WHEN service_mode ILIKE '%container%' OR service_mode LIKE '%容器%' THEN 3
                  WHEN service_mode ILIKE '%cluster%' OR service_mode ILIKE '%dedicated%' OR service_mode LIKE '%集群%' THEN 4
                  WHEN service_mode ILIKE '%cloud%' OR service_mode ILIKE '%vm%' OR service_mode ILIKE '%instance%' OR service_mode LIKE '%云%' THEN 2
                  ELSE 0 END);
                """);

            // Carry the old rows over. A related-party row was a declaration; a resident was declared by its operator
            // (the bureau confirms it from now on); what a claw-back took from a grant was added to returned_fen, which
            // a later close overwrote, so an open grant's returned_fen held only claw-backs; an application holds, in its
            // stage, what was applied for, approved, or paid less claw-backs; the SME bonus is for enterprises only.
            migrationBuilder.Sql(
                """
                UPDATE year_policies SET effective_from = greatest(make_date(year, 1, 1), date '2026-05-13');
                ALTER TABLE year_policies ALTER COLUMN effective_from DROP DEFAULT;
                UPDATE related_parties SET related = true, request_id = 'before-history', caller = 'migration';
                UPDATE opc_residents SET status = 1, reason = 'declared before the bureau confirmed residencies',
                                         request_id = 'before-history', caller = 'migration';
                UPDATE grants g SET clawed_back_fen = c.total
                FROM (SELECT target_id, sum(amount_fen) AS total FROM claw_backs WHERE target_kind = 'grant' GROUP BY target_id) c
                WHERE c.target_id = g.id;
                UPDATE grants SET returned_fen = 0 WHERE state = 1;
                UPDATE redemptions SET
                  outstanding_fen = CASE state WHEN 1 THEN requested_fen WHEN 2 THEN coalesce(approved_fen, 0)
                                               ELSE coalesce(approved_fen, 0) - clawed_back_fen END,
                  disbursed_fen = CASE WHEN state = 3 THEN coalesce(approved_fen, 0) ELSE 0 END;
                UPDATE redemptions r SET submitted_entry_id =
                  (SELECT e.id FROM journal_entries e WHERE e.kind = 7 AND e.memo = 'redemption ' || r.id || ' applied for');
                UPDATE redemptions r SET reviewed_entry_id =
                  (SELECT e.id FROM journal_entries e WHERE e.kind = 8 AND e.memo LIKE 'redemption ' || r.id || ' reviewed by %');
                UPDATE units SET sme = false WHERE sme AND kind <> 1;
                """);

            migrationBuilder.AddPrimaryKey(
                name: "pk_related_parties",
                table: "related_parties",
                column: "id");

            migrationBuilder.AddPrimaryKey(
                name: "pk_opc_residents",
                table: "opc_residents",
                column: "id");

            migrationBuilder.CreateTable(
                name: "opc_operator_confirmations",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    operator_uscc = table.Column<string>(type: "character(18)", nullable: false),
                    confirmed = table.Column<bool>(type: "boolean", nullable: false),
                    reason = table.Column<string>(type: "text", nullable: false),
                    recorded_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    request_id = table.Column<string>(type: "text", nullable: false),
                    caller = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_opc_operator_confirmations", x => x.id);
                    table.ForeignKey(
                        name: "fk_opc_operator_confirmations_units_operator_uscc",
                        column: x => x.operator_uscc,
                        principalTable: "units",
                        principalColumn: "uscc",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.UpdateData(
                table: "year_policies",
                keyColumn: "year",
                keyValue: 2026,
                column: "effective_from",
                value: new DateOnly(2026, 5, 13));

            migrationBuilder.AddCheckConstraint(
                name: "ck_units_sme_enterprise",
                table: "units",
                sql: "NOT sme OR kind = 1");

            migrationBuilder.CreateIndex(
                name: "ix_related_parties_provider_uscc_unit_uscc_id",
                table: "related_parties",
                columns: new[] { "provider_uscc", "unit_uscc", "id" });

            migrationBuilder.AddCheckConstraint(
                name: "ck_redemptions_amounts",
                table: "redemptions",
                sql: "requested_fen > 0 AND (approved_fen IS NULL OR approved_fen BETWEEN 0 AND requested_fen) AND outstanding_fen >= 0 AND clawed_back_fen >= 0 AND outstanding_fen + clawed_back_fen <= requested_fen AND outstanding_fen <= coalesce(approved_fen, requested_fen) AND disbursed_fen BETWEEN 0 AND coalesce(approved_fen, 0)");

            migrationBuilder.CreateIndex(
                name: "ix_opc_residents_operator_uscc_resident_uscc_id",
                table: "opc_residents",
                columns: new[] { "operator_uscc", "resident_uscc", "id" });

            migrationBuilder.AddCheckConstraint(
                name: "ck_opc_residents_status",
                table: "opc_residents",
                sql: "status BETWEEN 1 AND 4");

            migrationBuilder.AddCheckConstraint(
                name: "ck_grants_amounts",
                table: "grants",
                sql: "amount_fen > 0 AND returned_fen >= 0 AND clawed_back_fen >= 0 AND returned_fen + clawed_back_fen <= amount_fen");

            migrationBuilder.AddCheckConstraint(
                name: "ck_contracts_granted",
                table: "contracts",
                sql: "granted_fen BETWEEN 0 AND amount_fen");

            migrationBuilder.CreateIndex(
                name: "ix_opc_operator_confirmations_operator_uscc_id",
                table: "opc_operator_confirmations",
                columns: new[] { "operator_uscc", "id" });

            // Held by the database as well as by the code.
            migrationBuilder.Sql(
                """
                -- A registration is complete when it is made; rows from before the rule keep working (a NOT VALID check
                -- would still refuse every later update of them, a change of standing or a grant's total included).
                CREATE FUNCTION provider_registration_complete() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF cardinality(NEW.licences) < 1 THEN
                    RAISE EXCEPTION 'provider % registers with no licence (Art 5.1)', NEW.uscc USING ERRCODE = 'check_violation';
                  END IF;
                  RETURN NEW;
                END $$;
                CREATE TRIGGER providers_licensed BEFORE INSERT ON providers
                  FOR EACH ROW EXECUTE FUNCTION provider_registration_complete();

                CREATE FUNCTION contract_registration_complete() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF NEW.service_mode NOT BETWEEN 1 AND 4 THEN
                    RAISE EXCEPTION 'contract % registers with no service mode (Art 8)', NEW.contract_no USING ERRCODE = 'check_violation';
                  END IF;
                  RETURN NEW;
                END $$;
                CREATE TRIGGER contracts_service_mode BEFORE INSERT ON contracts
                  FOR EACH ROW EXECUTE FUNCTION contract_registration_complete();

                -- A year's funding never passes its total, also when FundBudget and SetYearPolicy race: each side locks the
                -- other's row (FOR SHARE) before it compares, in the order the code takes them (policy, then funding).
                CREATE FUNCTION funding_within_year_total() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE
                  total bigint;
                BEGIN
                  SELECT year_total_fen INTO total FROM year_policies WHERE year = NEW.year FOR SHARE;
                  IF NEW.balance_fen > coalesce(total, 0) THEN
                    RAISE EXCEPTION 'funding of % would be % fen, past the year''s total of % fen', NEW.year, NEW.balance_fen, coalesce(total, 0)
                      USING ERRCODE = 'check_violation';
                  END IF;
                  RETURN NEW;
                END $$;
                CREATE TRIGGER accounts_funding_within_year_total BEFORE INSERT OR UPDATE OF balance_fen ON accounts
                  FOR EACH ROW WHEN (NEW.kind = 1) EXECUTE FUNCTION funding_within_year_total();

                CREATE FUNCTION year_total_covers_funding() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE
                  funded bigint;
                BEGIN
                  SELECT balance_fen INTO funded FROM accounts WHERE kind = 1 AND year = NEW.year AND unit_uscc IS NULL FOR SHARE;
                  IF coalesce(funded, 0) > NEW.year_total_fen THEN
                    RAISE EXCEPTION 'the total of % cannot be % fen: % fen is funded already', NEW.year, NEW.year_total_fen, funded
                      USING ERRCODE = 'check_violation';
                  END IF;
                  RETURN NEW;
                END $$;
                CREATE TRIGGER year_policies_total_covers_funding BEFORE UPDATE OF year_total_fen ON year_policies
                  FOR EACH ROW EXECUTE FUNCTION year_total_covers_funding();

                -- Committed grants never pass the contract's quota at the ratio the new grant got (the contract quota rule).
                -- A gift moves quota between grants of one contract and commits nothing new, so it is not checked.
                CREATE FUNCTION grant_within_contract_quota() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE
                  granted bigint;
                  amount bigint;
                BEGIN
                  IF NEW.gifted_from_grant_id IS NOT NULL THEN
                    RETURN NULL;
                  END IF;
                  SELECT c.granted_fen, c.amount_fen INTO granted, amount FROM contracts c WHERE c.id = NEW.contract_id;
                  IF granted > amount * NEW.ratio_bp / 10000 THEN
                    RAISE EXCEPTION 'contract % has % fen committed, past its quota of % fen at % bp', NEW.contract_id, granted,
                      amount * NEW.ratio_bp / 10000, NEW.ratio_bp USING ERRCODE = 'check_violation';
                  END IF;
                  RETURN NULL;
                END $$;
                CREATE TRIGGER grants_within_contract_quota AFTER INSERT ON grants
                  FOR EACH ROW EXECUTE FUNCTION grant_within_contract_quota();
                """);

            // Histories: no row is changed or removed, and no table emptied.
            foreach (var table in new[] { "related_parties", "opc_residents", "opc_operator_confirmations" })
            {
                migrationBuilder.Sql(
                    $"""
                    CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                      FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
                    """);
            }

            foreach (var table in new[] { "related_parties", "opc_residents", "opc_operator_confirmations", "redemption_evidence", "claw_backs" })
            {
                migrationBuilder.Sql(
                    $"""
                    CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                      FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
                    """);
            }
        }


        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            foreach (var table in new[] { "related_parties", "opc_residents", "opc_operator_confirmations", "redemption_evidence", "claw_backs" })
            {
                migrationBuilder.Sql($"DROP TRIGGER {table}_no_truncate ON {table};");
            }

            foreach (var table in new[] { "related_parties", "opc_residents" })
            {
                migrationBuilder.Sql($"DROP TRIGGER {table}_append_only ON {table};");
            }

            migrationBuilder.Sql(
                """
                DROP TRIGGER grants_within_contract_quota ON grants;
                DROP FUNCTION grant_within_contract_quota();
                DROP TRIGGER year_policies_total_covers_funding ON year_policies;
                DROP FUNCTION year_total_covers_funding();
                DROP TRIGGER accounts_funding_within_year_total ON accounts;
                DROP FUNCTION funding_within_year_total();
                DROP TRIGGER contracts_service_mode ON contracts;
                DROP FUNCTION contract_registration_complete();
                DROP TRIGGER providers_licensed ON providers;
                DROP FUNCTION provider_registration_complete();
                """);

            migrationBuilder.DropTable(
                name: "opc_operator_confirmations");

            migrationBuilder.DropCheckConstraint(
                name: "ck_units_sme_enterprise",
                table: "units");

            migrationBuilder.DropPrimaryKey(
                name: "pk_related_parties",
                table: "related_parties");

            migrationBuilder.DropIndex(
                name: "ix_related_parties_provider_uscc_unit_uscc_id",
                table: "related_parties");

            migrationBuilder.DropCheckConstraint(
                name: "ck_redemptions_amounts",
                table: "redemptions");

            migrationBuilder.DropPrimaryKey(
                name: "pk_opc_residents",
                table: "opc_residents");

            migrationBuilder.DropIndex(
                name: "ix_opc_residents_operator_uscc_resident_uscc_id",
                table: "opc_residents");

            migrationBuilder.DropCheckConstraint(
                name: "ck_opc_residents_status",
                table: "opc_residents");

            migrationBuilder.DropCheckConstraint(
                name: "ck_grants_amounts",
                table: "grants");

            migrationBuilder.DropCheckConstraint(
                name: "ck_contracts_granted",
                table: "contracts");

            migrationBuilder.DropColumn(
                name: "effective_from",
                table: "year_policies");

            migrationBuilder.DropColumn(
                name: "materials",
                table: "units");

            migrationBuilder.DropColumn(
                name: "id",
                table: "related_parties");

            migrationBuilder.DropColumn(
                name: "caller",
                table: "related_parties");

            migrationBuilder.DropColumn(
                name: "related",
                table: "related_parties");

            migrationBuilder.DropColumn(
                name: "request_id",
                table: "related_parties");

            migrationBuilder.DropColumn(
                name: "disbursed_fen",
                table: "redemptions");

            migrationBuilder.DropColumn(
                name: "outstanding_fen",
                table: "redemptions");

            migrationBuilder.DropColumn(
                name: "reviewed_entry_id",
                table: "redemptions");

            migrationBuilder.DropColumn(
                name: "submitted_entry_id",
                table: "redemptions");

            migrationBuilder.DropColumn(
                name: "id",
                table: "opc_residents");

            migrationBuilder.DropColumn(
                name: "caller",
                table: "opc_residents");

            migrationBuilder.DropColumn(
                name: "reason",
                table: "opc_residents");

            migrationBuilder.DropColumn(
                name: "request_id",
                table: "opc_residents");

            migrationBuilder.DropColumn(
                name: "status",
                table: "opc_residents");

            migrationBuilder.DropColumn(
                name: "clawed_back_fen",
                table: "grants");

            migrationBuilder.RenameColumn(
                name: "recorded_at",
                table: "related_parties",
                newName: "declared_at");

            migrationBuilder.RenameColumn(
                name: "recorded_at",
                table: "opc_residents",
                newName: "added_at");

            migrationBuilder.Sql("ALTER TABLE contracts ALTER COLUMN service_mode TYPE text USING service_mode::text;");

            migrationBuilder.AddPrimaryKey(
                name: "pk_related_parties",
                table: "related_parties",
                columns: new[] { "provider_uscc", "unit_uscc" });

            migrationBuilder.AddPrimaryKey(
                name: "pk_opc_residents",
                table: "opc_residents",
                columns: new[] { "operator_uscc", "resident_uscc" });

            migrationBuilder.AddCheckConstraint(
                name: "ck_redemptions_amounts",
                table: "redemptions",
                sql: "requested_fen > 0 AND (approved_fen IS NULL OR approved_fen BETWEEN 0 AND requested_fen) AND clawed_back_fen >= 0");

            migrationBuilder.AddCheckConstraint(
                name: "ck_grants_amounts",
                table: "grants",
                sql: "amount_fen > 0 AND returned_fen BETWEEN 0 AND amount_fen");

            migrationBuilder.AddCheckConstraint(
                name: "ck_contracts_granted",
                table: "contracts",
                sql: "granted_fen >= 0");
        }
    }
}
