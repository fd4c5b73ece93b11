using QuotaLedger.Server;
using QuotaLedger.Server.Security;
using QuotaLedger.Server.Storage;

if (args.Length > 0 && args[0] == "dev-pki")
{
    return DevelopmentPki.Run(args[1..]);
}

if (args.Length > 0 && args[0] == "audit")
{
    return await QuotaLedger.Server.Admin.JournalAudit.RunAsync(args[1..], Console.Out);
}

if (args.Length > 0 && args[0] == "migrate")
{
    return await Schema.RunMigrateCommandAsync(args[1..]);
}

try
{
    await QuotaLedgerHost.Build(args).RunAsync();
}
catch (StartupRefusedException refused)
{
    await Console.Error.WriteLineAsync($"QuotaLedger refuses to start: {refused.Message}");
    return 2;
}

// Non-zero when the server stopped itself (a development server found listening beyond loopback, say).
return Environment.ExitCode;

/// <summary>The server's entry point, public so tests can host it.</summary>
public partial class Program;
