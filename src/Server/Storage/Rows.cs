namespace QuotaLedger.Server.Storage;

// The tables. Money columns are bigint fen; times are timestamptz in UTC.

public enum AccountKind : short
{
    /// <summary>Credit-normal: what the bureau has funded for a year.</summary>
    Funding = 1,

    /// <summary>Debit-normal: the year's budget pool, available to grant.</summary>
    Pool = 2,

    /// <summary>Debit-normal: what one grant still holds.</summary>
    Grant = 3,

    /// <summary>Debit-normal: what one unit-year has had deducted and not yet applied to redeem.</summary>
    Deducted = 4,

    /// <summary>Debit-normal, per unit-year: applied for redemption, under review.</summary>
    Pending = 5,

    /// <summary>Debit-normal, per unit-year: approved, awaiting payment.</summary>
    Redeemed = 6,

    /// <summary>Debit-normal, per unit-year: paid out.</summary>
    Disbursed = 7,

    /// <summary>Debit-normal, per unit-year: clawed back from a disbursement, owed by the unit.</summary>
    Receivable = 8,

    /// <summary>Debit-normal, per year: what the pool held unspent when the year closed, settled out of it.</summary>
    Settled = 9,
}

public enum EntryKind : short
{
    Funding = 1,
    Grant = 2,
    Deduction = 3,
    Expiry = 4,
    Release = 5,
    Gift = 6,
    RedemptionSubmitted = 7,
    RedemptionReviewed = 8,
    Disbursement = 9,
    ClawBack = 10,

    /// <summary>A year's close: what its pool did not spend, moved out of the pool.</summary>
    YearSettlement = 11,
}

public enum PartyStanding : short
{
    Good = 1,
    Suspended = 2,
    Blacklisted = 3,
}

public enum UnitKind : short
{
    Enterprise = 1,
    ResearchInstitute = 2,
    University = 3,
    OpcOperator = 4,
}

/// <summary>How a contract's compute is served (Art 8).</summary>
public enum ServiceMode : short
{
    /// <summary>Only on contracts registered before the mode was required.</summary>
    Unspecified = 0,
    BareMetal = 1,
    CloudInstance = 2,
    Container = 3,
    DedicatedCluster = 4,
}

/// <summary>The stored state of a grant. Expired-by-time and exhausted are derived when read.</summary>
public enum GrantState : short
{
    Open = 1,
    Expired = 2,
    Released = 3,
}

public sealed class YearPolicyRow
{
    public int Year { get; set; }
    public int SelfControllableRatioBp { get; set; }
    public int OtherRatioBp { get; set; }
    public int SmeBonusBp { get; set; }
    public long UnitYearCapFen { get; set; }
    public long UnitYearFloorFen { get; set; }
    public long YearTotalFen { get; set; }
    public int ValidityMonths { get; set; }

    /// <summary>The first day (China time) the year's policy takes effect (Art 19): nothing is granted before it, and no
    /// invoice dated before it is deducted.</summary>
    public DateOnly EffectiveFrom { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

public sealed class ProviderRow
{
    public required string Uscc { get; set; }
    public required string Name { get; set; }
    public List<string> Licences { get; set; } = [];
    public PartyStanding Standing { get; set; } = PartyStanding.Good;
    public DateTimeOffset RegisteredAt { get; set; }
}

public sealed class UnitRow
{
    public required string Uscc { get; set; }
    public required string Name { get; set; }
    public UnitKind Kind { get; set; }
    public bool Sme { get; set; }
    public List<string> MaterialRefs { get; set; } = [];

    /// <summary>The Art 7 qualification materials, each as "KIND:reference" (see <c>UnitMaterials</c>).</summary>
    public List<string> Materials { get; set; } = [];
    public PartyStanding Standing { get; set; } = PartyStanding.Good;
    public DateTimeOffset RegisteredAt { get; set; }
}

/// <summary>A provider's review of a unit's qualification (Art 7). Append-only: the latest per pair is in force.</summary>
public sealed class UnitReviewRow
{
    public long Id { get; set; }
    public required string ProviderUscc { get; set; }
    public required string UnitUscc { get; set; }
    public bool Approved { get; set; }
    public string Reason { get; set; } = "";
    public DateTimeOffset ReviewedAt { get; set; }
}

public sealed class ContractRow
{
    public long Id { get; set; }
    public required string ContractNo { get; set; }
    public required string ProviderUscc { get; set; }
    public required string UnitUscc { get; set; }
    public string Accelerator { get; set; } = "";
    public bool SelfControllable { get; set; }
    /// <summary>Unspecified only on contracts registered before the mode was an enum.</summary>
    public ServiceMode ServiceMode { get; set; }
    public long UnitPriceFen { get; set; }
    public long AmountFen { get; set; }
    public string Purpose { get; set; } = "";
    public bool UsesInnovationVoucher { get; set; }
    public DateOnly SignedOn { get; set; }

    /// <summary>Quota committed on the contract: granted, less what went back to the pool.</summary>
    public long GrantedFen { get; set; }

    /// <summary>Invoice amounts deducted against the contract.</summary>
    public long InvoicedFen { get; set; }

    public DateTimeOffset RegisteredAt { get; set; }
}

/// <summary>One unit in one year: the row every grant and deduction of the unit-year locks first.</summary>
public sealed class UnitYearRow
{
    public long Id { get; set; }
    public required string UnitUscc { get; set; }
    public int Year { get; set; }
    public long DeductedAccountId { get; set; }
}

public sealed class GrantRow
{
    public long Id { get; set; }
    public long ContractId { get; set; }
    public required string ProviderUscc { get; set; }
    public required string UnitUscc { get; set; }
    public int Year { get; set; }
    public long UnitYearId { get; set; }
    public long AccountId { get; set; }
    public AccountRow? Account { get; set; }
    public int RatioBp { get; set; }
    public long AmountFen { get; set; }
    public GrantState State { get; set; } = GrantState.Open;

    /// <summary>What went back to the pool on expiry or release.</summary>
    public long ReturnedFen { get; set; }

    /// <summary>What the bureau clawed back from the grant's open quota (Art 17); never overwritten by a later close.</summary>
    public long ClawedBackFen { get; set; }

    /// <summary>For a resident's grant made by an OPC gift: the operator's grant it came from.</summary>
    public long? GiftedFromGrantId { get; set; }

    /// <summary>The joint statement of a release.</summary>
    public string? StatementRef { get; set; }
    public DateTimeOffset GrantedAt { get; set; }
    public DateTimeOffset ExpiresAt { get; set; }
}

public sealed class DeductionRow
{
    public long Id { get; set; }
    public long GrantId { get; set; }
    public required string ProviderUscc { get; set; }
    public required string InvoiceNo { get; set; }
    public long InvoiceAmountFen { get; set; }
    public DateOnly InvoiceDate { get; set; }
    public long RequestedFen { get; set; }
    public long AppliedFen { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}

public sealed class AccountRow
{
    public long Id { get; set; }
    public AccountKind Kind { get; set; }
    public int Year { get; set; }

    /// <summary>Set on a unit-year's deducted account.</summary>
    public string? UnitUscc { get; set; }

    /// <summary>In the kind's normal direction; never negative (a database check).</summary>
    public long BalanceFen { get; set; }
}

/// <summary>One journal entry: a state change whose postings balance. Never updated or deleted.</summary>
public sealed class JournalEntryRow
{
    public long Id { get; set; }
    public EntryKind Kind { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public int Year { get; set; }
    public string? UnitUscc { get; set; }
    public string? ProviderUscc { get; set; }
    public long? GrantId { get; set; }
    public GrantRow? Grant { get; set; }
    public long? DeductionId { get; set; }
    public DeductionRow? Deduction { get; set; }
    public required string RequestId { get; set; }
    public required string Caller { get; set; }
    public string Memo { get; set; } = "";

    /// <summary>For a gift: the resident unit and its new grant, so both sides' statements show the entry.</summary>
    public string? CounterpartyUscc { get; set; }
    public long? CounterpartyGrantId { get; set; }

    /// <summary>For a claw-back: the entry it reverses (never edited).</summary>
    public long? ReversesEntryId { get; set; }

    /// <summary>The chain the entry belongs to: its unit-year ("USCC:year"), or its year for city-wide entries.</summary>
    public string ChainKey { get; set; } = "";

    /// <summary>The hash of the chain's previous entry (empty for the first), and of this entry's canonical content
    /// chained to it. Every entry has both (entries of a database older than the chain were chained when it migrated).</summary>
    public byte[] PrevHash { get; set; } = [];
    public byte[] Hash { get; set; } = [];

    public List<PostingRow> Postings { get; set; } = [];
}

/// <summary>A posting: a signed amount on one account; positive debits, negative credits. An entry's postings sum to zero.</summary>
public sealed class PostingRow
{
    public long Id { get; set; }
    public long EntryId { get; set; }
    public long AccountId { get; set; }
    public long AmountFen { get; set; }
}

/// <summary>The first outcome of a (caller, request id), written in the same transaction as its effect.</summary>
public sealed class IdempotencyRow
{
    public required string Caller { get; set; }
    public required string RequestId { get; set; }
    public required string Method { get; set; }
    public required byte[] RequestHash { get; set; }

    /// <summary>Null while the first call is in flight (never visible outside its transaction).</summary>
    public string? Outcome { get; set; }
    public string? Message { get; set; }
    public byte[]? Response { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>A change of a party's standing and why. Append-only.</summary>
public sealed class StandingChangeRow
{
    public long Id { get; set; }
    public required string Uscc { get; set; }

    /// <summary>"unit" or "provider".</summary>
    public required string Party { get; set; }

    public PartyStanding From { get; set; }
    public PartyStanding To { get; set; }
    public required string Reason { get; set; }
    public DateTimeOffset ChangedAt { get; set; }
    public required string RequestId { get; set; }
    public required string Caller { get; set; }
}

/// <summary>A change of whether a provider and a unit are related parties (Art 5.6). Append-only: the latest row of a
/// pair is in force, so a relation is ended by a new row, and the history stays.</summary>
public sealed class RelatedPartyRow
{
    public long Id { get; set; }
    public required string ProviderUscc { get; set; }
    public required string UnitUscc { get; set; }

    /// <summary>True when the row declares the relation, false when it ends it.</summary>
    public bool Related { get; set; }
    public required string Reason { get; set; }
    public DateTimeOffset RecordedAt { get; set; }
    public required string RequestId { get; set; }
    public required string Caller { get; set; }
}

/// <summary>Where a resident one-person company stands on an OPC community operator's list (Art 15).</summary>
public enum ResidencyStatus : short
{
    /// <summary>The operator put it on its list; the bureau has not confirmed it yet.</summary>
    Declared = 1,

    /// <summary>The bureau confirmed it: the operator may give it quota.</summary>
    Confirmed = 2,

    /// <summary>The bureau refused it.</summary>
    Rejected = 3,

    /// <summary>Taken off the list by the operator or the bureau.</summary>
    Ended = 4,
}

/// <summary>A step of a resident's standing on an operator's list. Append-only: the latest row of a pair is in force.</summary>
public sealed class OpcResidentRow
{
    public long Id { get; set; }
    public required string OperatorUscc { get; set; }
    public required string ResidentUscc { get; set; }
    public ResidencyStatus Status { get; set; }
    public string Reason { get; set; } = "";
    public DateTimeOffset RecordedAt { get; set; }
    public required string RequestId { get; set; }
    public required string Caller { get; set; }
}

/// <summary>The bureau's confirmation (or withdrawal) of a unit's OPC community operator status. Append-only: the
/// latest row of a unit is in force.</summary>
public sealed class OpcOperatorConfirmationRow
{
    public long Id { get; set; }
    public required string OperatorUscc { get; set; }
    public bool Confirmed { get; set; }
    public required string Reason { get; set; }
    public DateTimeOffset RecordedAt { get; set; }
    public required string RequestId { get; set; }
    public required string Caller { get; set; }
}

public enum RedemptionState : short
{
    Submitted = 1,
    Reviewed = 2,
    Disbursed = 3,
}

public sealed class RedemptionBatchRow
{
    public long Id { get; set; }
    public int Year { get; set; }
    public DateTimeOffset OpenedAt { get; set; }
    public DateTimeOffset ClosesAt { get; set; }
}

/// <summary>A unit's application to redeem part of a unit-year's deductions (Art 12, 13).</summary>
public sealed class RedemptionRow
{
    public long Id { get; set; }
    public long BatchId { get; set; }
    public required string UnitUscc { get; set; }
    public int Year { get; set; }
    public long RequestedFen { get; set; }
    public long? ApprovedFen { get; set; }

    /// <summary>What of the application is still in its current stage (applied for, approved, or paid), after claw-backs.</summary>
    public long OutstandingFen { get; set; }

    /// <summary>What was paid out (the approved amount less what was clawed back before payment).</summary>
    public long DisbursedFen { get; set; }
    public long ClawedBackFen { get; set; }
    public RedemptionState State { get; set; } = RedemptionState.Submitted;
    public string? Reviewer { get; set; }
    public string? ReviewReason { get; set; }
    public string? PaymentRef { get; set; }
    public DateTimeOffset SubmittedAt { get; set; }
    public DateTimeOffset? ReviewedAt { get; set; }
    public DateTimeOffset? DisbursedAt { get; set; }

    /// <summary>The entries of its steps, which a claw-back at that step reverses.</summary>
    public long? SubmittedEntryId { get; set; }
    public long? ReviewedEntryId { get; set; }

    /// <summary>The entry that paid it, which a claw-back of the payment reverses.</summary>
    public long? DisbursementEntryId { get; set; }

    public List<EvidenceRow> Evidence { get; set; } = [];
}

public sealed class EvidenceRow
{
    public long Id { get; set; }
    public long RedemptionId { get; set; }
    public short Kind { get; set; }
    public required string Reference { get; set; }
    public required string Sha256 { get; set; }
}

/// <summary>A signed checkpoint of the journal (see <c>Posting.Checkpoints</c>). Append-only.</summary>
public sealed class CheckpointRow
{
    public long Id { get; set; }
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>The serialized CheckpointBody, exactly as signed.</summary>
    public required byte[] Body { get; set; }

    /// <summary>SHA-256 of <see cref="Body"/>: the next checkpoint's previous_digest.</summary>
    public required byte[] Digest { get; set; }
    public required string KeyId { get; set; }
    public required byte[] Signature { get; set; }
}

/// <summary>A closed month (1-12) or year (month 0): the sealed ClosingBody and the checkpoint that signs its digest.
/// Append-only; a period has at most one.</summary>
public sealed class PeriodClosingRow
{
    public long Id { get; set; }
    public int Year { get; set; }
    public short Month { get; set; }

    /// <summary>The period: entries with starts_at &lt;= created_at &lt; ends_at.</summary>
    public DateTimeOffset StartsAt { get; set; }
    public DateTimeOffset EndsAt { get; set; }
    public DateTimeOffset ClosedAt { get; set; }
    public required string ClosedBy { get; set; }
    public required string RequestId { get; set; }
    public long CheckpointId { get; set; }

    /// <summary>The serialized ClosingBody, exactly as sealed, and its SHA-256.</summary>
    public required byte[] Body { get; set; }
    public required byte[] Digest { get; set; }
}

/// <summary>A reversal ordered by the bureau (Art 17), and why.</summary>
public sealed class ClawBackRow
{
    public long Id { get; set; }
    public required string TargetKind { get; set; }
    public long TargetId { get; set; }
    public long AmountFen { get; set; }
    public required string Reason { get; set; }
    public required string PartyUscc { get; set; }
    public PartyStanding Standing { get; set; }
    public DateTimeOffset At { get; set; }
}
