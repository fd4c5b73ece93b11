using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace QuotaLedger.Server.Storage;

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without starting a database.</summary>
internal sealed class DesignTimeLedgerDb : IDesignTimeDbContextFactory<LedgerDb>
{
    public LedgerDb CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<LedgerDb>()
            .UseNpgsql("Host=localhost;Database=quotaledger")
            .UseSnakeCaseNamingConvention()
            .Options);
}
