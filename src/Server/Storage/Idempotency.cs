using System.Security.Cryptography;
using Google.Protobuf;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Storage;

/// <summary>Runs a mutating call exactly once per (caller, request id). The claim on the id is the first write of the
/// call's transaction, so a duplicate arriving meanwhile waits on it and then reads the first outcome: the response,
/// or the refusal. Nothing of a refused call's effect remains (it is rolled back to a savepoint), but the refusal
/// itself is kept, so a retry gets the same answer.</summary>
public sealed class Idempotency(LedgerDb db, TimeProvider time)
{
    /// <summary>The outcome recorded for a call that took effect.</summary>
    public const string Ok = "OK";

    public async Task<TResponse> RunAsync<TResponse>(
        string caller,
        string requestId,
        string method,
        IMessage request,
        Func<CancellationToken, Task<TResponse>> effect,
        CancellationToken cancellationToken)
        where TResponse : IMessage<TResponse>, new()
    {
        Validate.RequestId(requestId);
        var hash = Hash(method, request);
        db.Database.AutoSavepointsEnabled = false;

        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var claimed = await db.Database.ExecuteSqlAsync(
            $"""
            INSERT INTO idempotency_records (caller, request_id, method, request_hash, created_at)
            VALUES ({caller}, {requestId}, {method}, {hash}, {time.GetUtcNow()})
            ON CONFLICT DO NOTHING
            """,
            cancellationToken);

        if (claimed == 0)
        {
            var first = await db.IdempotencyRecords.AsNoTracking()
                .SingleAsync(r => r.Caller == caller && r.RequestId == requestId, cancellationToken);
            await transaction.RollbackAsync(cancellationToken);
            return Replay<TResponse>(first, method, hash);
        }

        await transaction.CreateSavepointAsync("effect", cancellationToken);
        TResponse response;
        try
        {
            response = await effect(cancellationToken);
        }
        catch (LedgerException refusal)
        {
            await transaction.RollbackToSavepointAsync("effect", cancellationToken);
            db.ChangeTracker.Clear();
            await Record(caller, requestId, refusal.Reason.Word(), refusal.Message, null, cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            throw;
        }

        await Record(caller, requestId, Ok, null, response.ToByteArray(), cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return response;
    }

    /// <summary>Runs a call whose effect is many transactions of its own, each safe to repeat (the expiry pass: a grant
    /// no longer open and due is left as it is), exactly once per request id. The id is held by a session-level advisory
    /// lock on this call's connection, outside any transaction: a claim held in a transaction for the whole of a long
    /// pass would sit idle in it, and PostgreSQL would end it. A duplicate sent meanwhile waits for the lock, then
    /// replays the outcome the first recorded. Should this call's connection break, its lock goes with it, and a
    /// duplicate runs the effect again, which finds done what the first did.</summary>
    public async Task<TResponse> RecordAfterAsync<TResponse>(
        string caller,
        string requestId,
        string method,
        IMessage request,
        Func<CancellationToken, Task<TResponse>> effect,
        CancellationToken cancellationToken)
        where TResponse : IMessage<TResponse>, new()
    {
        Validate.RequestId(requestId);
        var hash = Hash(method, request);
        var key = $"{caller}/{requestId}";
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            await db.Database.ExecuteSqlAsync($"SELECT pg_advisory_lock({RecordAfterLockSpace}, hashtext({key}))", cancellationToken);
            try
            {
                if (await FirstAsync(caller, requestId, cancellationToken) is { Outcome: not null } first)
                {
                    return Replay<TResponse>(first, method, hash);
                }

                string outcome = Ok;
                string? message = null;
                byte[]? response = null;
                try
                {
                    response = (await effect(cancellationToken)).ToByteArray();
                }
                catch (LedgerException refusal)
                {
                    (outcome, message) = (refusal.Reason.Word(), refusal.Message);
                }

                // The effect took place: its answer is recorded even if the caller has gone meanwhile.
                await db.Database.ExecuteSqlAsync(
                    $"""
                    INSERT INTO idempotency_records (caller, request_id, method, request_hash, outcome, message, response, created_at)
                    VALUES ({caller}, {requestId}, {method}, {hash}, {outcome}, {message}, {response}, {time.GetUtcNow()})
                    ON CONFLICT DO NOTHING
                    """,
                    CancellationToken.None);
                var recorded = await FirstAsync(caller, requestId, CancellationToken.None)
                    ?? throw new InvalidOperationException($"The outcome of '{requestId}' was neither recorded nor found.");
                return Replay<TResponse>(recorded, method, hash);
            }
            finally
            {
                try
                {
                    await db.Database.ExecuteSqlAsync($"SELECT pg_advisory_unlock({RecordAfterLockSpace}, hashtext({key}))", CancellationToken.None);
                }
                catch (NpgsqlException)
                {
                    // A broken connection ended its session, and the session's locks with it.
                }
            }
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>The first key of the advisory locks <see cref="RecordAfterAsync"/> holds (the second is the request id's
    /// hash); two-key advisory locks never meet the one-key ones the server takes elsewhere.</summary>
    private const int RecordAfterLockSpace = 7_170_004;

    private Task<IdempotencyRow?> FirstAsync(string caller, string requestId, CancellationToken cancellationToken) =>
        db.IdempotencyRecords.AsNoTracking().SingleOrDefaultAsync(r => r.Caller == caller && r.RequestId == requestId, cancellationToken);

    private Task<int> Record(string caller, string requestId, string outcome, string? message, byte[]? response, CancellationToken cancellationToken) =>
        db.IdempotencyRecords
            .Where(r => r.Caller == caller && r.RequestId == requestId)
            .ExecuteUpdateAsync(s => s
                .SetProperty(r => r.Outcome, outcome)
                .SetProperty(r => r.Message, message)
                .SetProperty(r => r.Response, response), cancellationToken);

    /// <summary>The first call's outcome, for a later call with the same id: its response, its refusal, or REQUEST_ID_REUSED
    /// when the later call asks for something else.</summary>
    public static TResponse Replay<TResponse>(IdempotencyRow first, string method, byte[] hash)
        where TResponse : IMessage<TResponse>, new()
    {
        if (first.Method != method || !first.RequestHash.AsSpan().SequenceEqual(hash))
        {
            throw new LedgerException(Reason.RequestIdReused,
                $"request_id '{first.RequestId}' was already used for a different {first.Method} request; use a new id for a new request.");
        }

        if (first.Outcome == Ok && first.Response is not null)
        {
            return new MessageParser<TResponse>(() => new TResponse()).ParseFrom(first.Response);
        }

        if (first.Outcome is not null && ReasonExtensions.TryParseWord(first.Outcome, out var reason))
        {
            throw new LedgerException(reason, first.Message ?? reason.Word());
        }

        throw new InvalidOperationException($"The idempotency record of '{first.RequestId}' has no outcome.");
    }

    /// <summary>What identifies a request's content: the method and the request's bytes.</summary>
    public static byte[] Hash(string method, IMessage request)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(System.Text.Encoding.UTF8.GetBytes(method));
        sha.AppendData(request.ToByteArray());
        return sha.GetHashAndReset();
    }
}
