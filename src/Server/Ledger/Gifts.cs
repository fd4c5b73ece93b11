using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Ledger;

/// <summary>A validated gift: the operator giving, its grant, the resident receiving and the amount.</summary>
public sealed record GiftCall(string Operator, long GrantId, string Resident, Fen Amount, string RequestId, string By);

/// <summary>What the gift rules read, under the locks of the two unit-years: each unit's kind (null when there is no
/// such unit), the operator's confirmation and the resident's place on its list, the grant (only when it is the
/// operator's), how the grant's provider stands with each of the two units, and the resident's figures in the grant's
/// year (its unit-year is made before the gift is decided, as a grant's is).</summary>
public sealed record GiftFacts
{
    public UnitKind? OperatorKind { get; init; }
    public bool ResidentKnown { get; init; }
    public bool OperatorConfirmed { get; init; }
    public ResidencyStatus? Residency { get; init; }
    public GrantFacts? Source { get; init; }
    public Dealing? OperatorDealing { get; init; }
    public Dealing? ResidentDealing { get; init; }
    public UnitYearFigures? Resident { get; init; }
}

/// <summary>The one transfer the measures allow (Art 15): an OPC community operator gives open quota of its grant to
/// a resident one-person company on its list. The operator's status and the residency are confirmed by the bureau, and
/// the resident is approved by the grant's provider and not related to it, as a grant's unit would be. The resident's
/// new grant keeps the original's provider, contract, ratio, year and expiry; the operator's unit-year commitment goes
/// down and the resident's goes up, within its cap. One pure function, a fixed order of early returns, as the grant,
/// deduction and release rules are.</summary>
public static class Gifts
{
    public static LedgerException? Decide(GiftCall call, GiftFacts facts, DateTimeOffset now)
    {
        if (facts.OperatorKind is not { } kind)
        {
            return UnknownUnit(call.Operator);
        }

        if (!facts.ResidentKnown)
        {
            return UnknownUnit(call.Resident);
        }

        if (kind != UnitKind.OpcOperator || call.Operator == call.Resident || !facts.OperatorConfirmed)
        {
            return new LedgerException(Reason.NotTransferable,
                $"Quota cannot be transferred, sold, lent or given (Art 15); the only exception is a gift by an OPC community operator the bureau has confirmed, and {call.Operator} is not one.");
        }

        if (facts.Residency != ResidencyStatus.Confirmed)
        {
            return new LedgerException(Reason.NotResident,
                $"{call.Resident} is not a resident on {call.Operator}'s list confirmed by the bureau (Art 15); the operator declares it with AddResidentOpc and the bureau confirms it with ConfirmResidentOpc.");
        }

        // A grant made to another unit is unknown to the operator, as one that does not exist.
        if (facts.Source is not { } source || source.Unit != call.Operator)
        {
            return Grants.Unknown(call.GrantId);
        }

        if (Grants.ClosedRefusal(source.Id, source.State, source.ExpiresAt, now, "gift") is { } closed)
        {
            return closed;
        }

        // Quota leaves the operator and reaches the resident: each side must be one the grant's provider may deal with.
        foreach (var dealing in new[] { facts.OperatorDealing, facts.ResidentDealing })
        {
            if (dealing is not { } pair)
            {
                throw new InvalidOperationException($"The gift of grant {source.Id} was decided without how its provider stands with both units.");
            }

            if (EligibilityRule.Refusal(pair) is { } refusal)
            {
                return refusal;
            }
        }

        if (call.Amount.Value > source.BalanceFen)
        {
            return new LedgerException(Reason.GrantEmpty, $"Grant {call.GrantId} holds {new Fen(source.BalanceFen)}; it cannot give {call.Amount}.");
        }

        var resident = facts.Resident ?? throw new InvalidOperationException($"The gift of grant {source.Id} was decided without the resident's unit-year.");
        return UnitYearCap.Refusal($"Resident {call.Resident}", source.Year, resident.Cap, resident.GrantedOpen, resident.Deducted, call.Amount, "given");
    }

    private static LedgerException UnknownUnit(string uscc) => new(Reason.UnknownUnit, $"No unit is registered with USCC {uscc}.");
}
