using Microsoft.EntityFrameworkCore;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Storage;

/// <summary>The ledger's database. Used directly by the operations; the checks that must hold whatever the code
/// does are constraints and triggers here and in the migrations.</summary>
public sealed class LedgerDb(DbContextOptions<LedgerDb> options) : DbContext(options)
{
    public DbSet<YearPolicyRow> YearPolicies => Set<YearPolicyRow>();
    public DbSet<ProviderRow> Providers => Set<ProviderRow>();
    public DbSet<UnitRow> Units => Set<UnitRow>();
    public DbSet<UnitReviewRow> UnitReviews => Set<UnitReviewRow>();
    public DbSet<ContractRow> Contracts => Set<ContractRow>();
    public DbSet<UnitYearRow> UnitYears => Set<UnitYearRow>();
    public DbSet<GrantRow> Grants => Set<GrantRow>();
    public DbSet<DeductionRow> Deductions => Set<DeductionRow>();
    public DbSet<AccountRow> Accounts => Set<AccountRow>();
    public DbSet<JournalEntryRow> JournalEntries => Set<JournalEntryRow>();
    public DbSet<PostingRow> Postings => Set<PostingRow>();
    public DbSet<IdempotencyRow> IdempotencyRecords => Set<IdempotencyRow>();
    public DbSet<StandingChangeRow> StandingChanges => Set<StandingChangeRow>();
    public DbSet<RelatedPartyRow> RelatedParties => Set<RelatedPartyRow>();
    public DbSet<OpcResidentRow> OpcResidents => Set<OpcResidentRow>();
    public DbSet<OpcOperatorConfirmationRow> OpcOperatorConfirmations => Set<OpcOperatorConfirmationRow>();
    public DbSet<RedemptionBatchRow> RedemptionBatches => Set<RedemptionBatchRow>();
    public DbSet<RedemptionRow> Redemptions => Set<RedemptionRow>();
    public DbSet<ClawBackRow> ClawBacks => Set<ClawBackRow>();
    public DbSet<CheckpointRow> Checkpoints => Set<CheckpointRow>();
    public DbSet<PeriodClosingRow> PeriodClosings => Set<PeriodClosingRow>();
    public DbSet<AlertRuleRow> AlertRules => Set<AlertRuleRow>();
    public DbSet<AlertRow> Alerts => Set<AlertRow>();
    public DbSet<AlertArmingRow> AlertArming => Set<AlertArmingRow>();

    protected override void OnModelCreating(ModelBuilder model)
    {
        model.Entity<YearPolicyRow>(e =>
        {
            e.ToTable("year_policies", t => t.HasCheckConstraint("ck_year_policies_ratios",
                "self_controllable_ratio_bp BETWEEN 0 AND 10000 AND other_ratio_bp BETWEEN 0 AND 10000 AND sme_bonus_bp BETWEEN 0 AND 10000"));
            e.HasKey(p => p.Year);
            e.Property(p => p.Year).ValueGeneratedNever();
            var p2026 = VoucherPolicy.Chengdu2026;
            e.HasData(new YearPolicyRow
            {
                Year = p2026.Year,
                SelfControllableRatioBp = p2026.SelfControllableRatio.Value,
                OtherRatioBp = p2026.OtherRatio.Value,
                SmeBonusBp = p2026.SmeBonus.Value,
                UnitYearCapFen = p2026.UnitYearCap.Value,
                UnitYearFloorFen = p2026.UnitYearFloor.Value,
                YearTotalFen = p2026.YearTotal.Value,
                ValidityMonths = p2026.ValidityMonths,
                EffectiveFrom = p2026.EffectiveFrom,
                UpdatedAt = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero),
            });
        });

        model.Entity<ProviderRow>(e =>
        {
            e.ToTable("providers");
            e.HasKey(p => p.Uscc);
            e.Property(p => p.Uscc).HasMaxLength(18).IsFixedLength();
        });

        model.Entity<UnitRow>(e =>
        {
            // The SME bonus (Art 6) is for enterprises only (POLICY.md, Decision).
            e.ToTable("units", t => t.HasCheckConstraint("ck_units_sme_enterprise", $"NOT sme OR kind = {(short)UnitKind.Enterprise}"));
            e.HasKey(u => u.Uscc);
            e.Property(u => u.Uscc).HasMaxLength(18).IsFixedLength();
        });

        model.Entity<UnitReviewRow>(e =>
        {
            e.ToTable("unit_reviews");
            e.HasOne<ProviderRow>().WithMany().HasForeignKey(r => r.ProviderUscc).OnDelete(DeleteBehavior.Restrict);
            e.HasOne<UnitRow>().WithMany().HasForeignKey(r => r.UnitUscc).OnDelete(DeleteBehavior.Restrict);
            e.HasIndex(r => new { r.UnitUscc, r.ProviderUscc, r.Id });
        });

        model.Entity<ContractRow>(e =>
        {
            e.ToTable("contracts", t =>
            {
                t.HasCheckConstraint("ck_contracts_amounts", "amount_fen > 0 AND unit_price_fen > 0");
                t.HasCheckConstraint("ck_contracts_granted", "granted_fen BETWEEN 0 AND amount_fen");
                t.HasCheckConstraint("ck_contracts_invoiced", "invoiced_fen BETWEEN 0 AND amount_fen");
            });
            e.HasIndex(c => new { c.ProviderUscc, c.ContractNo }).IsUnique();
            e.HasIndex(c => c.UnitUscc);
            e.HasOne<ProviderRow>().WithMany().HasForeignKey(c => c.ProviderUscc).OnDelete(DeleteBehavior.Restrict);
            e.HasOne<UnitRow>().WithMany().HasForeignKey(c => c.UnitUscc).OnDelete(DeleteBehavior.Restrict);
        });

        model.Entity<AccountRow>(e =>
        {
            e.ToTable("accounts", t => t.HasCheckConstraint("ck_accounts_balance_not_negative", "balance_fen >= 0"));
            // One funding and one pool account per year, one deducted account per unit-year; grants have their own.
            e.HasIndex(a => new { a.Kind, a.Year, a.UnitUscc }).IsUnique().AreNullsDistinct(false)
                .HasFilter($"kind <> {(short)AccountKind.Grant}");
            e.HasOne<UnitRow>().WithMany().HasForeignKey(a => a.UnitUscc).OnDelete(DeleteBehavior.Restrict);
        });

        model.Entity<UnitYearRow>(e =>
        {
            e.ToTable("unit_years");
            e.HasIndex(u => new { u.UnitUscc, u.Year }).IsUnique();
            e.HasOne<UnitRow>().WithMany().HasForeignKey(u => u.UnitUscc).OnDelete(DeleteBehavior.Restrict);
            e.HasOne<AccountRow>().WithOne().HasForeignKey<UnitYearRow>(u => u.DeductedAccountId).OnDelete(DeleteBehavior.Restrict);
        });

        model.Entity<GrantRow>(e =>
        {
            e.ToTable("grants", t =>
            {
                t.HasCheckConstraint("ck_grants_amounts",
                    "amount_fen > 0 AND returned_fen >= 0 AND clawed_back_fen >= 0 AND returned_fen + clawed_back_fen <= amount_fen");
                t.HasCheckConstraint("ck_grants_ratio", "ratio_bp BETWEEN 0 AND 10000");
            });
            e.HasOne<ContractRow>().WithMany().HasForeignKey(g => g.ContractId).OnDelete(DeleteBehavior.Restrict);
            e.HasOne<UnitYearRow>().WithMany().HasForeignKey(g => g.UnitYearId).OnDelete(DeleteBehavior.Restrict);
            e.HasOne(g => g.Account).WithOne().HasForeignKey<GrantRow>(g => g.AccountId).OnDelete(DeleteBehavior.Restrict);
            e.HasOne<GrantRow>().WithMany().HasForeignKey(g => g.GiftedFromGrantId).OnDelete(DeleteBehavior.Restrict);
            e.HasIndex(g => new { g.UnitYearId, g.State });
            // A unit-year's open grants within their validity, with their accounts: what its figures sum (granted open),
            // which every write of the engine reads for each unit-year it touches. Without it the planner may walk the
            // expiry index and filter by unit-year, a thousand rows for one.
            e.HasIndex(g => new { g.UnitYearId, g.ExpiresAt }, "ix_grants_open_by_unit_year")
                .HasFilter($"state = {(short)GrantState.Open}")
                .IncludeProperties(g => g.AccountId);
            e.HasIndex(g => new { g.Year, g.State });
            // The expiry pass looks for open grants by expiry.
            e.HasIndex(g => g.ExpiresAt).HasFilter($"state = {(short)GrantState.Open}");
        });

        model.Entity<DeductionRow>(e =>
        {
            e.ToTable("deductions", t => t.HasCheckConstraint("ck_deductions_amounts",
                "invoice_amount_fen > 0 AND requested_fen > 0 AND applied_fen BETWEEN 1 AND requested_fen"));
            e.HasIndex(d => new { d.ProviderUscc, d.InvoiceNo }).IsUnique();
            e.HasIndex(d => d.GrantId);
            e.HasOne<GrantRow>().WithMany().HasForeignKey(d => d.GrantId).OnDelete(DeleteBehavior.Restrict);
        });

        model.Entity<JournalEntryRow>(e =>
        {
            e.ToTable("journal_entries");
            e.HasMany(j => j.Postings).WithOne().HasForeignKey(p => p.EntryId).OnDelete(DeleteBehavior.Restrict);
            e.HasOne(j => j.Grant).WithMany().HasForeignKey(j => j.GrantId).OnDelete(DeleteBehavior.Restrict);
            e.HasOne(j => j.Deduction).WithOne().HasForeignKey<JournalEntryRow>(j => j.DeductionId).OnDelete(DeleteBehavior.Restrict);
            e.HasIndex(j => new { j.UnitUscc, j.Id });
            e.HasIndex(j => new { j.ProviderUscc, j.Id });
            e.HasIndex(j => new { j.GrantId, j.Id });
            e.HasIndex(j => new { j.ChainKey, j.Id });
            e.HasIndex(j => new { j.CounterpartyUscc, j.Id }).HasFilter("counterparty_uscc IS NOT NULL");
            e.HasIndex(j => new { j.CounterpartyGrantId, j.Id }).HasFilter("counterparty_grant_id IS NOT NULL");
            e.HasIndex(j => new { j.Year, j.Id });
            e.HasIndex(j => j.CreatedAt);
        });

        model.Entity<PostingRow>(e =>
        {
            e.ToTable("postings", t => t.HasCheckConstraint("ck_postings_amount_not_zero", "amount_fen <> 0"));
            e.HasOne<AccountRow>().WithMany().HasForeignKey(p => p.AccountId).OnDelete(DeleteBehavior.Restrict);
            e.HasIndex(p => p.AccountId);
        });

        model.Entity<StandingChangeRow>(e =>
        {
            e.ToTable("standing_changes");
            e.HasIndex(c => new { c.Uscc, c.Id });
        });

        model.Entity<RelatedPartyRow>(e =>
        {
            e.ToTable("related_parties");
            e.HasIndex(r => new { r.ProviderUscc, r.UnitUscc, r.Id });
            e.HasOne<ProviderRow>().WithMany().HasForeignKey(r => r.ProviderUscc).OnDelete(DeleteBehavior.Restrict);
            e.HasOne<UnitRow>().WithMany().HasForeignKey(r => r.UnitUscc).OnDelete(DeleteBehavior.Restrict);
        });

        model.Entity<OpcResidentRow>(e =>
        {
            e.ToTable("opc_residents", t => t.HasCheckConstraint("ck_opc_residents_status", "status BETWEEN 1 AND 4"));
            e.HasIndex(r => new { r.OperatorUscc, r.ResidentUscc, r.Id });
            e.HasOne<UnitRow>().WithMany().HasForeignKey(r => r.OperatorUscc).OnDelete(DeleteBehavior.Restrict);
            e.HasOne<UnitRow>().WithMany().HasForeignKey(r => r.ResidentUscc).OnDelete(DeleteBehavior.Restrict);
        });

        model.Entity<OpcOperatorConfirmationRow>(e =>
        {
            e.ToTable("opc_operator_confirmations");
            e.HasIndex(r => new { r.OperatorUscc, r.Id });
            e.HasOne<UnitRow>().WithMany().HasForeignKey(r => r.OperatorUscc).OnDelete(DeleteBehavior.Restrict);
        });

        model.Entity<RedemptionBatchRow>(e => e.ToTable("redemption_batches"));

        model.Entity<RedemptionRow>(e =>
        {
            // A claw-back takes at most what the application still holds in its stage, so what is held and what was
            // clawed back together never pass what was applied for; once reviewed, what is held never passes what was
            // approved, and what is paid never passes it either.
            e.ToTable("redemptions", t => t.HasCheckConstraint("ck_redemptions_amounts",
                "requested_fen > 0 AND (approved_fen IS NULL OR approved_fen BETWEEN 0 AND requested_fen)"
                + " AND outstanding_fen >= 0 AND clawed_back_fen >= 0 AND outstanding_fen + clawed_back_fen <= requested_fen"
                + " AND outstanding_fen <= coalesce(approved_fen, requested_fen) AND disbursed_fen BETWEEN 0 AND coalesce(approved_fen, 0)"));
            e.HasOne<RedemptionBatchRow>().WithMany().HasForeignKey(r => r.BatchId).OnDelete(DeleteBehavior.Restrict);
            e.HasOne<UnitRow>().WithMany().HasForeignKey(r => r.UnitUscc).OnDelete(DeleteBehavior.Restrict);
            e.HasMany(r => r.Evidence).WithOne().HasForeignKey(v => v.RedemptionId).OnDelete(DeleteBehavior.Restrict);
            e.HasIndex(r => new { r.UnitUscc, r.Year });
        });

        model.Entity<EvidenceRow>(e => e.ToTable("redemption_evidence"));

        model.Entity<ClawBackRow>(e =>
        {
            e.ToTable("claw_backs", t => t.HasCheckConstraint("ck_claw_backs_amount", "amount_fen > 0"));
            e.HasIndex(c => new { c.TargetKind, c.TargetId });
        });

        model.Entity<CheckpointRow>(e => e.ToTable("checkpoints"));

        model.Entity<PeriodClosingRow>(e =>
        {
            e.ToTable("period_closings", t => t.HasCheckConstraint("ck_period_closings_month", "month BETWEEN 0 AND 12"));
            e.HasIndex(c => new { c.Year, c.Month }).IsUnique();
            e.HasOne<CheckpointRow>().WithMany().HasForeignKey(c => c.CheckpointId).OnDelete(DeleteBehavior.Restrict);
        });

        AlertModel.Configure(model);

        model.Entity<IdempotencyRow>(e =>
        {
            e.ToTable("idempotency_records");
            e.HasKey(r => new { r.Caller, r.RequestId });
            e.Property(r => r.RequestId).HasMaxLength(64);
        });
    }
}
