using QuotaLedger.Server;
using QuotaLedger.Server.Security;

if (args.Length > 0 && args[0] == "dev-pki")
{
    return DevelopmentPki.Run(args[1..]);
}

await QuotaLedgerHost.Build(args).RunAsync();
return 0;

/// <summary>The server's entry point, public so tests can host it.</summary>
public partial class Program;
