using Google.Protobuf.WellKnownTypes;
using Npgsql;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>A close and a write dated inside the month racing: the close waits for a transaction that has written a
/// journal entry dated inside the month and not yet committed, and counts it, so no entry commits into a closed month
/// unseen by its closing. Its own class: closings are ledger-wide.</summary>
public sealed class PeriodCloseRaceTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    [Fact]
    public async Task A_close_waits_for_an_entry_dated_inside_the_month_still_in_flight_and_counts_it()
    {
        var settings = new Dictionary<string, string?> { ["Database:LockTimeout"] = "00:01:00" };
        await using var late = fixture.StartServer(new DateTimeOffset(2026, 6, 30, 15, 0, 0, TimeSpan.Zero), settings: settings);   // 23:00, 30 June
        await using var closer = fixture.StartServer(new DateTimeOffset(2026, 7, 2, 2, 0, 0, TimeSpan.Zero), settings: settings);

        // A funding dated 30 June writes its entry, then waits for the pool's row, which a session of the test holds.
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var hold = await connection.BeginTransactionAsync();
        await using (var lockPool = new NpgsqlCommand("SELECT id FROM accounts WHERE kind = 2 AND year = 2026 AND unit_uscc IS NULL FOR UPDATE", connection, hold))
        {
            Assert.NotNull(await lockPool.ExecuteScalarAsync());
        }

        var funding = late.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 12_345 }).ResponseAsync;
        await UntilWaitingAsync(1);
        var close = closer.Admin.ClosePeriodAsync(new ClosePeriodRequest { RequestId = Ids.New(), Year = 2026, Month = 6 }).ResponseAsync;
        await UntilWaitingAsync(2);
        Assert.False(close.IsCompleted);

        await hold.RollbackAsync();
        var funded = await funding;
        var closing = await close;
        var june = await Statement.ReadAsync(closer, new ListEntriesRequest
        {
            From = closing.Decoded.StartsAt, To = Timestamp.FromDateTimeOffset(closing.Decoded.EndsAt.ToDateTimeOffset().AddTicks(-10)),
        });
        Assert.Contains(june, e => e.EntryId == funded.Receipt.EntryId);
        Assert.Equal(june.Count, closing.Decoded.Entries);
        Assert.Equal(LedgerFixture.Funding2026Fen + 12_345,
            closing.Decoded.Figures.Single(f => f.Scope == ClosingScope.Programme && f.Year == 2026 && f.AccountKind == AccountKind.Funding).ClosingFen);
        Assert.Equal(funded.FundedFen, closing.Decoded.ProgramYears.Single(p => p.Year == 2026).FundedFen);
    }

    /// <summary>Waits until at least <paramref name="sessions"/> sessions of the class's database wait for a lock.</summary>
    private async Task UntilWaitingAsync(int sessions)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        for (var polls = 0; ; polls++)
        {
            await using var command = new NpgsqlCommand(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'", connection);
            if ((long)(await command.ExecuteScalarAsync())! >= sessions)
            {
                return;
            }

            Assert.True(polls < 200, $"Fewer than {sessions} sessions started waiting for a lock.");
            await Task.Delay(50);
        }
    }
}
