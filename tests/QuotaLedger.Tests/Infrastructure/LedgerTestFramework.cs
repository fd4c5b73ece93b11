using System.Reflection;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: TestFramework("QuotaLedger.Tests.Infrastructure.LedgerTestFramework", "QuotaLedger.Tests")]

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>xunit's own framework with two things around the run that xunit 2 has no attribute for: the slow classes
/// (<c>[Trait("Category", "Slow")]</c>) start first, since the longest work started first keeps a parallel run short
/// (the fast classes fill the other threads around them); and after the last test the run's PostgreSQL server
/// (<see cref="PostgresServer.Shared"/>) is cleaned up or stopped, a failure failing the run as an assembly cleanup
/// failure.</summary>
public sealed class LedgerTestFramework(IMessageSink messageSink) : XunitTestFramework(messageSink)
{
    public const string SlowCategory = "Slow";

    protected override ITestFrameworkExecutor CreateExecutor(AssemblyName assemblyName) =>
        new Executor(assemblyName, SourceInformationProvider, DiagnosticMessageSink);

    private sealed class Executor(AssemblyName assemblyName, ISourceInformationProvider sourceInformationProvider, IMessageSink diagnosticMessageSink)
        : XunitTestFrameworkExecutor(assemblyName, sourceInformationProvider, diagnosticMessageSink)
    {
        // async void as in the base: the runner reports the run's end through the message sink.
        protected override async void RunTestCases(IEnumerable<IXunitTestCase> testCases, IMessageSink executionMessageSink, ITestFrameworkExecutionOptions executionOptions)
        {
            using var runner = new Runner(TestAssembly, testCases, DiagnosticMessageSink, executionMessageSink, executionOptions);
            await runner.RunAsync();
        }
    }

    private sealed class Runner(
        ITestAssembly testAssembly,
        IEnumerable<IXunitTestCase> testCases,
        IMessageSink diagnosticMessageSink,
        IMessageSink executionMessageSink,
        ITestFrameworkExecutionOptions executionOptions)
        : XunitTestAssemblyRunner(testAssembly, testCases, diagnosticMessageSink, executionMessageSink, executionOptions)
    {
        protected override async Task AfterTestAssemblyStartingAsync()
        {
            await base.AfterTestAssemblyStartingAsync();
            var slow = TestCases
                .Where(c => c.Traits.TryGetValue("Category", out var values) && values.Contains(SlowCategory))
                .Select(c => c.TestMethod.TestClass.TestCollection.UniqueID)
                .ToHashSet();
            TestCollectionOrderer = new SlowFirst(TestCollectionOrderer, slow);
        }

        protected override async Task BeforeTestAssemblyFinishedAsync()
        {
            await Aggregator.RunAsync(PostgresServer.DisposeSharedAsync);
            await base.BeforeTestAssemblyFinishedAsync();
        }
    }

    /// <summary>The collections of slow tests first, each part in the order the configured orderer gives.</summary>
    private sealed class SlowFirst(ITestCollectionOrderer then, HashSet<Guid> slow) : ITestCollectionOrderer
    {
        public IEnumerable<ITestCollection> OrderTestCollections(IEnumerable<ITestCollection> testCollections) =>
            then.OrderTestCollections(testCollections).OrderBy(collection => slow.Contains(collection.UniqueID) ? 0 : 1);
    }
}
