using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

/// <summary>Closing a grant, by expiry or release: what it still holds returns to its year's pool in one entry, and
/// stops counting toward its contract's quota and its unit-year's cap (Art 11: reclaimed for reuse). The caller holds
/// the grant's unit-year lock.</summary>
internal static class GrantReturns
{
    /// <summary>Closes the grant; returns what went back to the pool and the entry that moved it (none when it held nothing).</summary>
    public static async Task<(Fen Held, JournalEntryRow? Entry)> CloseAsync(LedgerDb db, GrantRow grant, GrantState closedAs, string requestId, string caller,
        DateTimeOffset now, string memo, string? statementRef, CancellationToken ct)
    {
        var held = new Fen(grant.Account!.BalanceFen);
        var closed = await db.Grants
            .Where(g => g.Id == grant.Id && g.State == GrantState.Open)
            .ExecuteUpdateAsync(s => s
                .SetProperty(g => g.State, closedAs)
                .SetProperty(g => g.ReturnedFen, held.Value)
                .SetProperty(g => g.StatementRef, statementRef), ct);
        if (closed != 1)
        {
            throw new InvalidOperationException($"Grant {grant.Id} was not open when closing it under its unit-year lock.");
        }

        if (!held.IsPositive)
        {
            return (held, null);
        }

        await db.Contracts.Where(c => c.Id == grant.ContractId)
            .ExecuteUpdateAsync(s => s.SetProperty(c => c.GrantedFen, c => c.GrantedFen - held.Value), ct);
        var poolId = await db.Accounts.Where(a => a.Kind == AccountKind.Pool && a.Year == grant.Year).Select(a => a.Id).SingleAsync(ct);
        var entry = new JournalEntryRow
        {
            Kind = closedAs == GrantState.Released ? EntryKind.Release : EntryKind.Expiry,
            CreatedAt = now,
            Year = grant.Year,
            UnitUscc = grant.UnitUscc,
            ProviderUscc = grant.ProviderUscc,
            GrantId = grant.Id,
            RequestId = requestId,
            Caller = caller,
            Memo = memo,
        };
        await Journal.PostAsync(db, entry,
        [
            Leg.Debit(poolId, AccountKind.Pool, held),
            Leg.Credit(grant.AccountId, AccountKind.Grant, held),
        ], ct);
        return (held, entry);
    }
}
