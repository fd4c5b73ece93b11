using System.Diagnostics;
using Google.Protobuf;
using Npgsql;
using QuotaLedger.Server.Grpc;
using QuotaLedger.Server.Ledger;
using QuotaLedger.Server.Posting;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;
using QuotaLedger.Server.Telemetry;
using QuotaLedger.V1;
using AlertKind = QuotaLedger.Server.Storage.AlertKind;
using EntryKind = QuotaLedger.Server.Storage.EntryKind;

namespace QuotaLedger.Server.Engine;

/// <summary>One or many writes in one transaction: facts, then each write decided in arrival order by its operation's
/// pure rule function against the running state, then one plan written by one writer (<see cref="WritePlan"/>). Two
/// round trips: the first locks the rows in <see cref="LockOrder"/> and reads every fact the rules need; the second
/// writes and commits. Without waiting for locks, rows another session holds are skipped, and the writes that need them
/// are left undecided (<see cref="WriteOutcome.Deferred"/>), nothing of them written. A write its rules refuse is refused
/// alone: its refusal is recorded against its request id and nothing of it is written. An error of the transaction as
/// a whole (a deadlock, a unique violation raced in by another transaction) throws, and nothing of the batch is kept.
/// A single write is a batch of one: the same rules, the same statements.</summary>
internal static class WriteBatch
{
    /// <summary>Applies the writes on <paramref name="connection"/>, which is open and in no transaction, and leaves
    /// it so. With <paramref name="waitForLocks"/> it waits for every lock (at most the session's lock_timeout, after
    /// which it throws); without, the writes whose rows another session holds come back deferred.</summary>
    public static async Task<WriteOutcome[]> RunAsync(
        NpgsqlConnection connection, IReadOnlyList<PendingWrite> items, DateTimeOffset now, bool waitForLocks, LedgerMetrics metrics, CancellationToken ct)
    {
        now = Chain.ToStoredPrecision(now);
        // The transaction metrics are the deductions' (their names say so): a batch of grants alone is not counted.
        var measured = items.Any(i => i is PendingDeduction);
        if (measured)
        {
            metrics.BatchStarted(items.Count, waitForLocks);
        }

        using var activity = ServerTelemetry.Source.HasListeners() ? StartActivity(items, waitForLocks) : null;
        try
        {
            var facts = await WriteFacts.ReadAsync(connection, items, now, waitForLocks ? Reading.Locked : Reading.SkipLocked, ct);
            if (measured)
            {
                metrics.LocksHeld(facts.LockWait, waitForLocks);
            }

            var plan = Decide(facts, items, now);
            var writing = Stopwatch.GetTimestamp();
            await plan.WriteAndCommitAsync(connection, now, ct);
            if (measured)
            {
                metrics.Committed(Stopwatch.GetElapsedTime(writing), waitForLocks);
            }

            metrics.Committed(plan.Outcomes.Where((_, i) => items[i] is PendingDeduction));
            activity?.SetTag("quotaledger.deductions.applied", plan.Deductions.Count).SetTag("quotaledger.grants.applied", plan.Grants.Count);
            return plan.Outcomes;
        }
        catch (Exception e)
        {
            activity?.SetStatus(ActivityStatusCode.Error, e.Message).SetTag(LedgerMetrics.Tags.ErrorType, LedgerMetrics.ErrorType(e));
            await RollBackQuietlyAsync(connection);
            throw;
        }
    }

    /// <summary>The transaction's span: a child of the call's when it runs in one (a batch of one), else a root linked
    /// to every call it serves (a worker's coalesced batch). Made only while a listener is there.</summary>
    private static Activity? StartActivity(IReadOnlyList<PendingWrite> items, bool waitForLocks)
    {
        var links = items.Where(i => i.CallContext != default && i.CallContext != Activity.Current?.Context)
            .Select(i => new ActivityLink(i.CallContext)).ToList();
        return ServerTelemetry.Source.StartActivity(ActivityKind.Internal, links: links, name: "WriteBatch")
            ?.SetTag("quotaledger.deductions.batch.size", items.Count)
            .SetTag(LedgerMetrics.Tags.Locking, waitForLocks ? "wait" : "skip_locked");
    }

    /// <summary>Each write in arrival order: a replay of its request id's first outcome, else its operation's decision
    /// against the running state, which the plan then carries out.</summary>
    private static WritePlan Decide(WriteFacts facts, IReadOnlyList<PendingWrite> items, DateTimeOffset now)
    {
        var plan = new WritePlan(items.Count);
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            if (!facts.Holds(item))
            {
                plan.Outcomes[i] = WriteOutcome.NotYet;
                continue;
            }

            if (item.Recorded && (plan.Decided.TryGetValue(item.Key, out var first) || facts.Earlier.TryGetValue(item.Key, out first)))
            {
                plan.Outcomes[i] = Replay(first, item, facts.Invoices);
                continue;
            }

            var outcome = item switch
            {
                PendingDeduction deduction => Deduct(facts, plan, deduction, now),
                PendingGrant grant => Grant(facts, plan, grant, now),
                PendingRelease release => Release(facts, plan, release, now),
                PendingExpiry expiry => Expire(facts, plan, expiry, now),
                PendingGift gift => Gift(facts, plan, gift, now),
                _ => throw new InvalidOperationException($"No rules for {item.GetType().Name}."),
            };
            plan.Outcomes[i] = outcome;
            if (!item.Recorded)
            {
                continue;
            }

            plan.Decided.Add(item.Key, new IdempotencyRow
            {
                Caller = item.Key.Caller,
                RequestId = item.Key.RequestId,
                Method = item.Method,
                RequestHash = item.Hash,
                Outcome = outcome.Refusal is { } r ? r.Reason.Word() : Idempotency.Ok,
                Message = outcome.Refusal?.Message,
                Response = outcome.Response?.ToByteArray(),
            });
        }

        return plan;
    }

    private static WriteOutcome Deduct(WriteFacts facts, WritePlan plan, PendingDeduction item, DateTimeOffset now)
    {
        var request = item.Request;
        var (grant, contract, earlier) = DeductionFactsOf(facts, request);
        var decision = Deductions.Decide(request.Claim, grant, contract, earlier, now);
        if (decision.Refusal is { } refusal)
        {
            return new WriteOutcome(null, refusal);
        }

        // Every rule passed: the deduction takes effect in the running state.
        var (requested, applied) = (decision.Requested, decision.Applied);
        var unitYear = facts.UnitYears[grant!.UnitYearId];
        var (deductionId, entryId) = (facts.DeductionIds.Dequeue(), facts.EntryIds.Dequeue());
        plan.Deductions.Add(new DeductionRow
        {
            Id = deductionId,
            GrantId = grant.Id,
            ProviderUscc = request.Provider,
            InvoiceNo = request.InvoiceNo,
            InvoiceAmountFen = request.InvoiceAmount.Value,
            InvoiceDate = request.InvoiceDate,
            RequestedFen = requested.Value,
            AppliedFen = applied.Value,
            CreatedAt = now,
        });
        var entry = plan.Post(facts, unitYear.Id, new JournalEntryRow
        {
            Id = entryId,
            Kind = EntryKind.Deduction,
            CreatedAt = now,
            Year = grant.Year,
            UnitUscc = grant.Unit,
            ProviderUscc = request.Provider,
            GrantId = grant.Id,
            DeductionId = deductionId,
            RequestId = request.RequestId,
            Caller = request.By,
            Memo = $"invoice {request.InvoiceNo}",
        }, [(unitYear.DeductedAccountId, applied.Value), (grant.AccountId, -applied.Value)]);

        grant.BalanceFen = checked(grant.BalanceFen - applied.Value);
        contract!.InvoicedFen = checked(contract.InvoicedFen + request.InvoiceAmount.Value);
        plan.InvoicedDeltas[contract.Id] = checked(plan.InvoicedDeltas.GetValueOrDefault(contract.Id) + request.InvoiceAmount.Value);
        facts.Invoices.Add((request.Provider, request.InvoiceNo), new EarlierDeduction(deductionId, grant.Id));
        var before = facts.Figures[unitYear.Id];
        var figures = before with { GrantedOpen = before.GrantedOpen - applied, Deducted = before.Deducted + applied };
        facts.Figures[unitYear.Id] = figures;
        // A deduction moves quota from open to deducted, both committed: no figure an alert watches changes.
        return new WriteOutcome(new DeductResponse
        {
            DeductionId = deductionId,
            RequestedFen = requested.Value,
            AppliedFen = applied.Value,
            GrantRemainingFen = grant.BalanceFen,
            UnitYear = figures.ToApi(),
            Receipt = entry.ToReceipt(),
        }, null);
    }

    private static WriteOutcome Grant(WriteFacts facts, WritePlan plan, PendingGrant item, DateTimeOffset now)
    {
        var call = item.Call;
        var grantFacts = GrantFactsOf(facts, item);
        var decision = GrantRules.Decide(call, grantFacts, now);
        if (decision.Refusal is { } refusal)
        {
            return new WriteOutcome(null, refusal);
        }

        var target = item.Target!.Value;
        var contract = facts.Contracts[target.ContractId];
        var pool = facts.Pools[target.Year];
        var amount = call.Amount;
        // The rules count what due grants hold as returned; the rows hold it until the expiry pass (run before a grant
        // is queued) has moved it. A grant the stored rows cannot hold yet is refused as the rows would refuse it.
        if (contract.GrantedFen + amount.Value > decision.ContractQuota.Value)
        {
            return new WriteOutcome(null, GrantRules.ContractQuotaExceeded(call, grantFacts.Contract!, decision.Ratio, decision.ContractQuota));
        }

        if (pool.BalanceFen < amount.Value)
        {
            return new WriteOutcome(null, new LedgerException(Reason.BudgetExhausted,
                $"The {target.Year} budget pool holds {new Fen(pool.BalanceFen)} until the expiry pass returns what expired grants hold; {amount} cannot be granted from it now."));
        }

        var ((grantId, accountId), entryId) = (facts.GrantIds.Dequeue(), facts.EntryIds.Dequeue());
        var grant = new GrantRow
        {
            Id = grantId,
            ContractId = contract.Id,
            ProviderUscc = call.Provider,
            UnitUscc = target.Unit,
            Year = target.Year,
            UnitYearId = target.UnitYearId,
            AccountId = accountId,
            RatioBp = decision.Ratio.Value,
            AmountFen = amount.Value,
            GrantedAt = now,
            ExpiresAt = decision.ExpiresAt,
        };
        plan.Grants.Add(grant);
        var entry = plan.Post(facts, target.UnitYearId, new JournalEntryRow
        {
            Id = entryId,
            Kind = EntryKind.Grant,
            CreatedAt = now,
            Year = target.Year,
            UnitUscc = target.Unit,
            ProviderUscc = call.Provider,
            GrantId = grantId,
            RequestId = call.RequestId,
            Caller = call.By,
            Memo = $"grant on contract {call.ContractNo}",
        }, [(accountId, amount.Value), (pool.Id, -amount.Value)]);

        contract.GrantedFen = checked(contract.GrantedFen + amount.Value);
        plan.GrantedDeltas[contract.Id] = checked(plan.GrantedDeltas.GetValueOrDefault(contract.Id) + amount.Value);
        pool.BalanceFen = checked(pool.BalanceFen - amount.Value);
        var before = facts.Figures[target.UnitYearId];
        var figures = before with { GrantedOpen = before.GrantedOpen + amount };
        facts.Figures[target.UnitYearId] = figures;

        WatchFigures(facts, plan, pool, figures, call.Provider, entry);

        return new WriteOutcome(new GrantResponse
        {
            GrantId = grantId,
            AmountFen = amount.Value,
            ExpiresAt = decision.ExpiresAt.ToTimestamp(),
            GrantedAt = now.ToTimestamp(),
            RatioBp = decision.Ratio.Value,
            UnitYear = figures.ToApi(),
            Receipt = entry.ToReceipt(),
        }, null);
    }

    /// <summary>A release (Art 11): the grant closes, and what it holds returns to its year's pool in one entry, no
    /// longer committed on its contract or counted against its unit-year's cap.</summary>
    private static WriteOutcome Release(WriteFacts facts, WritePlan plan, PendingRelease item, DateTimeOffset now)
    {
        var call = item.Call;
        var grant = facts.Grants.GetValueOrDefault(call.GrantId);
        var decision = Releases.Decide(call, grant, now);
        if (decision.Refusal is { } refusal)
        {
            return new WriteOutcome(null, refusal);
        }

        var (figures, entry) = ReturnToPool(facts, plan, grant!, item.Grant!.Value, GrantState.Released, decision.Returned, call.StatementRef,
            call.RequestId, call.By, $"released, joint statement {call.StatementRef}", now);
        return new WriteOutcome(new ReleaseResponse
        {
            GrantId = grant!.Id,
            ReleasedFen = decision.Returned.Value,
            UnitYear = figures.ToApi(),
            Receipt = entry?.ToReceipt(),
        }, null);
    }

    /// <summary>An expiry (Art 10, 11): a grant still open and past its expiry closes, and what it holds returns to its
    /// year's pool in one entry, as a release's does. A grant that is not (another pass, a release, or nothing to do)
    /// is left as it is: zero expired.</summary>
    private static WriteOutcome Expire(WriteFacts facts, WritePlan plan, PendingExpiry item, DateTimeOffset now)
    {
        var grant = facts.Grants.GetValueOrDefault(item.GrantId);
        if (ExpiryRules.Decide(grant, now) is not { } returned)
        {
            return new WriteOutcome(new ExpireDueGrantsResponse(), null);
        }

        ReturnToPool(facts, plan, grant!, item.Home, GrantState.Expired, returned, statementRef: null,
            item.Key.RequestId, item.Key.Caller, $"expired at {grant!.ExpiresAt:u}", now);
        return new WriteOutcome(new ExpireDueGrantsResponse { ExpiredGrants = 1, ReturnedFen = returned.Value }, null);
    }

    /// <summary>Closes a grant (released or expired): what it holds returns to its year's pool in one entry (none when it
    /// holds nothing), no longer committed on its contract or counted against its unit-year's cap (Art 11: reclaimed
    /// for reuse). Returns the unit-year's figures after it, and the entry.
    /// <para>The figures the rules read already count a due grant as returned (expiry takes effect at expires_at): an
    /// expiry moves the stored rows to where the figures are, so it leaves the unit-year's open quota, the pool net of
    /// due grants and the contract's commitment as they are, and only moves what the due grant held from "due" to the
    /// stored balances. A release closes a live grant: its quota leaves the figures now.</para></summary>
    private static (UnitYearFigures Figures, JournalEntryRow? Entry) ReturnToPool(WriteFacts facts, WritePlan plan, GrantFacts grant, GrantHome home,
        GrantState closedAs, Fen returned, string? statementRef, string requestId, string caller, string memo, DateTimeOffset now)
    {
        var entryId = facts.EntryIds.Dequeue();
        grant.State = closedAs;
        grant.BalanceFen = 0;
        plan.Closes.Add(new GrantClose(grant.Id, closedAs, returned.Value, statementRef));
        var expired = closedAs == GrantState.Expired;
        var before = facts.Figures[home.UnitYearId];
        var figures = expired ? before : before with { GrantedOpen = before.GrantedOpen - returned };
        facts.Figures[home.UnitYearId] = figures;
        if (!returned.IsPositive)
        {
            return (figures, null);
        }

        var contract = facts.Contracts[grant.ContractId];
        var pool = facts.Pools[grant.Year];
        var entry = plan.Post(facts, home.UnitYearId, new JournalEntryRow
        {
            Id = entryId,
            Kind = closedAs == GrantState.Released ? EntryKind.Release : EntryKind.Expiry,
            CreatedAt = now,
            Year = grant.Year,
            UnitUscc = grant.Unit,
            ProviderUscc = grant.Provider,
            GrantId = grant.Id,
            RequestId = requestId,
            Caller = caller,
            Memo = memo,
        }, [(pool.Id, returned.Value), (grant.AccountId, -returned.Value)]);
        contract.GrantedFen = checked(contract.GrantedFen - returned.Value);
        plan.GrantedDeltas[contract.Id] = checked(plan.GrantedDeltas.GetValueOrDefault(contract.Id) - returned.Value);
        pool.BalanceFen = checked(pool.BalanceFen + returned.Value);
        if (expired)
        {
            // What the due grant held was counted as returned already (net of due grants); now it is stored so.
            pool.LapsedFen = checked(pool.LapsedFen - returned.Value);
            if (facts.LapsedOnContract.TryGetValue(contract.Id, out var lapsed))
            {
                facts.LapsedOnContract[contract.Id] = checked(lapsed - returned.Value);
            }
        }

        WatchFigures(facts, plan, pool, figures, grant.Provider, entry);
        return (figures, entry);
    }

    /// <summary>A gift (Art 15): the resident gets a new grant of the operator's grant's provider, contract, ratio, year
    /// and expiry, holding the amount, which leaves the operator's grant in one entry on the operator's chain. The
    /// operator's unit-year commits less and the resident's more; the pool and the contract do not move.</summary>
    private static WriteOutcome Gift(WriteFacts facts, WritePlan plan, PendingGift item, DateTimeOffset now)
    {
        var call = item.Call;
        var giftFacts = GiftFactsOf(facts, item);
        if (Gifts.Decide(call, giftFacts, now) is { } refusal)
        {
            return new WriteOutcome(null, refusal);
        }

        var (source, residentUnitYearId, amount) = (giftFacts.Source!, item.ResidentUnitYearId!.Value, call.Amount);
        var ((grantId, accountId), entryId) = (facts.GrantIds.Dequeue(), facts.EntryIds.Dequeue());
        var gift = new GrantRow
        {
            Id = grantId,
            ContractId = source.ContractId,
            ProviderUscc = source.Provider,
            UnitUscc = call.Resident,
            Year = source.Year,
            UnitYearId = residentUnitYearId,
            AccountId = accountId,
            RatioBp = source.RatioBp,
            AmountFen = amount.Value,
            GrantedAt = now,
            ExpiresAt = source.ExpiresAt,
            GiftedFromGrantId = source.Id,
        };
        plan.Grants.Add(gift);
        var entry = plan.Post(facts, source.UnitYearId, new JournalEntryRow
        {
            Id = entryId,
            Kind = EntryKind.Gift,
            CreatedAt = now,
            Year = source.Year,
            UnitUscc = call.Operator,
            ProviderUscc = source.Provider,
            GrantId = source.Id,
            CounterpartyUscc = call.Resident,
            CounterpartyGrantId = grantId,
            RequestId = call.RequestId,
            Caller = call.By,
            Memo = $"OPC gift to resident {call.Resident}",
        }, [(accountId, amount.Value), (source.AccountId, -amount.Value)]);

        source.BalanceFen = checked(source.BalanceFen - amount.Value);
        var operatorBefore = facts.Figures[source.UnitYearId];
        var operatorFigures = operatorBefore with { GrantedOpen = operatorBefore.GrantedOpen - amount };
        facts.Figures[source.UnitYearId] = operatorFigures;
        var residentBefore = facts.Figures[residentUnitYearId];
        var residentFigures = residentBefore with { GrantedOpen = residentBefore.GrantedOpen + amount };
        facts.Figures[residentUnitYearId] = residentFigures;
        WatchUnitYear(facts, plan, operatorFigures, source.Provider, entry);
        WatchUnitYear(facts, plan, residentFigures, source.Provider, entry);

        return new WriteOutcome(new GiftResponse
        {
            Grant = Ledger.Grants.NewInfo(gift, facts.Contracts[source.ContractId].ContractNo),
            SourceGrantId = source.Id,
            SourceRemainingFen = source.BalanceFen,
            OperatorUnitYear = operatorFigures.ToApi(),
            ResidentUnitYear = residentFigures.ToApi(),
            Receipt = entry.ToReceipt(),
        }, null);
    }

    /// <summary>What <see cref="Gifts.Decide"/> reads for one gift, from the running state.</summary>
    private static GiftFacts GiftFactsOf(WriteFacts facts, PendingGift item)
    {
        var call = item.Call;
        var source = facts.Grants.GetValueOrDefault(call.GrantId);
        var operatorKnown = facts.Units.TryGetValue(call.Operator, out var operatorUnit);
        return new GiftFacts
        {
            OperatorKind = operatorKnown ? operatorUnit.Kind : null,
            OperatorConfirmed = operatorKnown && operatorUnit.OperatorConfirmed,
            ResidentKnown = facts.Units.ContainsKey(call.Resident),
            Residency = facts.Residencies.TryGetValue((call.Operator, call.Resident), out var residency) ? residency : null,
            Source = source,
            OperatorDealing = source is null ? null : facts.Dealings.GetValueOrDefault((source.Provider, call.Operator)),
            ResidentDealing = source is null ? null : facts.Dealings.GetValueOrDefault((source.Provider, call.Resident)),
            Resident = item.ResidentUnitYearId is { } id ? facts.Figures.GetValueOrDefault(id) : null,
        };
    }

    /// <summary>The figure alerts an entry that moved quota between a pool and a unit-year may cross or re-arm: the
    /// pool's (net of expired grants, against the year's funding) and the unit-year's (<see cref="WatchUnitYear"/>).</summary>
    private static void WatchFigures(WriteFacts facts, WritePlan plan, PoolFacts pool, UnitYearFigures figures, string provider, JournalEntryRow entry)
    {
        var rules = facts.AlertRulesOf(pool.Year);
        plan.Alert(facts, new AlertSubject(pool.Year, AlertKind.PoolLow, "", null, null),
            FigureAlerts.PoolLow(rules.PoolLowBp, pool.FundedFen, pool.Available.Value), pool.Available.Value, pool.FundedFen, entry);
        WatchUnitYear(facts, plan, figures, provider, entry);
    }

    /// <summary>The unit-year's figure alerts an entry may cross or re-arm: what it commits against its cap.</summary>
    private static void WatchUnitYear(WriteFacts facts, WritePlan plan, UnitYearFigures figures, string provider, JournalEntryRow entry)
    {
        var rules = facts.AlertRulesOf(figures.Year);
        var committed = figures.GrantedOpen + figures.Deducted;
        plan.Alert(facts, new AlertSubject(figures.Year, AlertKind.UnitYearCap, figures.UnitUscc, figures.UnitUscc, provider),
            FigureAlerts.UnitYearCap(rules.UnitYearCapBp, figures.Cap, committed), committed.Value, figures.Cap.Value, entry);
    }

    /// <summary>What <see cref="Deductions.Decide"/> reads for one deduction: its grant, the grant's contract, and the
    /// deduction that already took its invoice number. The real call and the dry run both pick them so.</summary>
    private static (GrantFacts? Grant, ContractFacts? Contract, EarlierDeduction? Earlier) DeductionFactsOf(WriteFacts facts, DeductionRequest request)
    {
        var grant = facts.Grants.GetValueOrDefault(request.GrantId);
        var contract = grant is null ? null : facts.Contracts.GetValueOrDefault(grant.ContractId);
        EarlierDeduction? earlier = facts.Invoices.TryGetValue((request.Provider, request.InvoiceNo), out var taken) ? taken : null;
        return (grant, contract, earlier);
    }

    /// <summary>What <see cref="GrantRules.Decide"/> reads for one grant, from the running state: what the contract has
    /// committed and the pool holds are both net of due grants, which count as returned from expires_at on.</summary>
    public static GrantingFacts GrantFactsOf(WriteFacts facts, PendingGrant item)
    {
        if (item.Target is not { } target)
        {
            return new GrantingFacts { Year = item.Year, ProviderKnown = facts.Providers.Contains(item.Call.Provider) };
        }

        var contract = facts.Contracts[target.ContractId];
        var row = new ContractRow
        {
            Id = contract.Id,
            ContractNo = contract.ContractNo,
            ProviderUscc = contract.Provider,
            UnitUscc = contract.Unit,
            AmountFen = contract.AmountFen,
            SelfControllable = contract.SelfControllable,
            UsesInnovationVoucher = contract.UsesInnovationVoucher,
            GrantedFen = contract.GrantedFen,
            InvoicedFen = contract.InvoicedFen,
        };
        if (!facts.Policies.TryGetValue(target.Year, out var policy))
        {
            return new GrantingFacts { Year = target.Year, ProviderKnown = true, Contract = row };
        }

        var pool = facts.Pools.GetValueOrDefault(target.Year);
        return new GrantingFacts
        {
            Year = target.Year,
            ProviderKnown = true,
            Contract = row,
            Policy = policy,
            UnitYearId = target.UnitYearId,
            Dealing = facts.Dealings[(item.Call.Provider, target.Unit)],
            Sme = facts.SmeUnits.Contains(target.Unit),
            ContractCommitted = new Fen(contract.GrantedFen - facts.LapsedOnContract.GetValueOrDefault(contract.Id)),
            // A dry run of a unit-year's first grant finds no unit-year yet: nothing committed against the policy's cap.
            Figures = facts.Figures.GetValueOrDefault(target.UnitYearId) ?? new UnitYearFigures(target.Unit, target.Year, policy.UnitYearCap, Fen.Zero, Fen.Zero, Fen.Zero),
            Pool = pool?.Available,
        };
    }

    /// <summary>The first outcome of a request id again. A DUPLICATE_INVOICE is recorded as its reason and message only;
    /// it names the earlier deduction again from this batch's own lookup of the invoice (the same request, so the same
    /// invoice, and a deduction is never edited or removed, so the same deduction).</summary>
    private static WriteOutcome Replay(IdempotencyRow first, PendingWrite item, Dictionary<(string, string), EarlierDeduction> invoices)
    {
        try
        {
            IMessage response = item switch
            {
                PendingGrant => Idempotency.Replay<GrantResponse>(first, item.Method, item.Hash),
                PendingRelease => Idempotency.Replay<ReleaseResponse>(first, item.Method, item.Hash),
                PendingGift => Idempotency.Replay<GiftResponse>(first, item.Method, item.Hash),
                _ => Idempotency.Replay<DeductResponse>(first, item.Method, item.Hash),
            };
            return new WriteOutcome(response, null, Replayed: true);
        }
        catch (LedgerException refusal) when (refusal.Reason == Reason.DuplicateInvoice && item is PendingDeduction d
            && invoices.TryGetValue((d.Request.Provider, d.Request.InvoiceNo), out var earlier))
        {
            return new WriteOutcome(null, Deductions.DuplicateInvoice(d.Request.Provider, d.Request.InvoiceNo, earlier, refusal.Message), Replayed: true);
        }
        catch (LedgerException refusal)
        {
            return new WriteOutcome(null, refusal, Replayed: true);
        }
    }

    /// <summary>A dry run of one deduction: its facts read by the very statements <see cref="RunAsync"/> reads them with,
    /// but in one read-only REPEATABLE READ snapshot that takes no lock (a real write of the same rows never waits for
    /// it, nor it for one), then decided by <see cref="Deductions.Decide"/>. Nothing is written; the request id is
    /// neither read nor recorded. A prediction at read time.</summary>
    public static async Task<Explanation> ExplainDeductionAsync(NpgsqlConnection connection, PendingDeduction item, DateTimeOffset now, CancellationToken ct)
    {
        now = Chain.ToStoredPrecision(now);
        var facts = await SnapshotAsync(connection, item, now, ct);
        var request = item.Request;
        var (grant, contract, earlier) = DeductionFactsOf(facts, request);
        var decision = Deductions.Decide(request.Claim, grant, contract, earlier, now);
        var explanation = Explain(decision.Refusal, decision.Requested.Value, decision.Applied.Value, now);
        if (grant is null || contract is null || grant.Provider != request.Provider)
        {
            // Not the caller's grant: nothing of it is shown.
            return explanation;
        }

        explanation.RequestedFen = Deductions.VoucherShare(request.InvoiceAmount, grant).Value;
        explanation.RatioBp = grant.RatioBp;
        explanation.UnitUscc = grant.Unit;
        explanation.Year = grant.Year;
        explanation.ExpiresAt = grant.ExpiresAt.ToTimestamp();
        explanation.GrantBalanceFen = Ledger.Grants.IsDue(grant.ExpiresAt, now) ? 0 : grant.BalanceFen;
        explanation.ContractUninvoicedFen = Math.Max(0, contract.AmountFen - contract.InvoicedFen);
        if (facts.Figures.TryGetValue(grant.UnitYearId, out var figures))
        {
            explanation.UnitYearHeadroomFen = figures.Headroom.Value;
        }

        return explanation;
    }

    /// <summary>A dry run of one grant, as <see cref="ExplainDeductionAsync"/> is of a deduction: the facts the real
    /// grant reads, read in one snapshot without locks, decided by <see cref="GrantRules.Decide"/>.</summary>
    public static async Task<Explanation> ExplainGrantAsync(NpgsqlConnection connection, PendingGrant item, DateTimeOffset now, CancellationToken ct)
    {
        now = Chain.ToStoredPrecision(now);
        var facts = await SnapshotAsync(connection, item, now, ct);
        var call = item.Call;
        var grantFacts = GrantFactsOf(facts, item);
        var decision = GrantRules.Decide(call, grantFacts, now);
        var explanation = Explain(decision.Refusal, call.Amount.Value, decision.Refusal is null ? call.Amount.Value : 0, now);
        if (grantFacts.Contract is not { } contract)
        {
            // No contract of the caller's: nothing of anyone else's is shown.
            return explanation;
        }

        explanation.UnitUscc = contract.UnitUscc;
        explanation.Year = grantFacts.Year;
        if (grantFacts.Policy is not { } policy)
        {
            // No policy for the year: no ratio, cap or validity to measure against.
            return explanation;
        }

        explanation.UnitYearHeadroomFen = grantFacts.Figures.Headroom.Value;
        explanation.PoolFen = grantFacts.Pool?.Value ?? 0;
        explanation.RatioBp = decision.Ratio.Value;
        explanation.ContractQuotaRemainingFen = Fen.Max(Fen.Zero, decision.ContractQuota - grantFacts.ContractCommitted).Value;
        explanation.ExpiresAt = policy.ExpiryOf(now).ToTimestamp();
        return explanation;
    }

    /// <summary>A dry run's facts: the real write's statements, in one read-only snapshot that takes no lock.</summary>
    private static async Task<WriteFacts> SnapshotAsync(NpgsqlConnection connection, PendingWrite item, DateTimeOffset now, CancellationToken ct)
    {
        try
        {
            return await WriteFacts.ReadAsync(connection, [item], now, Reading.Snapshot, ct);
        }
        finally
        {
            await RollBackQuietlyAsync(connection);
        }
    }

    /// <summary>What every dry run answers: whether the write would apply, or the refusal, and the amounts.</summary>
    private static Explanation Explain(LedgerException? refusal, long requestedFen, long appliedFen, DateTimeOffset now) => new()
    {
        WouldApply = refusal is null,
        Reason = refusal?.Reason.Word() ?? "",
        Message = refusal?.Message ?? "",
        RequestedFen = requestedFen,
        AppliedFen = appliedFen,
        EvaluatedAt = now.ToTimestamp(),
    };

    internal static async Task RollBackQuietlyAsync(NpgsqlConnection connection)
    {
        if (connection.State != System.Data.ConnectionState.Open)
        {
            return;
        }

        try
        {
            await using var rollback = new NpgsqlCommand("ROLLBACK", connection);
            await rollback.ExecuteNonQueryAsync(CancellationToken.None);
        }
        catch (NpgsqlException)
        {
            // A broken connection is discarded by the pool; PostgreSQL rolls its transaction back.
        }
    }
}
