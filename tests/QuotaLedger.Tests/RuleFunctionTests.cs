using QuotaLedger.Server.Rules;
using Fen = QuotaLedger.Server.Rules.Fen;

namespace QuotaLedger.Tests;

/// <summary>The policy rules that each live in one named function, checked as tables with no database: every path that
/// applies a rule calls its function, so these tables hold for all of them. (The standing mapping and the validity and
/// pool fragments are internal to the server; the service tests hold them.)</summary>
public sealed class RuleFunctionTests
{
    private const string Provider = "91510100MA61R1XK0W";
    private const string Unit = "91510107MA6CA1WQ8B";

    [Theory]
    [InlineData(10_000, 3_000, 2_000, 5_000, null)]
    [InlineData(10_000, 3_000, 2_000, 5_001, "UNIT_YEAR_CAP_EXCEEDED")]
    [InlineData(10_000, 0, 0, 10_000, null)]
    [InlineData(10_000, 0, 10_000, 1, "UNIT_YEAR_CAP_EXCEEDED")]
    [InlineData(10_000, 12_000, 0, 1, "UNIT_YEAR_CAP_EXCEEDED")]
    [InlineData(0, 0, 0, 1, "UNIT_YEAR_CAP_EXCEEDED")]
    public void The_unit_year_cap_counts_granted_open_and_deducted_against_the_cap(long cap, long grantedOpen, long deducted, long amount, string? expected)
    {
        var refusal = UnitYearCap.Refusal($"Unit {Unit}", 2026, new Fen(cap), new Fen(grantedOpen), new Fen(deducted), new Fen(amount), "granted");

        Assert.Equal(expected, refusal?.Reason.Word());
        Assert.Equal(expected is null, UnitYearCap.Allows(new Fen(cap), new Fen(grantedOpen), new Fen(deducted), new Fen(amount)));
    }

    [Fact]
    public void The_cap_refusal_names_the_party_the_year_what_is_committed_and_the_headroom()
    {
        var refusal = UnitYearCap.Refusal($"Resident {Unit}", 2026, new Fen(10_000), new Fen(3_000), new Fen(2_000), new Fen(6_000), "given");

        Assert.Equal(
            $"Resident {Unit} has committed {new Fen(5_000)} of its {new Fen(10_000)} cap for 2026; at most {new Fen(5_000)} more can be given.",
            refusal!.Message);
    }

    [Theory]
    [InlineData(1_000, 400, 600, null)]
    [InlineData(1_000, 400, 601, "YEAR_TOTAL_EXCEEDED")]
    [InlineData(1_000, 1_000, 0, null)]
    [InlineData(1_000, 1_001, 0, "YEAR_TOTAL_EXCEEDED")]
    public void The_year_total_bounds_funding_whether_the_funding_grows_or_the_total_shrinks(long total, long funded, long more, string? expected)
    {
        var refusal = YearTotal.Refusal(2026, new Fen(total), new Fen(funded), new Fen(more));

        Assert.Equal(expected, refusal?.Reason.Word());
        Assert.Equal(expected is null, YearTotal.Allows(new Fen(total), new Fen(funded), new Fen(more)));
    }

    [Fact]
    public void A_total_set_below_the_funding_and_a_funding_past_the_total_are_told_apart()
    {
        Assert.Equal($"2026 is already funded with {new Fen(1_001)}; its total cannot be set below that.",
            YearTotal.Refusal(2026, new Fen(1_000), new Fen(1_001), Fen.Zero)!.Message);
        Assert.Equal($"2026 is funded with {new Fen(400)} of its {new Fen(1_000)} total; {new Fen(601)} more would exceed it (Art 6).",
            YearTotal.Refusal(2026, new Fen(1_000), new Fen(400), new Fen(601))!.Message);
    }

    [Theory]
    [InlineData(Provider, Unit, false, null, null)]
    [InlineData(Provider, Unit, true, null, "declared related parties and may not deal")]
    [InlineData(Provider, Unit, true, "contract", "a contract between them would never get quota")]
    [InlineData(Provider, Provider, false, null, "may not deal with itself")]
    [InlineData(Provider, Provider, true, null, "may not deal with itself")]
    [InlineData(Provider, Provider, false, "review", "cannot be both provider and unit of one review")]
    public void A_provider_may_not_deal_with_a_related_unit_nor_with_itself(string provider, string unit, bool declared, string? what, string? expected)
    {
        var refusal = RelatedParties.Refusal(provider, unit, declared, what);

        if (expected is null)
        {
            Assert.Null(refusal);
        }
        else
        {
            Assert.Equal(Reason.RelatedParties, refusal!.Reason);
            Assert.Contains(expected, refusal.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(true, true, false, true, null)]
    [InlineData(false, true, false, true, "PARTY_SUSPENDED")]
    [InlineData(true, false, false, true, "PARTY_SUSPENDED")]
    [InlineData(true, true, true, true, "RELATED_PARTIES")]
    [InlineData(true, true, false, false, "UNIT_NOT_APPROVED")]
    [InlineData(false, false, true, false, "PARTY_SUSPENDED")]
    [InlineData(true, true, true, false, "RELATED_PARTIES")]
    public void The_dealing_rule_answers_the_first_rule_broken(bool providerGood, bool unitGood, bool related, bool approved, string? expected) =>
        Assert.Equal(expected, EligibilityRule.Refusal(new Dealing(Provider, Unit, providerGood, unitGood, related, approved))?.Reason.Word());

    [Fact]
    public void One_uscc_on_both_sides_is_its_own_related_party_even_without_a_declared_relation() =>
        Assert.Equal(Reason.RelatedParties, EligibilityRule.Refusal(new Dealing(Provider, Provider, true, true, false, true))?.Reason);
}
