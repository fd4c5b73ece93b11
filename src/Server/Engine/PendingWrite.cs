using System.Diagnostics;
using Google.Protobuf;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Engine;

/// <summary>A row a write holds locked while its transaction runs: a year's pool, or a unit-year. The queue keeps one
/// transaction of this process per lane at a time, which is what lets it coalesce: a lane's waiting writes share one
/// lock and one commit.</summary>
internal readonly record struct Lane(LaneKind Kind, long Id)
{
    public static Lane Pool(int year) => new(LaneKind.Pool, year);

    public static Lane UnitYear(long id) => new(LaneKind.UnitYear, id);

    public override string ToString() => $"{Kind} {Id}";
}

internal enum LaneKind
{
    Pool,
    UnitYear,
}

/// <summary>A write waiting in the <see cref="WriteQueue"/>: its request, the lanes it needs, and where its answer goes
/// once the transaction that decided it has committed. A write with no lanes (a grant of an unknown contract, a deduction
/// of an unknown grant) is decided by a batch of its own, which records its refusal.</summary>
internal abstract class PendingWrite
{
    protected PendingWrite(string method, string by, string requestId, IMessage sent)
    {
        Method = method;
        Key = (by, requestId);
        Hash = Idempotency.Hash(method, sent);
    }

    /// <summary>The gRPC method, as its request id's record names it.</summary>
    public string Method { get; }

    public (string Caller, string RequestId) Key { get; }

    public byte[] Hash { get; }

    public abstract IReadOnlyList<Lane> Lanes { get; }

    /// <summary>Whether its outcome is recorded against its request id, and a write sent again with that id replays it.
    /// A write of a pass (the expiry pass) shares the pass's request id with many others, and is not.</summary>
    public virtual bool Recorded => true;

    /// <summary>Its place in the queue while it waits there; null once a worker has taken it (or it was withdrawn).</summary>
    public LinkedListNode<PendingWrite>? Node { get; set; }

    /// <summary>The span of the call that sent it, if any, which its transaction's span links to.</summary>
    public ActivityContext CallContext { get; } = Activity.Current?.Context ?? default;

    public TaskCompletionSource<IMessage> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>A deduction (Art 10): the unit-year its grant belongs to, null when there is no such grant of the caller's.</summary>
internal sealed class PendingDeduction(DeductionRequest request, long? unitYearId)
    : PendingWrite(nameof(LedgerGrpcService.Deduct), request.By, request.RequestId, request.Sent)
{
    public DeductionRequest Request { get; } = request;

    public long? UnitYearId { get; } = unitYearId;

    public override IReadOnlyList<Lane> Lanes { get; } = unitYearId is { } id ? [Lane.UnitYear(id)] : [];
}

/// <summary>Where a grant lands, resolved once per contract and year: the contract (its id and unit), and the unit-year,
/// created on first use.</summary>
internal readonly record struct GrantTarget(long ContractId, string Unit, int Year, long UnitYearId);

/// <summary>A grant (Art 9): its target, null when the provider has no such contract.</summary>
internal sealed class PendingGrant(GrantCall call, GrantRequest sent, int year, GrantTarget? target)
    : PendingWrite(nameof(LedgerGrpcService.Grant), call.By, call.RequestId, sent)
{
    public GrantCall Call { get; } = call;

    /// <summary>The year the grant is made in (China time, when it was sent).</summary>
    public int Year { get; } = year;

    public GrantTarget? Target { get; } = target;

    public override IReadOnlyList<Lane> Lanes { get; } = target is { } t ? [Lane.Pool(t.Year), Lane.UnitYear(t.UnitYearId)] : [];
}

/// <summary>A grant the provider hands back before its expiry, with the joint statement that settles it: what it holds
/// returns to its year's pool. <see cref="Grant"/> is where the grant lives, null when there is no such grant of the
/// caller's.</summary>
internal sealed class PendingRelease(ReleaseCall call, ReleaseRequest sent, GrantHome? grant)
    : PendingWrite(nameof(LedgerGrpcService.Release), call.By, call.RequestId, sent)
{
    public ReleaseCall Call { get; } = call;

    public GrantHome? Grant { get; } = grant;

    public override IReadOnlyList<Lane> Lanes { get; } = grant is { } g ? [Lane.Pool(g.Year), Lane.UnitYear(g.UnitYearId)] : [];
}

/// <summary>A gift (Art 15): queued on the operator's unit-year, which its grant belongs to, and the resident's (made on
/// first use). <see cref="Source"/> is where the grant lives, null when there is no such grant of the operator's;
/// <see cref="ResidentUnitYearId"/> is null when the resident is no unit.</summary>
internal sealed class PendingGift(GiftCall call, GiftRequest sent, GrantHome? source, long? residentUnitYearId)
    : PendingWrite(nameof(LedgerGrpcService.Gift), call.By, call.RequestId, sent)
{
    public GiftCall Call { get; } = call;

    public GrantHome? Source { get; } = source;

    public long? ResidentUnitYearId { get; } = residentUnitYearId;

    public override IReadOnlyList<Lane> Lanes { get; } = source is { } s
        ? [Lane.UnitYear(s.UnitYearId), .. residentUnitYearId is { } r ? new[] { Lane.UnitYear(r) } : []]
        : [];
}

/// <summary>A grant past its expiry, closed by the expiry pass (Art 10, 11): what it holds returns to its year's pool,
/// queued on that pool and the grant's unit-year as a release is. Its outcome is not recorded against the pass's request
/// id, which many expiries share: deciding one again is harmless, since a grant that is no longer open and due is left
/// as it is (<see cref="ExpiryRules.Decide"/>).</summary>
internal sealed class PendingExpiry(long grantId, GrantHome home, string requestId, string caller)
    : PendingWrite(Ledger.Expiry.Method, caller, requestId, new Google.Protobuf.WellKnownTypes.Int64Value { Value = grantId })
{
    public long GrantId { get; } = grantId;

    public GrantHome Home { get; } = home;

    public override bool Recorded => false;

    public override IReadOnlyList<Lane> Lanes { get; } = [Lane.Pool(home.Year), Lane.UnitYear(home.UnitYearId)];
}

/// <summary>Where a grant lives, which never changes: its year, contract and unit-year, and whose it is.</summary>
internal readonly record struct GrantHome(string Provider, string Unit, int Year, long ContractId, long UnitYearId);

/// <summary>What a transaction decided for one write: its response, or its refusal; or, when a row it needs was locked
/// by another session and the transaction did not wait, nothing yet (<see cref="Deferred"/>).
/// <see cref="Replayed"/>: the request id's first outcome answered again, nothing decided now.</summary>
internal readonly record struct WriteOutcome(IMessage? Response, LedgerException? Refusal, bool Replayed = false)
{
    public static WriteOutcome NotYet { get; } = new(null, null);

    public bool Deferred => Response is null && Refusal is null;
}
