using Grpc.Core;
using Microsoft.Extensions.Configuration;
using QuotaLedger.Server;
using QuotaLedger.Server.Security;
using QuotaLedger.Tests.Infrastructure;
using QuotaLedger.V1;

namespace QuotaLedger.Tests;

/// <summary>Every caller authenticated, every call limited to what is its own: roles against services through a real
/// TLS port, with real client certificates and bearer tokens.</summary>
public sealed class SecurityTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private static readonly DateTimeOffset s_now = new(2026, 6, 3, 2, 0, 0, TimeSpan.Zero);

    private sealed record World(SecureServer Server, Clients Bureau, Clients ProviderA, string A, Clients ProviderB, string B,
        Clients UnitA, string U, Clients Expert, string ContractA, string ContractB);

    private async Task<World> StartWorldAsync(SecureServer server)
    {
        string a = TestUscc.New(), b = TestUscc.New(), u = TestUscc.New(), u2 = TestUscc.New();
        var bureau = server.As(server.Certificate(TestUscc.New(), Role.Bureau));
        var providerA = server.As(server.Certificate(a, Role.Provider));
        var providerB = server.WithToken(server.Token(b, Role.Provider));
        var unitA = server.WithToken(server.Token(u, Role.Unit));
        var expert = server.As(server.Certificate(TestUscc.New(), Role.Expert));

        await providerA.Registry.RegisterProviderAsync(new RegisterProviderRequest { RequestId = Ids.New(), ProviderUscc = a, Name = "A", Licences = { "IDC-A-1" } });
        await bureau.Registry.RegisterProviderAsync(new RegisterProviderRequest { RequestId = Ids.New(), ProviderUscc = b, Name = "B", Licences = { "ICP-B-1" } });
        await unitA.Registry.RegisterUnitAsync(new RegisterUnitRequest { RequestId = Ids.New(), UnitUscc = u, Name = "U", Kind = UnitKind.Enterprise, Materials = { Scenario.Materials() } });
        await bureau.Registry.RegisterUnitAsync(new RegisterUnitRequest { RequestId = Ids.New(), UnitUscc = u2, Name = "U2", Kind = UnitKind.University, Materials = { Scenario.Materials() } });
        await providerA.Registry.ReviewUnitAsync(new ReviewUnitRequest { RequestId = Ids.New(), ProviderUscc = a, UnitUscc = u, Approve = true });
        await providerB.Registry.ReviewUnitAsync(new ReviewUnitRequest { RequestId = Ids.New(), ProviderUscc = b, UnitUscc = u2, Approve = true });
        var contractA = "SEC-A-" + Ids.New()[..8];
        var contractB = "SEC-B-" + Ids.New()[..8];
        await providerA.Registry.RegisterContractAsync(Contract(contractA, a, u));
        await providerB.Registry.RegisterContractAsync(Contract(contractB, b, u2));
        return new World(server, bureau, providerA, a, providerB, b, unitA, u, expert, contractA, contractB);
    }

    [Fact]
    public async Task Callers_without_valid_credentials_are_UNAUTHENTICATED_and_health_stays_open()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now);
        var anonymous = server.As(null);
        await Refusal.AssertAsync(() => anonymous.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 }).ResponseAsync,
            StatusCode.Unauthenticated, "UNAUTHENTICATED");

        var foreignCa = DevelopmentPki.CreateCa("Somebody else's CA");
        var foreign = server.As(DevelopmentPki.CreateCaller(foreignCa, TestUscc.New(), Role.Bureau));
        await Refusal.AssertAsync(() => foreign.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 }).ResponseAsync,
            StatusCode.Unauthenticated, "UNAUTHENTICATED");

        using var otherKey = DevelopmentPki.CreateTokenKey();
        var forged = server.WithToken(DevelopmentPki.CreateToken(otherKey, TestUscc.New(), [Role.Bureau], s_now, TimeSpan.FromHours(1)));
        await Refusal.AssertAsync(() => forged.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 }).ResponseAsync,
            StatusCode.Unauthenticated, "UNAUTHENTICATED");
        var expired = server.WithToken(DevelopmentPki.CreateToken(server.TokenKey, TestUscc.New(), [Role.Bureau], s_now.AddHours(-3), TimeSpan.FromHours(1)));
        await Refusal.AssertAsync(() => expired.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 }).ResponseAsync,
            StatusCode.Unauthenticated, "UNAUTHENTICATED");

        var health = new Grpc.Health.V1.Health.HealthClient(server.Channel());
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving,
            (await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest())).Status);

        var withCertificate = server.As(server.Certificate(TestUscc.New(), Role.Expert));
        Assert.Equal(5_000, (await withCertificate.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 })).SelfControllableRatioBp);
    }

    [Fact]
    public async Task A_provider_grants_deducts_and_reads_only_through_its_own_contracts_and_grants()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now);
        var w = await StartWorldAsync(server);

        var grantA = await w.ProviderA.Ledger.GrantAsync(Grant(w.A, w.ContractA, 10_000));
        var grantB = await w.ProviderB.Ledger.GrantAsync(Grant(w.B, w.ContractB, 10_000));

        // Acting in another provider's name, or on its grant.
        await Refusal.AssertAsync(() => w.ProviderA.Ledger.GrantAsync(Grant(w.B, w.ContractB, 1_000)).ResponseAsync, StatusCode.PermissionDenied, "NOT_YOUR_RESOURCE");
        await Refusal.AssertAsync(() => w.ProviderA.Ledger.DeductAsync(Deduct(w.B, grantB.GrantId)).ResponseAsync, StatusCode.PermissionDenied, "NOT_YOUR_RESOURCE");
        // Its own name on another's grant: the grant is unknown to it, as one that does not exist.
        await Refusal.AssertAsync(() => w.ProviderA.Ledger.DeductAsync(Deduct(w.A, grantB.GrantId)).ResponseAsync, StatusCode.NotFound, "UNKNOWN_GRANT");
        await Refusal.AssertAsync(() => w.ProviderA.Ledger.ReleaseAsync(new ReleaseRequest { RequestId = Ids.New(), ProviderUscc = w.A, GrantId = grantB.GrantId, StatementRef = "JS" }).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_GRANT");
        await Refusal.AssertAsync(() => w.ProviderA.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantB.GrantId }).ResponseAsync, StatusCode.NotFound, "UNKNOWN_GRANT");
        await Refusal.AssertAsync(() => w.ProviderA.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = w.B, ContractNo = w.ContractB }).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_CONTRACT");
        await Refusal.AssertAsync(() => ReadAll(w.ProviderA, new ListEntriesRequest { ProviderUscc = w.B }), StatusCode.PermissionDenied, "NOT_YOUR_RESOURCE");
        await Refusal.AssertAsync(() => w.ProviderA.Registry.ReviewUnitAsync(new ReviewUnitRequest { RequestId = Ids.New(), ProviderUscc = w.B, UnitUscc = w.U, Approve = true }).ResponseAsync,
            StatusCode.PermissionDenied, "NOT_YOUR_RESOURCE");

        // The bureau's calls.
        await Refusal.AssertAsync(() => w.ProviderA.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1 }).ResponseAsync,
            StatusCode.PermissionDenied, "ROLE_REQUIRED");
        await Refusal.AssertAsync(() => w.ProviderA.Admin.SetStandingAsync(new SetStandingRequest { RequestId = Ids.New(), Uscc = w.B, Standing = Standing.Suspended, Reason = "x" }).ResponseAsync,
            StatusCode.PermissionDenied, "ROLE_REQUIRED");
        await Refusal.AssertAsync(() => w.ProviderA.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() }).ResponseAsync,
            StatusCode.PermissionDenied, "ROLE_REQUIRED");

        // Nothing of the refused calls happened.
        Assert.Equal(10_000, (await w.Bureau.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantB.GrantId })).RemainingFen);
        Assert.Equal(10_000, (await w.Bureau.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = w.B, ContractNo = w.ContractB })).GrantedFen);
        Assert.Equal(Standing.Good, (await w.Bureau.Registry.GetProviderAsync(new GetProviderRequest { ProviderUscc = w.B })).Standing);

        // What is its own works, and its statement holds only its own entries, each naming the caller.
        await w.ProviderA.Ledger.DeductAsync(Deduct(w.A, grantA.GrantId));
        var statement = await ReadAll(w.ProviderA, new ListEntriesRequest());
        Assert.Equal(2, statement.Count);
        Assert.All(statement, e => Assert.Equal(w.A, e.ProviderUscc));
        Assert.All(statement, e => Assert.Equal(w.A, e.Caller));
        var bEntries = await ReadAll(w.Bureau, new ListEntriesRequest { GrantId = grantB.GrantId });
        Assert.Equal(w.B, Assert.Single(bEntries).Caller);
    }

    [Fact]
    public async Task A_unit_reads_only_its_own_and_the_bureau_alone_funds_sets_standing_and_runs_passes()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now);
        var w = await StartWorldAsync(server);
        var grantA = await w.ProviderA.Ledger.GrantAsync(Grant(w.A, w.ContractA, 10_000));
        var grantB = await w.ProviderB.Ledger.GrantAsync(Grant(w.B, w.ContractB, 10_000));

        Assert.Equal(10_000, (await w.UnitA.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = w.U, Year = 2026 })).GrantedOpenFen);
        Assert.Equal(w.U, (await w.UnitA.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantA.GrantId })).UnitUscc);
        Assert.Single(await ReadAll(w.UnitA, new ListEntriesRequest()));
        var otherUnit = (await w.Bureau.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantB.GrantId })).UnitUscc;
        await Refusal.AssertAsync(() => w.UnitA.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = otherUnit, Year = 2026 }).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_UNIT");
        await Refusal.AssertAsync(() => w.UnitA.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grantB.GrantId }).ResponseAsync, StatusCode.NotFound, "UNKNOWN_GRANT");
        await Refusal.AssertAsync(() => ReadAll(w.UnitA, new ListEntriesRequest { UnitUscc = otherUnit }), StatusCode.PermissionDenied, "NOT_YOUR_RESOURCE");
        await Refusal.AssertAsync(() => w.UnitA.Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = otherUnit }).ResponseAsync, StatusCode.PermissionDenied, "NOT_YOUR_RESOURCE");
        await Refusal.AssertAsync(() => w.UnitA.Ledger.GrantAsync(Grant(w.A, w.ContractA, 1_000)).ResponseAsync, StatusCode.PermissionDenied, "ROLE_REQUIRED");
        await Refusal.AssertAsync(() => w.UnitA.Admin.TrialBalanceAsync(new TrialBalanceRequest()).ResponseAsync, StatusCode.PermissionDenied, "ROLE_REQUIRED");
        await Refusal.AssertAsync(() => w.ProviderB.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = w.U, Year = 2026 }).ResponseAsync,
            StatusCode.NotFound, "UNKNOWN_UNIT");
        Assert.Equal(10_000, (await w.ProviderA.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = w.U, Year = 2026 })).GrantedOpenFen);

        // The expert reads the books but changes nothing; the bureau does.
        Assert.True((await w.Expert.Admin.TrialBalanceAsync(new TrialBalanceRequest { Year = 2026 })).Balanced);
        await Refusal.AssertAsync(() => w.Expert.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1 }).ResponseAsync,
            StatusCode.PermissionDenied, "ROLE_REQUIRED");
        await Refusal.AssertAsync(() => w.Bureau.Ledger.GrantAsync(Grant(w.A, w.ContractA, 1_000)).ResponseAsync, StatusCode.PermissionDenied, "ROLE_REQUIRED");
        await w.Bureau.Admin.SetStandingAsync(new SetStandingRequest { RequestId = Ids.New(), Uscc = w.U, Standing = Standing.Suspended, Reason = "inspection" });
        await Refusal.AssertAsync(() => w.ProviderA.Ledger.GrantAsync(Grant(w.A, w.ContractA, 1_000)).ResponseAsync, StatusCode.FailedPrecondition, "PARTY_SUSPENDED");
        await w.Bureau.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() });
    }

    [Fact]
    public async Task Each_role_against_each_service_gets_exactly_what_it_may()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now);
        var w = await StartWorldAsync(server);
        var grant = await w.ProviderA.Ledger.GrantAsync(Grant(w.A, w.ContractA, 5_000));
        var takenRequest = Deduct(w.A, grant.GrantId);
        var taken = await w.ProviderA.Ledger.DeductAsync(takenRequest);
        var q = TestUscc.New();
        var providerQ = server.As(server.Certificate(q, Role.Provider));
        await w.Bureau.Registry.RegisterProviderAsync(new RegisterProviderRequest { RequestId = Ids.New(), ProviderUscc = q, Name = "Q", Licences = { "CDN-Q-1" } });
        var unitByCertificate = server.As(server.Certificate(w.U, Role.Unit));
        var expertByToken = server.WithToken(server.Token(TestUscc.New(), Role.Expert));
        var funded = (await w.Bureau.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 })).FundedFen;

        var callers = new (string Name, Clients Clients)[]
        {
            ("bureau", w.Bureau), ("provider", w.ProviderA), ("other provider", providerQ), ("unit", unitByCertificate), ("expert", expertByToken),
        };
        var calls = new (string Name, Func<Clients, Task> Call, string[] Expected)[]
        {
            ("FundBudget", c => c.Admin.FundBudgetAsync(new FundBudgetRequest { RequestId = Ids.New(), Year = 2026, AmountFen = 1 }).ResponseAsync,
                ["OK", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("SetStanding", c => c.Admin.SetStandingAsync(new SetStandingRequest { RequestId = Ids.New(), Uscc = q, Standing = Standing.Good, Reason = "check" }).ResponseAsync,
                ["OK", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("ExpireDueGrants", c => c.Admin.ExpireDueGrantsAsync(new ExpireDueGrantsRequest { RequestId = Ids.New() }).ResponseAsync,
                ["OK", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("TrialBalance", c => c.Admin.TrialBalanceAsync(new TrialBalanceRequest { Year = 2026 }).ResponseAsync,
                ["OK", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "OK"]),
            ("GetProgramYear", c => c.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 }).ResponseAsync,
                ["OK", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "OK"]),
            ("GetYearPolicy", c => c.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 }).ResponseAsync,
                ["OK", "OK", "OK", "OK", "OK"]),
            ("ReviewUnit", c => c.Registry.ReviewUnitAsync(new ReviewUnitRequest { RequestId = Ids.New(), ProviderUscc = w.A, UnitUscc = w.U, Approve = true }).ResponseAsync,
                ["ROLE_REQUIRED", "OK", "NOT_YOUR_RESOURCE", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("GetUnit", c => c.Registry.GetUnitAsync(new GetUnitRequest { UnitUscc = w.U }).ResponseAsync,
                ["OK", "OK", "OK", "OK", "OK"]),
            ("GetContract", c => c.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = w.A, ContractNo = w.ContractA }).ResponseAsync,
                ["OK", "OK", "UNKNOWN_CONTRACT", "OK", "OK"]),
            ("Grant", c => c.Ledger.GrantAsync(Grant(w.A, w.ContractA, 1)).ResponseAsync,
                ["ROLE_REQUIRED", "OK", "NOT_YOUR_RESOURCE", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("Deduct", c => c.Ledger.DeductAsync(Deduct(w.A, grant.GrantId)).ResponseAsync,
                ["ROLE_REQUIRED", "OK", "NOT_YOUR_RESOURCE", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("GetGrant", c => c.Ledger.GetGrantAsync(new GetGrantRequest { GrantId = grant.GrantId }).ResponseAsync,
                ["OK", "OK", "UNKNOWN_GRANT", "OK", "OK"]),
            ("GetUnitYear", c => c.Ledger.GetUnitYearAsync(new GetUnitYearRequest { UnitUscc = w.U, Year = 2026 }).ResponseAsync,
                ["OK", "OK", "UNKNOWN_UNIT", "OK", "OK"]),
            ("GetDeduction by id", c => c.Ledger.GetDeductionAsync(new GetDeductionRequest { DeductionId = taken.DeductionId }).ResponseAsync,
                ["OK", "OK", "UNKNOWN_DEDUCTION", "OK", "OK"]),
            ("GetDeduction by invoice", c => c.Ledger.GetDeductionAsync(new GetDeductionRequest { ProviderUscc = w.A, InvoiceNo = takenRequest.InvoiceNo }).ResponseAsync,
                ["OK", "OK", "UNKNOWN_DEDUCTION", "OK", "OK"]),
            ("VerifyJournal", c => c.Admin.VerifyJournalAsync(new VerifyJournalRequest()).ResponseAsync,
                ["OK", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "OK"]),
            ("OpenBatch", c => c.Redemption.OpenBatchAsync(new OpenBatchRequest
            {
                RequestId = Ids.New(), Year = 2026, ClosesAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(s_now.AddDays(30)),
            }).ResponseAsync,
                ["OK", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("Submit", c => c.Redemption.SubmitAsync(new SubmitRequest { RequestId = Ids.New(), BatchId = 987_654, UnitUscc = w.U, AmountFen = 1, Evidence = { AllEvidence() } }).ResponseAsync,
                ["ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "UNKNOWN_BATCH", "ROLE_REQUIRED"]),
            ("Review", c => c.Redemption.ReviewAsync(new ReviewRequest { RequestId = Ids.New(), RedemptionId = 987_654, ApprovedFen = 1, Reviewer = "r", Reason = "r" }).ResponseAsync,
                ["ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "UNKNOWN_REDEMPTION"]),
            ("Disburse", c => c.Redemption.DisburseAsync(new DisburseRequest { RequestId = Ids.New(), RedemptionId = 987_654, PaymentRef = "p" }).ResponseAsync,
                ["UNKNOWN_REDEMPTION", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("ClawBack", c => c.Redemption.ClawBackAsync(new ClawBackRequest { RequestId = Ids.New(), GrantId = 987_654_321, AmountFen = 1, Reason = "r" }).ResponseAsync,
                ["UNKNOWN_GRANT", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("Gift", c => c.Ledger.GiftAsync(new GiftRequest { RequestId = Ids.New(), OperatorUscc = w.U, GrantId = grant.GrantId, ResidentUscc = w.U, AmountFen = 1 }).ResponseAsync,
                ["ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "NOT_TRANSFERABLE", "ROLE_REQUIRED"]),
            ("MakeCheckpoint", c => c.Admin.MakeCheckpointAsync(new MakeCheckpointRequest { RequestId = Ids.New() }).ResponseAsync,
                ["OK", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("GetCheckpoint", c => c.Admin.GetCheckpointAsync(new GetCheckpointRequest()).ResponseAsync,
                ["OK", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "OK"]),
            ("EndRelatedParty", c => c.Registry.EndRelatedPartyAsync(new EndRelatedPartyRequest { RequestId = Ids.New(), ProviderUscc = w.A, UnitUscc = w.U, Reason = "r" }).ResponseAsync,
                ["OK", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("ConfirmOpcOperator", c => c.Registry.ConfirmOpcOperatorAsync(new ConfirmOpcOperatorRequest { RequestId = Ids.New(), OperatorUscc = w.U, Confirm = true, Reason = "r" }).ResponseAsync,
                ["INVALID_ARGUMENT", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
            ("ConfirmResidentOpc", c => c.Registry.ConfirmResidentOpcAsync(new ConfirmResidentOpcRequest { RequestId = Ids.New(), OperatorUscc = w.U, ResidentUscc = q, Confirm = true }).ResponseAsync,
                ["UNKNOWN_UNIT", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED", "ROLE_REQUIRED"]),
        };

        var mismatches = new List<string>();
        foreach (var (callName, call, expected) in calls)
        {
            for (var i = 0; i < callers.Length; i++)
            {
                var outcome = await OutcomeAsync(() => call(callers[i].Clients));
                if (outcome != expected[i])
                {
                    mismatches.Add($"{callers[i].Name} {callName}: expected {expected[i]}, got {outcome}");
                }
            }
        }

        Assert.Empty(mismatches);

        // Only the allowed calls changed anything: one fen funded, one grant of 1 fen, one deduction (besides the one
        // made before).
        Assert.Equal(funded + 1, (await w.Bureau.Admin.GetProgramYearAsync(new GetProgramYearRequest { Year = 2026 })).FundedFen);
        var contract = await w.Bureau.Registry.GetContractAsync(new GetContractRequest { ProviderUscc = w.A, ContractNo = w.ContractA });
        Assert.Equal(5_001, contract.GrantedFen);
        Assert.Equal(2 * 2_000, contract.InvoicedFen);
    }

    private static IEnumerable<Evidence> AllEvidence() =>
        Enumerable.Range(1, 7).Select(k => new Evidence { Kind = (EvidenceKind)k, Reference = $"doc-{k}", Sha256 = new string('a', 64) });

    private static async Task<string> OutcomeAsync(Func<Task> call)
    {
        try
        {
            await call();
            return "OK";
        }
        catch (RpcException e)
        {
            return Refusal.ReasonOf(e) is { Length: > 0 } reason ? reason : e.StatusCode.ToString();
        }
    }

    [Fact]
    public async Task A_request_id_replayed_by_another_caller_is_a_new_request_not_a_leak()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now);
        var w = await StartWorldAsync(server);
        var shared = Ids.New();

        var first = await w.ProviderA.Ledger.GrantAsync(With(Grant(w.A, w.ContractA, 3_000), shared));
        var second = await w.ProviderB.Ledger.GrantAsync(With(Grant(w.B, w.ContractB, 4_000), shared));
        Assert.NotEqual(first.GrantId, second.GrantId);
        Assert.Equal(4_000, second.AmountFen);
        Assert.Equal(first, await w.ProviderA.Ledger.GrantAsync(With(Grant(w.A, w.ContractA, 3_000), shared)));

        // The same identity over a certificate or a token is one caller.
        var aByToken = server.WithToken(server.Token(w.A, Role.Provider));
        Assert.Equal(first, await aByToken.Ledger.GrantAsync(With(Grant(w.A, w.ContractA, 3_000), shared)));
    }

    [Fact]
    public async Task A_caller_over_its_rate_limit_gets_RESOURCE_EXHAUSTED_with_a_retry_hint()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now, new Dictionary<string, string?>
        {
            ["RateLimits:PermitsPerSecond"] = "1",
            ["RateLimits:Burst"] = "3",
        });
        var caller = server.As(server.Certificate(TestUscc.New(), Role.Expert));
        var other = server.As(server.Certificate(TestUscc.New(), Role.Expert));
        for (var i = 0; i < 3; i++)
        {
            await caller.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 });
        }

        var error = await Refusal.AssertAsync(() => caller.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 }).ResponseAsync,
            StatusCode.ResourceExhausted, "RATE_LIMITED");
        var retry = error.GetRpcStatus()!.GetDetail<Google.Rpc.RetryInfo>();
        Assert.NotNull(retry);
        Assert.True(retry.RetryDelay.ToTimeSpan() > TimeSpan.Zero);
        await other.Admin.GetYearPolicyAsync(new GetYearPolicyRequest { Year = 2026 });
    }

    [Fact]
    public async Task Oversized_messages_and_strings_are_refused_with_clear_errors()
    {
        await using var server = await SecureServer.StartAsync(fixture.Database, s_now);
        var uscc = TestUscc.New();
        var provider = server.As(server.Certificate(uscc, Role.Provider));
        var huge = await Assert.ThrowsAsync<RpcException>(() => provider.Registry.RegisterProviderAsync(new RegisterProviderRequest
        {
            RequestId = Ids.New(), ProviderUscc = uscc, Name = new string('x', 1_100_000), // Over Requests:MaxBodyBytes (1 MiB).
        }).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, huge.StatusCode);
        Assert.Equal("REQUEST_TOO_LARGE", huge.GetRpcStatus()?.GetDetail<Google.Rpc.ErrorInfo>()?.Reason);
        await Refusal.AssertAsync(() => provider.Registry.RegisterProviderAsync(new RegisterProviderRequest
        {
            RequestId = Ids.New(), ProviderUscc = uscc, Name = new string('x', 300),
        }).ResponseAsync, StatusCode.InvalidArgument, "INVALID_ARGUMENT");
    }

    [Fact]
    public void Development_mode_refuses_to_listen_beyond_loopback_before_it_listens()
    {
        var refused = Assert.Throws<StartupRefusedException>(() => QuotaLedgerHost.Build([], builder =>
        {
            builder.Environment.EnvironmentName = "Development";
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["ConnectionStrings:Ledger"] = fixture.Database.ConnectionString,
                ["Kestrel:Endpoints:Grpc:Url"] = "http://0.0.0.0:0",
                ["Kestrel:Endpoints:Grpc:Protocols"] = "Http2",
            });
        }));
        Assert.Contains("loopback only", refused.Message, StringComparison.Ordinal);
    }

    private static async Task<List<JournalEntry>> ReadAll(Clients clients, ListEntriesRequest request)
    {
        using var call = clients.Ledger.ListEntries(request);
        var entries = new List<JournalEntry>();
        await foreach (var entry in call.ResponseStream.ReadAllAsync())
        {
            entries.Add(entry);
        }

        return entries;
    }

    private static RegisterContractRequest Contract(string contractNo, string provider, string unit) => new()
    {
        RequestId = Ids.New(), ContractNo = contractNo, ProviderUscc = provider, UnitUscc = unit, Accelerator = "Ascend 910B",
        SelfControllable = true, ServiceMode = ServiceMode.CloudInstance, UnitPriceFen = 2_000, AmountFen = 10_000_000, Purpose = "training", SignedOn = "2026-02-01",
    };

    private static GrantRequest Grant(string provider, string contractNo, long amount) =>
        new() { RequestId = Ids.New(), ProviderUscc = provider, ContractNo = contractNo, AmountFen = amount };

    private static DeductRequest Deduct(string provider, long grantId) => new()
    {
        RequestId = Ids.New(), ProviderUscc = provider, GrantId = grantId, InvoiceNo = "SEC-" + Ids.New()[..12], InvoiceAmountFen = 2_000, InvoiceDate = "2026-06-01",
    };

    private static GrantRequest With(GrantRequest request, string requestId)
    {
        request.RequestId = requestId;
        return request;
    }
}
