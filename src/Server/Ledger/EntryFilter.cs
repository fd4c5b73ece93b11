using Grpc.Core;
using Npgsql;
using QuotaLedger.Server.Rules;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Ledger;

/// <summary>Which journal entries a statement or a watch asks for: every set field must hold. One rule, applied three
/// ways: to an EF query (ListEntries in entry-id order), as SQL conditions (commit-order reads), and in memory (the
/// watch's live tail, which reads every new entry once and hands each watcher what matches its filter).</summary>
internal sealed record EntryFilter(string? Unit, string? Provider, long? Grant, int? Year, DateTimeOffset? From, DateTimeOffset? To)
{
    public static readonly EntryFilter All = new(null, null, null, null, null, null);

    public static EntryFilter Of(ListEntriesRequest request) => new(
        request.UnitUscc.Length > 0 ? Validate.Uscc(request.UnitUscc, "unit_uscc") : null,
        request.ProviderUscc.Length > 0 ? Validate.Uscc(request.ProviderUscc, "provider_uscc") : null,
        request.GrantId != 0 ? Validate.Id(request.GrantId, "grant_id") : null,
        request.Year != 0 ? Validate.Year(request.Year) : null,
        request.From is not null ? Validate.Instant(request.From, "from") : null,
        request.To is not null ? Validate.Instant(request.To, "to") : null);

    public static EntryFilter Of(WatchRequest request) => new(
        request.UnitUscc.Length > 0 ? Validate.Uscc(request.UnitUscc, "unit_uscc") : null,
        request.ProviderUscc.Length > 0 ? Validate.Uscc(request.ProviderUscc, "provider_uscc") : null,
        request.GrantId != 0 ? Validate.Id(request.GrantId, "grant_id") : null,
        request.Year != 0 ? Validate.Year(request.Year) : null,
        null,
        null);

    /// <summary>Who may read which entries: a provider its own (provider_uscc is forced to it), a unit its own, gifts it
    /// received included (unit_uscc forced to it), the bureau and its experts everything. Asking for another party's
    /// entries answers NOT_YOUR_RESOURCE. Returns the unit and provider to filter by.</summary>
    public static (string Unit, string Provider) ScopeToCaller(ServerCallContext context, string unitUscc, string providerUscc)
    {
        var caller = Access.RequireReader(context);
        if (Access.ReadsAll(caller))
        {
            return (unitUscc, providerUscc);
        }

        if (caller.Has(Role.Provider))
        {
            Access.EnsureOwn(caller, providerUscc.Length > 0 ? providerUscc : caller.Uscc);
            return (unitUscc, caller.Uscc);
        }

        Access.RequireSelf(context, Role.Unit, unitUscc.Length > 0 ? unitUscc : caller.Uscc);
        return (caller.Uscc, providerUscc);
    }

    public IQueryable<JournalEntryRow> Apply(IQueryable<JournalEntryRow> query)
    {
        if (Unit is { } unit)
        {
            query = query.Where(e => e.UnitUscc == unit || e.CounterpartyUscc == unit);
        }

        if (Provider is { } provider)
        {
            query = query.Where(e => e.ProviderUscc == provider);
        }

        if (Grant is { } grant)
        {
            query = query.Where(e => e.GrantId == grant || e.CounterpartyGrantId == grant);
        }

        if (Year is { } year)
        {
            query = query.Where(e => e.Year == year);
        }

        if (From is { } from)
        {
            query = query.Where(e => e.CreatedAt >= from);
        }

        if (To is { } to)
        {
            query = query.Where(e => e.CreatedAt < to);
        }

        return query;
    }

    /// <summary>The same conditions over <c>journal_entries e</c>, each a fixed fragment with its value as a parameter
    /// added to <paramref name="command"/>: " AND ..." for every set field, empty for none.</summary>
    public string AppendSql(NpgsqlCommand command)
    {
        var sql = new System.Text.StringBuilder();
        if (Unit is { } unit)
        {
            sql.Append($" AND (e.unit_uscc = {Parameter(command, unit)} OR e.counterparty_uscc = {Parameter(command, unit)})");
        }

        if (Provider is { } provider)
        {
            sql.Append($" AND e.provider_uscc = {Parameter(command, provider)}");
        }

        if (Grant is { } grant)
        {
            sql.Append($" AND (e.grant_id = {Parameter(command, grant)} OR e.counterparty_grant_id = {Parameter(command, grant)})");
        }

        if (Year is { } year)
        {
            sql.Append($" AND e.year = {Parameter(command, year)}");
        }

        if (From is { } from)
        {
            sql.Append($" AND e.created_at >= {Parameter(command, from)}");
        }

        if (To is { } to)
        {
            sql.Append($" AND e.created_at < {Parameter(command, to)}");
        }

        return sql.ToString();
    }

    /// <summary>The same conditions in memory, over an entry as the API shows it.</summary>
    public bool Matches(JournalEntry entry) =>
        (Unit is not { } unit || entry.UnitUscc == unit || entry.CounterpartyUscc == unit)
        && (Provider is not { } provider || entry.ProviderUscc == provider)
        && (Grant is not { } grant || entry.GrantId == grant || entry.CounterpartyGrantId == grant)
        && (Year is not { } year || entry.Year == year)
        && (From is not { } from || entry.CreatedAt.ToDateTimeOffset() >= from)
        && (To is not { } to || entry.CreatedAt.ToDateTimeOffset() < to);

    /// <summary>The conditions for alerts (Watch sends them with the entries): the alert's subject, as far as it has one,
    /// must be the filter's unit, provider and grant, and its year the filter's year. A provider's or a unit's watch
    /// (scoped to itself) gets the alerts that name it; the pool's alert, which names nobody, only a watch of the whole
    /// programme. Only the Watch filter's fields (no time range).</summary>
    public string AppendAlertSql(NpgsqlCommand command)
    {
        var sql = new System.Text.StringBuilder();
        if (Unit is { } unit)
        {
            sql.Append($" AND a.unit_uscc = {Parameter(command, unit)}");
        }

        if (Provider is { } provider)
        {
            sql.Append($" AND a.provider_uscc = {Parameter(command, provider)}");
        }

        if (Grant is { } grant)
        {
            sql.Append($" AND a.grant_id = {Parameter(command, grant)}");
        }

        if (Year is { } year)
        {
            sql.Append($" AND a.year = {Parameter(command, year)}");
        }

        return sql.ToString();
    }

    /// <summary>The same conditions in memory, over an alert as the API shows it.</summary>
    public bool Matches(Alert alert) =>
        (Unit is not { } unit || alert.UnitUscc == unit)
        && (Provider is not { } provider || alert.ProviderUscc == provider)
        && (Grant is not { } grant || alert.GrantId == grant)
        && (Year is not { } year || alert.Year == year);

    /// <summary>Whether a feed event matches: its entry or its alert.</summary>
    public bool Matches(WatchEvent item) => item.Entry is { } entry ? Matches(entry) : Matches(item.Alert);

    /// <summary>Adds a positional parameter and returns its placeholder ($n).</summary>
    private static string Parameter(NpgsqlCommand command, object value)
    {
        command.Parameters.Add(new NpgsqlParameter { Value = value });
        return "$" + command.Parameters.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}
