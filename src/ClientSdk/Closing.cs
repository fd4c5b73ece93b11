namespace QuotaLedger.Client;

/// <summary>What a closing's figure is of.</summary>
public enum ClosingScope
{
    /// <summary>The programme year: every account of the year.</summary>
    Programme = 1,
    /// <summary>A provider's grants of the year.</summary>
    Provider = 2,
    /// <summary>A unit-year: its grants and its own accounts.</summary>
    UnitYear = 3,
}

/// <summary>What the entries of one kind moved a figure by in the period.</summary>
/// <param name="Kind">The entry kind.</param>
/// <param name="Amount">The movement, signed, in the account kind's normal direction.</param>
public sealed record ClosingMovement(EntryKind Kind, Fen Amount);

/// <summary>One figure of a closing: for a scope (the programme, a provider, a unit-year) and an account kind, what it
/// stood at when the period opened, what the period's entries moved it by, and what it stood at when the period closed
/// (opening plus movements). In the account kind's normal direction: funding as what was funded, every other kind as
/// what it holds.</summary>
/// <param name="Scope">What the figure is of.</param>
/// <param name="Year">The programme year.</param>
/// <param name="Party">The provider's or the unit's USCC; null for the programme.</param>
/// <param name="AccountKind">The account kind.</param>
/// <param name="Opening">The figure when the period opened.</param>
/// <param name="Movements">The period's movements by entry kind, in entry kind order; only kinds that moved the figure.</param>
/// <param name="Closing">The figure when the period closed.</param>
public sealed record ClosingFigure(ClosingScope Scope, int Year, string? Party, AccountKind AccountKind, Fen Opening, IReadOnlyList<ClosingMovement> Movements,
    Fen Closing);

/// <summary>An entry written after a period closed that reverses an entry dated inside it (a claw-back found later). The
/// closing's figures stay as they were; the correction is a movement of the month it was written in.</summary>
/// <param name="EntryId">The correcting entry.</param>
/// <param name="Kind">Its kind.</param>
/// <param name="CreatedAt">When it was written.</param>
/// <param name="ReversesEntryId">The entry inside the closed period it reverses.</param>
/// <param name="Year">Its year.</param>
/// <param name="UnitUscc">The unit, if any.</param>
/// <param name="Amount">What it moved: the sum of its debits.</param>
/// <param name="Memo">Its note.</param>
public sealed record ClosingCorrection(long EntryId, EntryKind Kind, DateTimeOffset CreatedAt, long ReversesEntryId, int Year, string? UnitUscc, Fen Amount,
    string Memo);

/// <summary>A closed month or year (<see cref="IAdminClient.ClosePeriodAsync"/>): the period's figures as the close
/// recorded them, sealed by the digest a signed checkpoint signs, and the corrections written after it. The figures never
/// change once closed. <see cref="IAdminClient.ListClosingsAsync"/> answers closings without their recorded body:
/// there <see cref="Entries"/>, <see cref="Settled"/> and <see cref="SettlementEntryId"/> are zero or null and the lists
/// of figures are empty (<see cref="IAdminClient.GetClosingAsync"/> has them).</summary>
/// <param name="ClosingId">Its id.</param>
/// <param name="Year">The year.</param>
/// <param name="Month">The month, 1 to 12; 0 for the year's closing.</param>
/// <param name="ClosedAt">When it was closed.</param>
/// <param name="ClosedBy">Who closed it.</param>
/// <param name="CheckpointId">The checkpoint made at the close, whose seal signs <paramref name="Digest"/>.</param>
/// <param name="Digest">The hex SHA-256 of the closing's recorded body.</param>
/// <param name="Entries">How many entries are dated inside the period.</param>
/// <param name="Settled">A year's closing: what the pool had not spent, settled out of it (zero when it held nothing, and for a month).</param>
/// <param name="SettlementEntryId">A year's closing: the entry that settled it; null when there was none.</param>
/// <param name="Figures">For the programme, each provider and each unit-year, per account kind: opening, movements by entry kind, closing.</param>
/// <param name="ProgramYears">The programme's figures as <see cref="IAdminClient.GetProgramYearAsync(int, DateTimeOffset, CancellationToken)"/>
/// answers them as of the period's last instant, for each year the period's entries touched.</param>
/// <param name="UnitYears">Each unit-year's figures as <see cref="ILedgerClient.GetUnitYearAsync(string, int, DateTimeOffset, CancellationToken)"/>
/// answers them as of the period's last instant.</param>
/// <param name="Corrections">Entries written after the close that reverse an entry dated inside the period.</param>
public sealed record ClosingInfo(long ClosingId, int Year, int Month, DateTimeOffset ClosedAt, string ClosedBy, long CheckpointId, string Digest, long Entries,
    Fen Settled, long? SettlementEntryId, IReadOnlyList<ClosingFigure> Figures, IReadOnlyList<ProgramYearFigures> ProgramYears,
    IReadOnlyList<UnitYearFigures> UnitYears, IReadOnlyList<ClosingCorrection> Corrections);
