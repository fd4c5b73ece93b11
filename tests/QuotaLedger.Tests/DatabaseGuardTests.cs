using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Invariants PostgreSQL holds whatever the code does, races the code must win, and a database of an older
/// release that migrates with its rows keeping their meaning.</summary>
public sealed class DatabaseGuardTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly string[] s_appendOnly =
    [
        "journal_entries", "postings", "deductions", "unit_reviews", "standing_changes", "redemption_evidence", "claw_backs",
        "related_parties", "opc_residents", "opc_operator_confirmations",
    ];

    [Fact]
    public async Task Every_append_only_table_refuses_TRUNCATE_and_the_histories_refuse_UPDATE_and_DELETE()
    {
        var deal = await fixture.Server.NewDealAsync();
        await fixture.Server.Registry.DeclareRelatedPartyAsync(new DeclareRelatedPartyRequest { RequestId = Ids.New(), ProviderUscc = deal.Provider, UnitUscc = deal.Unit, Reason = "x" });
        var provider = await fixture.Server.NewProviderAsync();
        var opc = await fixture.Server.NewConfirmedOperatorAsync(provider);
        await fixture.Server.NewConfirmedResidentAsync(provider, opc);

        foreach (var table in s_appendOnly)
        {
            var error = await RefusedAsync($"TRUNCATE {table} CASCADE");
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
            Assert.Contains("append-only", error.MessageText, StringComparison.Ordinal);
        }

        foreach (var sql in new[]
        {
            "UPDATE related_parties SET related = NOT related", "DELETE FROM related_parties",
            "UPDATE opc_residents SET status = 2", "DELETE FROM opc_residents",
            "UPDATE opc_operator_confirmations SET confirmed = true", "DELETE FROM opc_operator_confirmations",
        })
        {
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, (await RefusedAsync(sql)).SqlState);
        }
    }

    [Fact]
    public async Task The_database_refuses_funding_past_the_total_grants_past_the_contracts_quota_and_SME_for_non_enterprises()
    {
        var server = fixture.Server;
        await server.SetSmallYearAsync(2049, capFen: 1_000_000, totalFen: 10_000, fundFen: 10_000);
        Assert.Equal(PostgresErrorCodes.CheckViolation,
            (await RefusedAsync("UPDATE accounts SET balance_fen = balance_fen + 1 WHERE kind = 1 AND year = 2049")).SqlState);
        Assert.Equal(PostgresErrorCodes.CheckViolation,
            (await RefusedAsync("UPDATE year_policies SET year_total_fen = 9999 WHERE year = 2049")).SqlState);

        var university = await server.NewUnitAsync(kind: UnitKind.University);
        Assert.Equal(PostgresErrorCodes.CheckViolation, (await RefusedAsync($"UPDATE units SET sme = true WHERE uscc = '{university}'")).SqlState);

        // A contract of 100,000 fen allows 50,000 at 50%: the database refuses a grant that takes it past that, at commit.
        var deal = await server.NewDealAsync(contractAmountFen: 100_000);
        var grant = await server.GrantAsync(deal, 40_000);
        Assert.Equal(PostgresErrorCodes.CheckViolation,
            (await RefusedAsync($"UPDATE contracts SET granted_fen = amount_fen + 1 WHERE contract_no = '{deal.ContractNo}'")).SqlState);
        var error = await RefusedAsync(
            $"""
            UPDATE contracts SET granted_fen = granted_fen + 10001 WHERE contract_no = '{deal.ContractNo}';
            WITH account AS (INSERT INTO accounts (kind, year, balance_fen) VALUES (3, 2026, 0) RETURNING id)
            INSERT INTO grants (contract_id, provider_uscc, unit_uscc, year, unit_year_id, account_id, ratio_bp, amount_fen, state, returned_fen,
                                clawed_back_fen, granted_at, expires_at)
            SELECT g.contract_id, g.provider_uscc, g.unit_uscc, g.year, g.unit_year_id, account.id, g.ratio_bp, 10001, 1, 0, 0, g.granted_at, g.expires_at
            FROM grants g, account WHERE g.id = {grant.GrantId};
            """);
        Assert.Equal(PostgresErrorCodes.CheckViolation, error.SqlState);
        Assert.Contains("quota", error.MessageText, StringComparison.Ordinal);
        await Books.AssertHoldAsync(server);
    }

    [Fact]
    public async Task Funding_never_passes_the_years_total_when_FundBudget_races_SetYearPolicy()
    {
        await using var other = fixture.StartServer(LedgerFixture.Now);
        for (var year = 2050; year < 2070; year++)
        {
            await fixture.Server.SetSmallYearAsync(year, capFen: 1_000, totalFen: 10_000, fundFen: 0);
            var fund = other.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = year, AmountFen = 6_000 }).ResponseAsync;
            var lower = fixture.Server.SetSmallYearAsync(year, capFen: 1_000, totalFen: 5_000, fundFen: 0);
            var outcomes = await Task.WhenAll(Outcome(fund), Outcome(lower));
            Assert.Contains(outcomes, o => o == "YEAR_TOTAL_EXCEEDED");

            var program = await fixture.Server.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = year });
            var policy = await fixture.Server.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = year });
            Assert.True(program.FundedFen <= policy.YearTotalFen, $"{year}: funded {program.FundedFen} > total {policy.YearTotalFen}");
        }

        static async Task<string> Outcome(Task call)
        {
            try
            {
                await call;
                return "OK";
            }
            catch (RpcException e)
            {
                return Refusal.ReasonOf(e);
            }
        }
    }

    [Fact]
    public async Task A_database_of_the_previous_release_migrates_with_its_rows_keeping_their_meaning()
    {
        var connectionString = await fixture.Database.CreateSiblingAsync();
        var options = new DbContextOptionsBuilder<Server.Storage.LedgerDb>().UseNpgsql(connectionString).UseSnakeCaseNamingConvention().Options;
        await using (var db = new Server.Storage.LedgerDb(options))
        {
            await db.GetService<IMigrator>().MigrateAsync("20261127044438_Redemption");
        }

        string provider = TestUscc.New(), university = TestUscc.New(), opc = TestUscc.New(), resident = TestUscc.New();
        await using (var connection = new NpgsqlConnection(connectionString))
        {
            await connection.OpenAsync();
            await using var seed = new NpgsqlCommand(
                $"""
                INSERT INTO providers (uscc, name, licences, standing, registered_at) VALUES ('{provider}', 'P', ARRAY[]::text[], 1, now());
                INSERT INTO units (uscc, name, kind, sme, material_refs, standing, registered_at) VALUES
                  ('{university}', 'U', 3, true, ARRAY['form'], 1, now()), ('{opc}', 'O', 4, false, ARRAY[]::text[], 1, now()),
                  ('{resident}', 'R', 1, false, ARRAY[]::text[], 1, now());
                INSERT INTO unit_reviews (provider_uscc, unit_uscc, approved, reason, reviewed_at) VALUES ('{provider}', '{university}', true, 'ok', now());
                INSERT INTO contracts (contract_no, provider_uscc, unit_uscc, accelerator, self_controllable, service_mode, unit_price_fen, amount_fen,
                                       purpose, uses_innovation_voucher, signed_on, granted_fen, invoiced_fen, registered_at) VALUES
                  ('C-BARE', '{provider}', '{university}', 'H100', false, 'bare-metal rental', 100, 1000000, 'p', false, '2026-01-01', 0, 0, now()),
                  ('C-ODD', '{provider}', '{university}', 'H100', false, 'hourly', 100, 1000000, 'p', false, '2026-01-01', 7000, 0, now());
                INSERT INTO related_parties (provider_uscc, unit_uscc, reason, declared_at) VALUES ('{provider}', '{opc}', 'old', now());
                INSERT INTO opc_residents (operator_uscc, resident_uscc, added_at) VALUES ('{opc}', '{resident}', now());
                INSERT INTO accounts (kind, year, unit_uscc, balance_fen) VALUES (4, 2026, '{university}', 0);
                INSERT INTO unit_years (unit_uscc, year, deducted_account_id) SELECT '{university}', 2026, id FROM accounts WHERE kind = 4;
                INSERT INTO accounts (kind, year, balance_fen) VALUES (3, 2026, 7000), (3, 2026, 0);
                INSERT INTO grants (contract_id, provider_uscc, unit_uscc, year, unit_year_id, account_id, ratio_bp, amount_fen, state, returned_fen,
                                    granted_at, expires_at)
                SELECT (SELECT id FROM contracts WHERE contract_no = CASE WHEN a.balance_fen > 0 THEN 'C-ODD' ELSE 'C-BARE' END),
                       '{provider}', '{university}', 2026, (SELECT id FROM unit_years), a.id, 3000, 10000,
                       CASE WHEN a.balance_fen > 0 THEN 1 ELSE 3 END, CASE WHEN a.balance_fen > 0 THEN 3000 ELSE 5000 END,
                       '2026-05-15T02:00:00Z', '2026-06-15T02:00:00Z'
                FROM accounts a WHERE a.kind = 3 ORDER BY a.id;
                INSERT INTO claw_backs (target_kind, target_id, amount_fen, reason, party_uscc, standing, at)
                SELECT 'grant', g.id, CASE WHEN g.state = 1 THEN 3000 ELSE 1000 END, 'fraud', '{university}', 3, now() FROM grants g;
                INSERT INTO redemption_batches (year, opened_at, closes_at) VALUES (2026, now(), now() + interval '1 day');
                INSERT INTO redemptions (batch_id, unit_uscc, year, requested_fen, approved_fen, clawed_back_fen, state, submitted_at) VALUES
                  ((SELECT id FROM redemption_batches), '{university}', 2026, 5000, 4000, 500, 3, now()),
                  ((SELECT id FROM redemption_batches), '{university}', 2026, 100, NULL, 0, 1, now());
                """,
                connection);
            await seed.ExecuteNonQueryAsync();
        }

        await using (var db = new Server.Storage.LedgerDb(options))
        {
            await db.Database.MigrateAsync();
            Assert.Equal(s_measuresTakeEffect, (await db.YearPolicies.SingleAsync(p => p.Year == 2026)).EffectiveFrom);
            Assert.True((await db.RelatedParties.SingleAsync(r => r.ProviderUscc == provider)).Related);
            Assert.Equal(Server.Storage.ResidencyStatus.Declared, (await db.OpcResidents.SingleAsync(r => r.OperatorUscc == opc)).Status);
            Assert.False((await db.Units.SingleAsync(u => u.Uscc == university)).Sme);
            var contracts = await db.Contracts.OrderBy(c => c.ContractNo).Select(c => c.ServiceMode).ToListAsync();
            Assert.Equal([Server.Storage.ServiceMode.BareMetal, Server.Storage.ServiceMode.Unspecified], contracts);
            var grants = await db.Grants.OrderBy(g => g.Id).Select(g => new { g.State, g.ReturnedFen, g.ClawedBackFen }).ToListAsync();
            Assert.Equal((Server.Storage.GrantState.Open, 0L, 3_000L), (grants[0].State, grants[0].ReturnedFen, grants[0].ClawedBackFen));
            Assert.Equal((Server.Storage.GrantState.Released, 5_000L, 1_000L), (grants[1].State, grants[1].ReturnedFen, grants[1].ClawedBackFen));
            var redemptions = await db.Redemptions.OrderBy(r => r.Id).Select(r => new { r.OutstandingFen, r.DisbursedFen }).ToListAsync();
            Assert.Equal((3_500L, 4_000L), (redemptions[0].OutstandingFen, redemptions[0].DisbursedFen));
            Assert.Equal((100L, 0L), (redemptions[1].OutstandingFen, redemptions[1].DisbursedFen));
        }

        // And the old rows keep working: a provider registered without a licence can be suspended, a contract whose mode
        // no longer parses takes grants and deductions, and its grants expire.
        await using var server = LedgerServer.Start(fixture.Database.SettingsFor(connectionString), LedgerFixture.Now);
        await server.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1_000_000 });
        await server.Admin.SetStandingAsync(new SetStandingRequest { RequestId = Ids.New(), Uscc = provider, Standing = Standing.Suspended, Reason = "no licence" });
        await server.Admin.SetStandingAsync(new SetStandingRequest { RequestId = Ids.New(), Uscc = provider, Standing = Standing.Good, Reason = "licence filed" });
        var legacy = new Deal(provider, university, "C-ODD");
        var grant = await server.GrantAsync(legacy, 1_000);
        Assert.Equal(600, (await server.DeductAsync(legacy, grant.GrantId, 2_000)).AppliedFen);
        server.Clock.SetUtcNow(new DateTimeOffset(2026, 7, 20, 2, 0, 0, TimeSpan.Zero));
        var pass = await server.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
        Assert.Equal((2, 0), (pass.ExpiredGrants, pass.FailedGrants));
        Assert.Equal(ServiceMode.Unspecified, (await server.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = provider, ContractNo = "C-ODD" })).ServiceMode);
    }

    private static readonly DateOnly s_measuresTakeEffect = new(2026, 5, 13);

    /// <summary>Runs <paramref name="sql"/> in a transaction directly on the database and returns the error that refused
    /// it; the transaction is rolled back whatever happens.</summary>
    private async Task<PostgresException> RefusedAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        var error = await Assert.ThrowsAsync<PostgresException>(async () =>
        {
            await command.ExecuteNonQueryAsync();
            await transaction.CommitAsync();
        });
        return error;
    }
}
