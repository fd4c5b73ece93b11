using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Ledger;

internal static class Grants
{
    /// <summary>A grant's status at <paramref name="now"/>: past its expiry it is EXPIRED even before the expiry pass has run.</summary>
    public static GrantStatus StatusOf(GrantRow grant, long remainingFen, DateTimeOffset now) => grant.State switch
    {
        GrantState.Released => GrantStatus.Released,
        GrantState.Expired => GrantStatus.Expired,
        _ when now >= grant.ExpiresAt => GrantStatus.Expired,
        _ when remainingFen == 0 => GrantStatus.Exhausted,
        _ => GrantStatus.Open,
    };

    /// <summary>Locks the grant's unit-year (the lock every change of the grant takes), then reads the grant with its
    /// account; null when there is no such grant.</summary>
    public static async Task<(UnitYearRow UnitYear, GrantRow Grant)?> LockAsync(LedgerDb db, long grantId, CancellationToken ct)
    {
        if (await UnitYears.LockForGrantAsync(db, grantId, ct) is not { } unitYear)
        {
            return null;
        }

        return (unitYear, await db.Grants.AsNoTracking().Include(g => g.Account).SingleAsync(g => g.Id == grantId, ct));
    }

    /// <summary>Locks a grant's unit-year and reads the grant, which must be the provider's own.</summary>
    public static async Task<(UnitYearRow UnitYear, GrantRow Grant)> LockOwnAsync(LedgerDb db, string provider, long grantId, CancellationToken ct)
    {
        var (unitYear, grant) = await LockAsync(db, grantId, ct) ?? throw LedgerGrpcService.UnknownGrant(grantId);
        return grant.ProviderUscc == provider ? (unitYear, grant) : throw NotOwn(grant, provider);
    }

    public static LedgerException NotOwn(GrantRow grant, string provider) =>
        new(Reason.NotYourResource, $"Grant {grant.Id} was not made by provider {provider}.");

    public static async Task<GrantInfo?> InfoAsync(LedgerDb db, long grantId, DateTimeOffset now, CancellationToken ct)
    {
        var row = await db.Grants.AsNoTracking()
            .Where(g => g.Id == grantId)
            .Select(g => new { Grant = g, g.Account!.BalanceFen, ContractNo = db.Contracts.Where(c => c.Id == g.ContractId).Select(c => c.ContractNo).Single() })
            .SingleOrDefaultAsync(ct);
        if (row is null)
        {
            return null;
        }

        var grant = row.Grant;
        var deducted = await db.Deductions.Where(d => d.GrantId == grantId).SumAsync(d => d.AppliedFen, ct);
        return new GrantInfo
        {
            GrantId = grant.Id,
            ProviderUscc = grant.ProviderUscc,
            UnitUscc = grant.UnitUscc,
            ContractNo = row.ContractNo,
            Year = grant.Year,
            RatioBp = grant.RatioBp,
            AmountFen = grant.AmountFen,
            RemainingFen = row.BalanceFen,
            DeductedFen = deducted,
            ReturnedFen = grant.ReturnedFen,
            Status = StatusOf(grant, row.BalanceFen, now),
            GrantedAt = grant.GrantedAt.ToTimestamp(),
            ExpiresAt = grant.ExpiresAt.ToTimestamp(),
            GiftedFromGrantId = grant.GiftedFromGrantId ?? 0,
            StatementRef = grant.StatementRef ?? "",
        };
    }
}
