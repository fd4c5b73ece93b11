using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using QuotaLedger.Server.Storage;

namespace QuotaLedger.Server.Posting;

/// <summary>Tamper evidence: journal entries form hash chains, one per unit-year (city-wide entries, per year). Each
/// entry stores its predecessor's hash and the hash of its own canonical content chained to it, written under the
/// lock the write already holds (the unit-year's, or the year's funding account's), so a chain never forks.</summary>
public static class Chain
{
    public static string KeyOf(JournalEntryRow entry) =>
        entry.UnitUscc is { } unit ? $"{unit}:{entry.Year}" : entry.Year.ToString(CultureInfo.InvariantCulture);

    /// <summary>PostgreSQL keeps microseconds: the hashed time is the stored time.</summary>
    public static DateTimeOffset ToStoredPrecision(DateTimeOffset instant)
    {
        var utc = instant.ToUniversalTime();
        return new DateTimeOffset(utc.Ticks - (utc.Ticks % 10), TimeSpan.Zero);
    }

    /// <summary>SHA-256 over the predecessor's hash and the entry's canonical content: what it is, when, whose, who
    /// caused it, and its postings (account and signed amount, in account order).</summary>
    public static byte[] HashOf(JournalEntryRow entry, IEnumerable<(long AccountId, long AmountFen)> postings, byte[] previous)
    {
        var content = new StringBuilder("v1");
        foreach (var field in new object?[]
        {
            (short)entry.Kind, ToStoredPrecision(entry.CreatedAt).UtcTicks, entry.Year, entry.UnitUscc, entry.ProviderUscc, entry.GrantId,
            entry.CounterpartyUscc, entry.CounterpartyGrantId, entry.RequestId, entry.Caller, entry.Memo,
        })
        {
            var text = Convert.ToString(field, CultureInfo.InvariantCulture) ?? "";
            content.Append('|').Append(text.Length).Append(':').Append(text);
        }

        if (entry.ReversesEntryId is { } reversed)
        {
            // Appended only when set, so the hashes of entries written before claw-backs existed still hold.
            content.Append("|reverses:").Append(reversed.ToString(CultureInfo.InvariantCulture));
        }

        foreach (var (account, amount) in postings.OrderBy(p => p.AccountId).ThenBy(p => p.AmountFen))
        {
            content.Append('|').Append(account.ToString(CultureInfo.InvariantCulture)).Append('=').Append(amount.ToString(CultureInfo.InvariantCulture));
        }

        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(previous);
        sha.AppendData(Encoding.UTF8.GetBytes(content.ToString()));
        return sha.GetHashAndReset();
    }
}
