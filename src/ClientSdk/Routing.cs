using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Grpc.Core;

namespace QuotaLedger.Client;

/// <summary>Where a call goes among several servers on one database: the affinity key of each request, and the order of
/// the servers for a key. Pure: no I/O, no clock. Writes that lock the same rows share a key, so that one server
/// coalesces them instead of two servers taking turns at the rows' locks: Grant and FundBudget by the year (they take
/// the year's pool row); Deduct, Release and Gift by the grant's unit-year when the client has learnt it (else by the
/// grant). Every other call has no key and may go anywhere. Correctness never rests on this: PostgreSQL's row locks do.</summary>
internal static class Affinity
{
    /// <summary>The affinity key of a request, or null when it may go to any server (reads, dry runs, registry calls).</summary>
    public static string? KeyOf(object request, GrantPlaces places, int ledgerYear) => request switch
    {
        V1.GrantRequest { DryRun: false } => YearKey(ledgerYear),
        V1.FundBudgetRequest fund => YearKey(fund.Year),
        V1.DeductRequest { DryRun: false } deduct => GrantKey(deduct.GrantId, places),
        V1.ReleaseRequest release => GrantKey(release.GrantId, places),
        V1.GiftRequest gift => GrantKey(gift.GrantId, places),
        _ => null,
    };

    public static string YearKey(int year) => $"year/{year}";

    public static string UnitYearKey(string unitUscc, int year) => $"unit-year/{unitUscc}/{year}";

    private static string GrantKey(long grantId, GrantPlaces places) =>
        places.TryGet(grantId, out var place) ? UnitYearKey(place.UnitUscc, place.Year) : $"grant/{grantId}";

    /// <summary>The servers in the order a key prefers them (rendezvous hashing): every client with the same servers, in
    /// any order and in any process, agrees on it; a server added or removed moves only the keys it gains or held.</summary>
    public static int[] Rank(string key, IReadOnlyList<string> servers)
    {
        var scores = servers.Select(server => Score(key, server)).ToArray();
        var order = Enumerable.Range(0, servers.Count).ToArray();
        Array.Sort(order, (a, b) => scores[b].CompareTo(scores[a]));
        return order;
    }

    /// <summary>A stable 64-bit hash of the key and the server: FNV-1a over the UTF-8 bytes, then the SplitMix64
    /// finalizer to spread it (string.GetHashCode differs in every process).</summary>
    public static ulong Score(string key, string server)
    {
        var hash = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(key + "\n" + server))
        {
            hash = (hash ^ b) * 1099511628211UL;
        }

        hash = (hash ^ (hash >> 30)) * 0xBF58476D1CE4E5B9UL;
        hash = (hash ^ (hash >> 27)) * 0x94D049BB133111EBUL;
        return hash ^ (hash >> 31);
    }

    /// <summary>The ledger's year now: the calendar year in China Standard Time (UTC+8, no daylight saving).</summary>
    public static int LedgerYear(DateTimeOffset now) => now.ToOffset(TimeSpan.FromHours(8)).Year;
}

/// <summary>Which unit-year each grant belongs to, as the client learnt it from the ledger's answers (Grant, Deduct,
/// Release, Gift, GetGrant), so that a grant's writes go where its unit-year's go. Bounded: when the newer half is
/// full it becomes the older half and the oldest half is forgotten; a grant looked up there moves back to the newer.
/// A grant forgotten is routed by its id until an answer teaches it again.</summary>
internal sealed class GrantPlaces(int capacity)
{
    private readonly object _turn = new();
    private ConcurrentDictionary<long, (string UnitUscc, int Year)> _newer = new();
    private ConcurrentDictionary<long, (string UnitUscc, int Year)> _older = new();
    private int _newerCount;

    public void Learn(long grantId, string unitUscc, int year)
    {
        if (grantId <= 0 || unitUscc.Length == 0 || year <= 0)
        {
            return;
        }

        var newer = _newer;
        if (newer.TryAdd(grantId, (unitUscc, year)) && Interlocked.Increment(ref _newerCount) > capacity / 2)
        {
            lock (_turn)
            {
                if (ReferenceEquals(newer, _newer))
                {
                    _older = newer;
                    _newer = new();
                    _newerCount = 0;
                }
            }
        }
    }

    public bool TryGet(long grantId, out (string UnitUscc, int Year) place)
    {
        if (_newer.TryGetValue(grantId, out place))
        {
            return true;
        }

        if (_older.TryGetValue(grantId, out place))
        {
            Learn(grantId, place.UnitUscc, place.Year);
            return true;
        }

        return false;
    }

    /// <summary>Learns what an answer says about grants' unit-years.</summary>
    public void LearnFrom(object request, object response)
    {
        switch (response)
        {
            case V1.GrantResponse { UnitYear: { } unitYear } grant:
                Learn(grant.GrantId, unitYear.UnitUscc, unitYear.Year);
                break;
            case V1.DeductResponse { UnitYear: { } unitYear } when request is V1.DeductRequest deduct:
                Learn(deduct.GrantId, unitYear.UnitUscc, unitYear.Year);
                break;
            case V1.ReleaseResponse { UnitYear: { } unitYear } release:
                Learn(release.GrantId, unitYear.UnitUscc, unitYear.Year);
                break;
            case V1.GiftResponse gift:
                if (gift.Grant is { } given)
                {
                    Learn(given.GrantId, given.UnitUscc, given.Year);
                }

                if (gift.OperatorUnitYear is { } source)
                {
                    Learn(gift.SourceGrantId, source.UnitUscc, source.Year);
                }

                break;
            case V1.GrantInfo info:
                Learn(info.GrantId, info.UnitUscc, info.Year);
                break;
        }
    }
}

/// <summary>Carries each call to one of several servers on one database (<see cref="QuotaLedgerClientOptions.Addresses"/>):
/// a call with an affinity key to the first server its key prefers that is not passed over, any other call round-robin.
/// A server that could not be connected to is passed over for a while, so its keys fall over to the next server in their
/// order; the client's retries (same request id) then reach that one. Names the server on the attempt's span.</summary>
internal sealed class RoutingCallInvoker : CallInvoker
{
    /// <summary>How long a server that could not be connected to is passed over before calls try it again.</summary>
    public static readonly TimeSpan PassOver = TimeSpan.FromSeconds(5);

    /// <summary>How many grants' unit-years a client remembers, at most.</summary>
    public const int GrantsRemembered = 200_000;

    private readonly CallInvoker[] _invokers;
    private readonly Uri[] _addresses;
    private readonly string[] _names;
    private readonly long[] _passedOverUntil;
    private readonly TimeProvider _time;
    private int _next = -1;

    /// <param name="servers">Each server's address (its identity for the key order) and the invoker that reaches it.</param>
    /// <param name="time">The clock for passing over and for the ledger's year.</param>
    /// <param name="places">What the client has learnt of grants' unit-years.</param>
    public RoutingCallInvoker(IReadOnlyList<(Uri Address, CallInvoker Invoker)> servers, TimeProvider time, GrantPlaces places)
    {
        _invokers = [.. servers.Select(s => s.Invoker)];
        _addresses = [.. servers.Select(s => s.Address)];
        _names = [.. servers.Select(s => s.Address.AbsoluteUri)];
        _passedOverUntil = new long[servers.Count];
        _time = time;
        Places = places;
    }

    public GrantPlaces Places { get; }

    /// <summary>The server a request goes to now.</summary>
    public int Choose(object? request)
    {
        var now = _time.GetTimestamp();
        if (request is not null && Affinity.KeyOf(request, Places, Affinity.LedgerYear(_time.GetUtcNow())) is { } key)
        {
            var order = Affinity.Rank(key, _names);
            return order.FirstOrDefault(server => !PassedOver(server, now), order[0]);
        }

        var start = Interlocked.Increment(ref _next);
        for (var i = 0; i < _invokers.Length; i++)
        {
            var server = (int)((uint)(start + i) % (uint)_invokers.Length);
            if (!PassedOver(server, now))
            {
                return server;
            }
        }

        return (int)((uint)start % (uint)_invokers.Length);
    }

    private bool PassedOver(int server, long now) => Interlocked.Read(ref _passedOverUntil[server]) > now;

    /// <summary>A failure that says the server could not be connected to passes it over for <see cref="PassOver"/>.</summary>
    private void Observe(int server, RpcException error)
    {
        if (QuotaLedgerClient.NeverConnected(error))
        {
            Interlocked.Exchange(ref _passedOverUntil[server], _time.GetTimestamp() + (long)(PassOver.TotalSeconds * _time.TimestampFrequency));
        }
    }

    /// <summary>Chooses the server of a call, and names it on the attempt's span.</summary>
    private int Route(object? request)
    {
        var server = Choose(request);
        // The attempt's client span names the server that carries it.
        if (Activity.Current is { Kind: ActivityKind.Client } span && span.Source == QuotaLedgerTelemetry.Source)
        {
            span.SetTag("server.address", _addresses[server].Host);
            span.SetTag("server.port", _addresses[server].Port);
        }

        return server;
    }

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        var server = Route(request);
        try
        {
            var response = _invokers[server].BlockingUnaryCall(method, host, options, request);
            Places.LearnFrom(request, response);
            return response;
        }
        catch (RpcException error)
        {
            Observe(server, error);
            throw;
        }
    }

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        var server = Route(request);
        var call = _invokers[server].AsyncUnaryCall(method, host, options, request);
        return new AsyncUnaryCall<TResponse>(AnswerAsync(server, request, call.ResponseAsync), call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    private async Task<TResponse> AnswerAsync<TRequest, TResponse>(int server, TRequest request, Task<TResponse> answer)
        where TRequest : class
        where TResponse : class
    {
        try
        {
            var response = await answer.ConfigureAwait(false);
            Places.LearnFrom(request, response);
            return response;
        }
        catch (RpcException error)
        {
            Observe(server, error);
            throw;
        }
    }

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options,
        TRequest request) => _invokers[Route(request: null)].AsyncServerStreamingCall(method, host, options, request);

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host,
        CallOptions options) => _invokers[Route(request: null)].AsyncClientStreamingCall(method, host, options);

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host,
        CallOptions options) => _invokers[Route(request: null)].AsyncDuplexStreamingCall(method, host, options);
}
