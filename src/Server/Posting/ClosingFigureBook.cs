using QuotaLedger.V1;

namespace QuotaLedger.Server.Posting;

/// <summary>A closing's figures while they are summed: per scope (the programme year, a provider's grants of a year, a
/// unit-year) and account kind, the opening figure and the period's movements by entry kind, each in the account kind's
/// normal direction. No I/O: the close sums the database's postings into one, and the offline audit sums an export's
/// entries into another and compares the two.</summary>
internal sealed class ClosingFigureBook
{
    private readonly SortedDictionary<LineKey, Line> _lines = [];

    /// <summary>The scopes an account's postings count in: its year's programme always, a grant's provider, a unit-year.</summary>
    public static IEnumerable<(ClosingScope Scope, string Party)> ScopesOf(ClosingAccount account)
    {
        yield return (ClosingScope.Programme, "");
        if (account.ProviderUscc.Length > 0)
        {
            yield return (ClosingScope.Provider, account.ProviderUscc);
        }

        if (account.UnitUscc.Length > 0)
        {
            yield return (ClosingScope.UnitYear, account.UnitUscc);
        }
    }

    /// <summary>A posting's amount (positive debits) in its account kind's normal direction: funding is credit-normal.</summary>
    public static long Normal(AccountKind kind, long signedFen) => kind == AccountKind.Funding ? -signedFen : signedFen;

    /// <summary>Starts each line of <paramref name="previous"/> (a closing's figures) from its closing figure.</summary>
    public void OpenFrom(IEnumerable<ClosingFigures> previous)
    {
        foreach (var figures in previous)
        {
            LineOf(new LineKey(figures.Scope, figures.Year, figures.Party, figures.AccountKind)).Opening += figures.ClosingFen;
        }
    }

    /// <summary>Counts a posting (or a sum of postings) of an entry kind on an account in every scope of the account.</summary>
    public void Move(ClosingAccount account, EntryKind entryKind, long signedFen)
    {
        var fen = Normal(account.Kind, signedFen);
        foreach (var (scope, party) in ScopesOf(account))
        {
            var movements = LineOf(new LineKey(scope, account.Year, party, account.Kind)).Movements;
            movements[entryKind] = checked(movements.GetValueOrDefault(entryKind) + fen);
        }
    }

    /// <summary>The lines, in scope, year, party and account kind order; a line with nothing at either end and no movement
    /// is left out. <paramref name="year"/>, when given, keeps that year's lines alone.</summary>
    public IEnumerable<ClosingFigures> Figures(int? year = null)
    {
        foreach (var (key, line) in _lines)
        {
            var moved = line.Movements.Where(m => m.Value != 0).ToList();
            var closing = checked(line.Opening + moved.Sum(m => m.Value));
            if ((year is { } only && key.Year != only) || (line.Opening == 0 && closing == 0 && moved.Count == 0))
            {
                continue;
            }

            var figures = new ClosingFigures
            {
                Scope = key.Scope,
                Year = key.Year,
                Party = key.Party,
                AccountKind = key.Kind,
                OpeningFen = line.Opening,
                ClosingFen = closing,
            };
            figures.Movements.AddRange(moved.Select(m => new Movement { Kind = m.Key, Fen = m.Value }));
            yield return figures;
        }
    }

    /// <summary>The movements of one line, by entry kind (none when the line never moved).</summary>
    public IReadOnlyDictionary<EntryKind, long> MovementsOf(ClosingFigures figures) =>
        _lines.TryGetValue(new LineKey(figures.Scope, figures.Year, figures.Party, figures.AccountKind), out var line)
            ? line.Movements.Where(m => m.Value != 0).ToDictionary()
            : new Dictionary<EntryKind, long>();

    private Line LineOf(LineKey key)
    {
        if (!_lines.TryGetValue(key, out var line))
        {
            _lines[key] = line = new Line();
        }

        return line;
    }

    private readonly record struct LineKey(ClosingScope Scope, int Year, string Party, AccountKind Kind) : IComparable<LineKey>
    {
        public int CompareTo(LineKey other)
        {
            var order = Scope.CompareTo(other.Scope);
            order = order != 0 ? order : Year.CompareTo(other.Year);
            order = order != 0 ? order : string.CompareOrdinal(Party, other.Party);
            return order != 0 ? order : Kind.CompareTo(other.Kind);
        }
    }

    private sealed class Line
    {
        public long Opening { get; set; }

        public SortedDictionary<EntryKind, long> Movements { get; } = [];
    }
}
