using System.Reflection;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using QuotaLedger.Client;
using QuotaLedger.Tests.Infrastructure;
using Reason = QuotaLedger.Server.Rules.Reason;
using ReasonExtensions = QuotaLedger.Server.Rules.ReasonExtensions;
using ServerUscc = QuotaLedger.Server.Rules.Uscc;
using Timestamp = Google.Protobuf.WellKnownTypes.Timestamp;

namespace QuotaLedger.Tests;

/// <summary>The SDK's value types and its seams for partners' own tests.</summary>
public sealed class SdkTypesTests(LedgerFixture fixture) : IClassFixture<LedgerFixture>
{
    private const string Alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";

    [Fact]
    public async Task Uscc_is_checked_by_the_rule_the_server_refuses_by()
    {
        var valid = TestUscc.New();
        Assert.Equal(valid, Uscc.Parse(valid).Value);
        Assert.Equal(valid, (string)Uscc.FromFirst17(valid[..17]));
        var typo = valid[..17] + Alphabet[(Alphabet.IndexOf(valid[17]) + 1) % Alphabet.Length];
        Assert.False(Uscc.TryParse(typo, null, out _));
        Assert.Throws<FormatException>(() => Uscc.Parse(typo));
        Assert.Throws<FormatException>(() => Uscc.Parse(valid.ToLowerInvariant()));

        for (var i = 0; i < 5_000; i++)
        {
            var candidate = i % 2 == 0
                ? Uscc.FromFirst17(RandomCode(17)).Value[..17] + Alphabet[RandomNumberGenerator.GetInt32(Alphabet.Length)]
                : RandomCode(RandomNumberGenerator.GetInt32(16, 20));
            Assert.Equal(ServerUscc.IsValid(candidate), Uscc.IsValid(candidate));
        }

        using var client = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = fixture.Server.BaseAddress, HttpHandler = fixture.Server.CreateHandler() });
        Assert.Equal(LedgerReason.InvalidUscc, (await Assert.ThrowsAsync<QuotaLedgerException>(() => client.GetUnitAsync(typo))).Reason);
        Assert.Equal(LedgerReason.UnknownUnit, (await Assert.ThrowsAsync<QuotaLedgerException>(() => client.GetUnitAsync(Uscc.Parse(valid)))).Reason);
    }

    [Fact]
    public async Task Fen_arithmetic_is_checked_and_its_voucher_share_is_the_ledgers()
    {
        Assert.Equal(new Fen(600), new Fen(200) * 3);
        Assert.Equal(new Fen(-200), -new Fen(200));
        Assert.Equal(Fen.FromYuan(6), Fen.Sum([Fen.FromYuan(1), Fen.FromYuan(2), Fen.FromYuan(3)]));
        Assert.Equal(new Fen(1), Fen.Min(new Fen(1), new Fen(2)));
        Assert.Equal(12.34m, new Fen(1_234).Yuan);
        Assert.True(new Fen(-1).IsNegative && Fen.Zero.IsZero && new Fen(1).IsPositive);
        Assert.Throws<OverflowException>(() => new Fen(long.MaxValue) + new Fen(1));
        Assert.Throws<OverflowException>(() => new Fen(long.MaxValue / 2) * 3);
        Assert.Throws<ArgumentOutOfRangeException>(() => new Fen(100).ShareAt(10_001));
        Assert.Equal(new Fen(3_703), new Fen(12_345).ShareAt(3_000));

        var deal = await fixture.Server.NewDealAsync();
        var grant = await fixture.Server.GrantAsync(deal, 1_000_000);
        using var client = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = fixture.Server.BaseAddress, HttpHandler = fixture.Server.CreateHandler() });
        foreach (var invoice in new[] { 1_999L, 12_345L, 99_999L })
        {
            var deducted = await client.DeductAsync(deal.Provider, grant.GrantId, "SHARE-" + Ids.New()[..8], new Fen(invoice), new DateOnly(2026, 6, 1));
            Assert.Equal(new Fen(invoice).ShareAt(grant.RatioBp), deducted.Requested);
        }
    }

    [Fact]
    public async Task Partners_test_their_refusal_handling_against_a_fake_client_without_a_server()
    {
        var duplicate = new QuotaLedgerException(LedgerReason.DuplicateInvoice, "already deducted",
            metadata: new Dictionary<string, string> { ["deductionId"] = "42", ["grantId"] = "7" });
        Assert.Equal(Grpc.Core.StatusCode.AlreadyExists, duplicate.StatusCode);
        Assert.Equal("DUPLICATE_INVOICE", duplicate.ReasonWord);
        Assert.Equal(42, duplicate.ExistingDeductionId);
        Assert.Equal("already taken by deduction 42", await new InvoicePoster(FakeLedger.Throwing(duplicate)).PostAsync("FP-1"));

        var unknown = new QuotaLedgerUnavailableException("no answer", "req-9", outcomeUnknown: true, attempts: 5);
        Assert.Equal("retry later with req-9", await new InvoicePoster(FakeLedger.Throwing(unknown)).PostAsync("FP-2"));

        var empty = new QuotaLedgerException(LedgerReason.GrantEmpty, "nothing left");
        Assert.Equal("refused: GRANT_EMPTY", await new InvoicePoster(FakeLedger.Throwing(empty)).PostAsync("FP-3"));

        var applied = new DeductionResult(1, new Fen(500), new Fen(500), new Fen(9_500), new UnitYearFigures("u", 2026, new Fen(1), new Fen(1), new Fen(1), Fen.Zero, new Fen(1)), null);
        Assert.Equal("applied 5.00 yuan", await new InvoicePoster(FakeLedger.Returning(applied)).PostAsync("FP-4"));

        await Assert.ThrowsAsync<OperationCanceledException>(() => new InvoicePoster(FakeLedger.Throwing(new OperationCanceledException())).PostAsync("FP-5"));
    }

    [Fact]
    public void Every_reason_word_of_the_server_is_typed_in_the_sdk_with_the_same_status()
    {
        foreach (var reason in Enum.GetValues<Reason>())
        {
            var typed = LedgerReasons.Parse(ReasonExtensions.Word(reason));
            Assert.NotEqual(LedgerReason.Unknown, typed);
            Assert.Equal(ReasonExtensions.Word(reason), LedgerReasons.Word(typed));
            Assert.Equal(ReasonExtensions.Status(reason), LedgerReasons.Status(typed));
        }

        Assert.All(Enum.GetValues<LedgerReason>().Where(r => r != LedgerReason.Unknown),
            typed => Assert.True(ReasonExtensions.TryParseWord(LedgerReasons.Word(typed), out _), $"{typed} is not a word the server knows"));
    }

    [Fact]
    public void The_sdk_readme_says_what_every_reason_means_and_which_calls_can_answer_it()
    {
        var readme = File.ReadAllText(Path.Combine(PackageTests.RepositoryRoot(), "src", "ClientSdk", "README.md"));
        var callRows = readme.Split('\n').Where(line => line.StartsWith("| ", StringComparison.Ordinal) && line.Contains("Service.", StringComparison.Ordinal)).ToList();
        string[] everyCall = ["UNAUTHENTICATED", "RATE_LIMITED", "OVERLOADED", "STORE_UNAVAILABLE", "REQUEST_TOO_LARGE", "MALFORMED_REQUEST"];
        foreach (var reason in Enum.GetValues<Reason>())
        {
            var word = ReasonExtensions.Word(reason);
            var status = string.Concat(ReasonExtensions.Status(reason).ToString().Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : char.ToUpperInvariant(c).ToString()));
            Assert.Contains($"| `{word}` | {status} | ", readme, StringComparison.Ordinal);
            Assert.True(everyCall.Contains(word) || callRows.Any(row => row.Contains($"`{word}`", StringComparison.Ordinal)), $"No call in the README's table answers {word}.");
        }

        foreach (var service in new[] { V1.AdminService.Descriptor, V1.RegistryService.Descriptor, V1.LedgerService.Descriptor, V1.RedemptionService.Descriptor, V1.AlertService.Descriptor })
        {
            Assert.All(service.Methods, method => Assert.Contains(callRows, row => row.StartsWith($"| {service.Name}.{method.Name} |", StringComparison.Ordinal)));
        }
    }

    [Fact]
    public async Task A_closing_and_a_period_export_come_through_as_the_sdks_types_without_a_server()
    {
        var closedAt = new DateTimeOffset(2027, 1, 5, 2, 0, 0, TimeSpan.Zero);
        var closing = new V1.Closing
        {
            ClosingId = 3, Year = 2026, Month = 0, ClosedAt = Timestamp.FromDateTimeOffset(closedAt), ClosedBy = "bureau", CheckpointId = 9,
            Digest = ByteString.CopyFrom(0xAB, 0x01),
            Decoded = new V1.ClosingBody
            {
                Year = 2026, Entries = 12, SettledFen = 500, SettlementEntryId = 77,
                Figures =
                {
                    new V1.ClosingFigures
                    {
                        Scope = V1.ClosingScope.Programme, Year = 2026, AccountKind = V1.AccountKind.Settled, ClosingFen = 500,
                        Movements = { new V1.Movement { Kind = V1.EntryKind.YearSettlement, Fen = 500 } },
                    },
                },
                UnitYears = { new V1.ClosingUnitYear { UnitUscc = "U", Year = 2026, CapFen = 10, DeductedFen = 4, HeadroomFen = 6 } },
            },
            Corrections = { new V1.Correction { EntryId = 80, Kind = V1.EntryKind.ClawBack, CreatedAt = Timestamp.FromDateTimeOffset(closedAt), ReversesEntryId = 40, Year = 2026, AmountFen = 100 } },
        };
        string[] lines = ["{\"kind\":\"closing\"}", "{\"kind\":\"entry\"}"];
        using var client = new QuotaLedgerClient(new CannedInvoker(closing.ToByteArray(), [.. lines.Select(l => new V1.ExportLine { Line = l }.ToByteArray())]),
            new QuotaLedgerClientOptions());

        var read = await client.GetClosingAsync(2026, 0);
        Assert.Equal((3L, 2026, 0, closedAt, "ab01", 12L, new Fen(500), (long?)77), (read.ClosingId, read.Year, read.Month, read.ClosedAt, read.Digest, read.Entries, read.Settled, read.SettlementEntryId));
        var figure = Assert.Single(read.Figures);
        Assert.Equal((ClosingScope.Programme, (string?)null, AccountKind.Settled, Fen.Zero, new Fen(500)), (figure.Scope, figure.Party, figure.AccountKind, figure.Opening, figure.Closing));
        Assert.Equal(new ClosingMovement(EntryKind.YearSettlement, new Fen(500)), Assert.Single(figure.Movements));
        Assert.Equal(new UnitYearFigures("U", 2026, new Fen(10), Fen.Zero, new Fen(4), Fen.Zero, new Fen(6)), Assert.Single(read.UnitYears));
        Assert.Equal((40L, (string?)null, new Fen(100)), (Assert.Single(read.Corrections).ReversesEntryId, read.Corrections[0].UnitUscc, read.Corrections[0].Amount));
        Assert.Equal(StatusCode.NotFound, new QuotaLedgerException(LedgerReason.UnknownClosing, "not closed").StatusCode);

        // Each line ends with '\n', whatever the writer's own newline: the lines' hashes chain byte for byte.
        var written = new StringWriter { NewLine = "\r\n" };
        Assert.Equal(2, await client.ExportPeriodAsync(2026, 0, written));
        Assert.Equal(string.Concat(lines.Select(l => l + "\n")), written.ToString());
    }

    /// <summary>Answers every unary call with one message and every server stream with a few, each parsed as the call's
    /// own response type (so the test builds them with whichever generated types it sees).</summary>
    private sealed class CannedInvoker(byte[] unary, byte[][] stream) : CallInvoker
    {
        public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request) =>
            new(Task.FromResult(Parse<TResponse>(unary)), Task.FromResult(new Metadata()), () => Status.DefaultSuccess, () => new Metadata(), () => { });

        public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options,
            TRequest request) =>
            new(new Reader<TResponse>([.. stream.Select(Parse<TResponse>)]), Task.FromResult(new Metadata()), () => Status.DefaultSuccess,
                () => new Metadata(), () => { });

        public override TResponse BlockingUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request) =>
            throw new NotSupportedException();

        public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host,
            CallOptions options) => throw new NotSupportedException();

        public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host,
            CallOptions options) => throw new NotSupportedException();

        private static T Parse<T>(byte[] bytes)
        {
            var message = (IMessage)Activator.CreateInstance(typeof(T))!;
            message.MergeFrom(bytes);
            return (T)message;
        }

        private sealed class Reader<T>(List<T> items) : IAsyncStreamReader<T>
        {
            private int _next;

            public T Current { get; private set; } = default!;

            public Task<bool> MoveNext(CancellationToken cancellationToken)
            {
                if (_next == items.Count)
                {
                    return Task.FromResult(false);
                }

                Current = items[_next++];
                return Task.FromResult(true);
            }
        }
    }

    private static string RandomCode(int length) =>
        string.Concat(Enumerable.Range(0, length).Select(_ => Alphabet[RandomNumberGenerator.GetInt32(Alphabet.Length)]));

    /// <summary>A partner's billing code, as it would handle each way a deduction ends.</summary>
    private sealed class InvoicePoster(IQuotaLedgerClient ledger)
    {
        public async Task<string> PostAsync(string invoiceNo)
        {
            try
            {
                var result = await ledger.DeductAsync(TestUscc.New(), 7, invoiceNo, new Fen(1_000), new DateOnly(2026, 6, 1));
                return $"applied {result.Applied.Yuan:0.00} yuan";
            }
            catch (QuotaLedgerException refused) when (refused.ExistingDeductionId is { } earlier)
            {
                return $"already taken by deduction {earlier}";
            }
            catch (QuotaLedgerException refused)
            {
                return $"refused: {refused.ReasonWord}";
            }
            catch (QuotaLedgerUnavailableException unavailable)
            {
                return $"retry later with {unavailable.RequestId}";
            }
        }
    }

    /// <summary>A fake of the whole client in a few lines: every call answers the one result or throws the one exception.</summary>
    public class FakeLedger : DispatchProxy
    {
        private object? _result;
        private Exception? _error;

        public static IQuotaLedgerClient Throwing(Exception error) => Create(null, error);

        public static IQuotaLedgerClient Returning(object result) => Create(result, null);

        private static IQuotaLedgerClient Create(object? result, Exception? error)
        {
            var fake = DispatchProxy.Create<IQuotaLedgerClient, FakeLedger>();
            ((FakeLedger)(object)fake)._result = result;
            ((FakeLedger)(object)fake)._error = error;
            return fake;
        }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            var resultType = targetMethod!.ReturnType.GetGenericArguments().Single();
            var name = _error is null ? nameof(Task.FromResult) : nameof(Task.FromException);
            var task = typeof(Task).GetMethods().Single(m => m.Name == name && m.IsGenericMethodDefinition).MakeGenericMethod(resultType);
            return task.Invoke(null, [_error ?? _result]);
        }
    }
}
