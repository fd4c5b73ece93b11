using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>The one lock order (pool, contracts, unit-years, grants): a write that waits for its locks never waits in
/// a cycle with another, so neither is ever picked as a deadlock's victim.</summary>
public sealed class LockOrderTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    /// <summary>A safety bound on waits, never an assertion about speed.</summary>
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_claw_back_and_a_grant_queued_behind_the_same_held_contract_take_their_locks_in_one_order_and_both_commit()
    {
        var server = fixture.Server;
        var deal = await server.NewDealAsync(contractAmountFen: 10_000_000);
        var clawed = await server.GrantAsync(deal, 10_000);
        var contractId = await ScalarAsync<long>(
            "SELECT id FROM contracts WHERE provider_uscc = $1::text::bpchar AND contract_no = $2", deal.Provider, deal.ContractNo);
        var deadlocksBefore = await DeadlocksAsync();

        // Another session holds the contract's row. The bureau's claw-back of a grant (a write outside the engine: pool,
        // contract, unit-year, grant) and a grant on the same contract and unit-year (the engine skips the held row, and
        // its lock waiter takes pool, contract, unit-year) both queue behind it. Taken in any other order (a claw-back
        // locking its unit-year first, as it once did), one holds a row the other waits for while waiting for one the
        // other holds.
        await using var holder = new NpgsqlConnection(fixture.Database.ConnectionString);
        await holder.OpenAsync();
        await using var transaction = await holder.BeginTransactionAsync();
        await ExecuteAsync(holder, "SELECT id FROM contracts WHERE id = $1 FOR UPDATE", contractId);

        var clawBack = server.Redemption.ClawBackAsync(new ClawBackRequest
        {
            RequestId = Ids.New(), GrantId = clawed.GrantId, AmountFen = 4_000, Reason = "lock order", Standing = Standing.Good,
        }).ResponseAsync;
        await WaitForLockWaitersAsync(1);
        var grant = server.GrantAsync(deal, 20_000);
        await WaitForLockWaitersAsync(2);
        await transaction.CommitAsync();

        var clawBackResponse = await clawBack.WaitAsync(s_patience);
        var grantResponse = await grant.WaitAsync(s_patience);
        Assert.Equal(4_000, clawBackResponse.AmountFen);
        Assert.Equal(20_000, grantResponse.AmountFen);
        Assert.Equal(deadlocksBefore, await DeadlocksAsync());
        await Books.AssertHoldAsync(server);
    }

    /// <summary>Waits until <paramref name="count"/> sessions of this database wait for a lock.</summary>
    private async Task WaitForLockWaitersAsync(int count)
    {
        using var patience = new CancellationTokenSource(s_patience);
        while (await ScalarAsync<long>(
            """
            SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE NOT l.granted AND a.datname = current_database()
            """) < count)
        {
            await Task.Delay(20, patience.Token);
        }
    }

    /// <summary>The deadlocks PostgreSQL has detected in this database (its statistics, read fresh).</summary>
    private async Task<long> DeadlocksAsync()
    {
        // Statistics reach the shared view when a backend reports them: wait until the view stops changing.
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        return await ScalarAsync<long>("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");
    }

    private async Task<T> ScalarAsync<T>(string sql, params object[] parameters)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = parameter });
        }

        return (T)(await command.ExecuteScalarAsync())!;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, params object[] parameters)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = parameter });
        }

        await command.ExecuteNonQueryAsync();
    }
}
