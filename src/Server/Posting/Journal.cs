using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using QuotaLedger.Server.Alerts;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Posting;

/// <summary>One side of a journal entry: a debit or a credit of one account. <see cref="RefuseWith"/> is the
/// refusal to report when the change would take the account below zero (the pool running dry, say);
/// without one, that is a bug and fails loudly.</summary>
public readonly record struct Leg(long AccountId, AccountKind Kind, long SignedFen, Reason? RefuseWith)
{
    public static Leg Debit(long accountId, AccountKind kind, Fen amount, Reason? refuseWith = null) =>
        new(accountId, kind, Positive(amount), refuseWith);

    public static Leg Credit(long accountId, AccountKind kind, Fen amount, Reason? refuseWith = null) =>
        new(accountId, kind, -Positive(amount), refuseWith);

    /// <summary>The change to the account's balance, which is kept in the kind's normal direction.</summary>
    public long BalanceDelta => Journal.IsDebitNormal(Kind) ? SignedFen : -SignedFen;

    private static long Positive(Fen amount) =>
        amount.IsPositive ? amount.Value : throw new ArgumentOutOfRangeException(nameof(amount), amount, "A posting moves a positive amount.");
}

/// <summary>The posting engine: writes an entry with balanced postings and moves the account balances in the
/// same transaction. The caller holds the locks its rules need; balances are changed in account-id order with a
/// guard that keeps them non-negative, so concurrent posters never deadlock on accounts.</summary>
public static class Journal
{
    public static bool IsDebitNormal(AccountKind kind) => kind != AccountKind.Funding;

    public static async Task PostAsync(LedgerDb db, JournalEntryRow entry, IReadOnlyList<Leg> legs, CancellationToken cancellationToken)
    {
        if (legs.Count < 2 || legs.Sum(l => l.SignedFen) != 0)
        {
            throw new InvalidOperationException($"A {entry.Kind} entry must have at least two postings whose debits equal credits.");
        }

        entry.Postings = [.. legs.Select(l => new PostingRow { AccountId = l.AccountId, AmountFen = l.SignedFen })];
        entry.CreatedAt = Chain.ToStoredPrecision(entry.CreatedAt);
        entry.ChainKey = Chain.KeyOf(entry);
        var previous = await db.JournalEntries
            .Where(e => e.ChainKey == entry.ChainKey)
            .OrderByDescending(e => e.Id)
            .Select(e => e.Hash)
            .FirstOrDefaultAsync(cancellationToken) ?? [];
        entry.PrevHash = previous;
        entry.Hash = Chain.HashOf(entry, legs.Select(l => (l.AccountId, l.SignedFen)), previous);
        db.JournalEntries.Add(entry);
        await db.SaveChangesAsync(cancellationToken);

        var ordered = legs.OrderBy(l => l.AccountId).ToList();
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await using var batch = new NpgsqlBatch(connection)
        {
            Transaction = (NpgsqlTransaction?)db.Database.CurrentTransaction?.GetDbTransaction(),
        };
        foreach (var leg in ordered)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(
                "UPDATE accounts SET balance_fen = balance_fen + $1 WHERE id = $2 AND balance_fen + $1 >= 0")
            {
                Parameters = { new() { Value = leg.BalanceDelta }, new() { Value = leg.AccountId } },
            });
        }

        await batch.ExecuteNonQueryAsync(cancellationToken);
        for (var i = 0; i < ordered.Count; i++)
        {
            if (batch.BatchCommands[i].RecordsAffected == 1)
            {
                continue;
            }

            var leg = ordered[i];
            throw leg.RefuseWith is { } reason
                ? new LedgerException(reason, RefusalMessage(reason))
                : new InvalidOperationException($"Posting {leg.SignedFen} fen to {leg.Kind} account {leg.AccountId} would make its balance negative.");
        }

        // Every entry but a deduction's (which moves quota from a grant to deducted, both counted alike, and never
        // touches the pool) is posted here, so the figure alerts see every change of the figures they watch. A year's
        // settlement empties a pool that takes no more grants: nothing to warn of.
        if (entry.Kind != EntryKind.YearSettlement)
        {
            await AlertWatch.AfterEntryAsync(db, entry, legs, cancellationToken);
        }
    }

    private static string RefusalMessage(Reason reason) => reason switch
    {
        Reason.BudgetExhausted => "The year's budget pool holds less than the amount asked for.",
        Reason.GrantEmpty => "The grant holds less than the amount asked for.",
        _ => "An account holds less than the amount asked for.",
    };
}
