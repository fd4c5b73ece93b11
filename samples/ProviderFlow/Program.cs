// The provider flow through the QuotaLedger.ClientSdk package's public API, as a partner's program runs it against a
// development server (no credentials): dotnet ProviderFlow.dll http://127.0.0.1:5080. Exits 0 when every step did
// what it should, 1 otherwise; the last line printed says which.
using System.Security.Cryptography;
using QuotaLedger.Client;

if (args.Length != 1 || !Uri.TryCreate(args[0], UriKind.Absolute, out var address))
{
    Console.Error.WriteLine("usage: ProviderFlow <server address, e.g. http://127.0.0.1:5080>");
    return 2;
}

try
{
    using var ledger = new QuotaLedgerClient(new QuotaLedgerClientOptions { Address = address });
    var today = DateOnly.FromDateTime(DateTime.UtcNow.AddHours(8)); // the ledger's days are China Standard Time
    var year = today.Year;
    string provider = NewUscc(), unit = NewUscc(), run = Guid.NewGuid().ToString("N")[..10];

    // The bureau sets the year's policy (the figures of the measures) and funds the pool.
    await ledger.SetYearPolicyAsync(new YearPolicy(year, 5_000, 3_000, 1_000, Fen.FromYuan(5_000_000), Fen.FromYuan(10_000), Fen.FromYuan(100_000_000), 1));
    await ledger.FundBudgetAsync(year, Fen.FromYuan(100_000));

    // A provider, and a unit with its Art 7 materials that the provider approves.
    await ledger.RegisterProviderAsync(provider, "ProviderFlow compute provider", ["IDC-B1-20260001"]);
    await ledger.RegisterUnitAsync(new UnitRegistration(unit, "ProviderFlow AI enterprise", UnitKind.Enterprise, Materials:
        [new(MaterialKind.ApplicationForm, "form.pdf"), new(MaterialKind.RegistrationCertificate, "licence.pdf"),
         new(MaterialKind.IntegrityPledge, "pledge.pdf"), new(MaterialKind.CreditReport, "credit.pdf")]));
    await ledger.ReviewUnitAsync(provider, unit, approve: true);

    // The provider registers their contract, grants quota against it and deducts an invoice.
    var terms = new ContractTerms($"PF-{run}", provider, unit, "Ascend 910B", SelfControllable: true, ServiceMode.CloudInstance,
        Fen.FromYuan(20), Fen.FromYuan(100_000), "model training", UsesInnovationVoucher: false, SignedOn: today);
    await ledger.RegisterContractAsync(terms);
    var grant = await ledger.GrantAsync(provider, terms.ContractNo, Fen.FromYuan(10_000));
    var invoice = $"PF-INV-{run}";
    var deduction = await ledger.DeductAsync(provider, grant.GrantId, invoice, Fen.FromYuan(1_000), today);

    // The same invoice a second time is refused: an invoice number is accepted once per provider.
    try
    {
        await ledger.DeductAsync(provider, grant.GrantId, invoice, Fen.FromYuan(1_000), today);
        throw new InvalidOperationException($"Invoice {invoice} was deducted twice.");
    }
    catch (QuotaLedgerException refused) when (refused.Reason == LedgerReason.DuplicateInvoice)
    {
        // The refusal names the deduction that took the invoice; it reads by id or by invoice number.
        var earlier = await ledger.GetDeductionByInvoiceAsync(provider, invoice);
        if (refused.ExistingDeductionId != deduction.DeductionId || earlier.DeductionId != deduction.DeductionId)
        {
            throw new InvalidOperationException($"The refusal named deduction {refused.ExistingDeductionId}, the lookup {earlier.DeductionId}; expected {deduction.DeductionId}.");
        }

        Console.WriteLine($"second deduction of {invoice} refused: {refused.Reason}, taken by deduction {earlier.DeductionId} ({earlier.Applied})");
    }

    var figures = await ledger.GetUnitYearAsync(unit, year);
    if (figures.Deducted != deduction.Applied || figures.GrantedOpen != grant.Amount - deduction.Applied)
    {
        throw new InvalidOperationException($"The unit-year does not show one deduction of {deduction.Applied}: {figures}");
    }

    Console.WriteLine($"runtime: {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}");
    Console.WriteLine($"provider flow ok: grant {grant.GrantId} of {grant.Amount}, invoice {invoice} applied {deduction.Applied} once; " +
        $"unit {unit} in {year}: deducted {figures.Deducted}, open {figures.GrantedOpen}");
    return 0;
}
catch (QuotaLedgerUnavailableException e)
{
    // No definite answer: not a refusal. A real billing system would retry later with e.RequestId.
    Console.Error.WriteLine($"provider flow failed: the ledger gave no definite answer (retry with request id {e.RequestId}): {e.Message}");
    return 1;
}
catch (Exception e)
{
    Console.Error.WriteLine($"provider flow failed: {e}");
    return 1;
}

// A fresh Unified Social Credit Code (GB 32100-2015): "91" (an enterprise), 15 random characters, and the check
// character, which Uscc computes by the rule the server checks.
static string NewUscc()
{
    const string Alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    return Uscc.FromFirst17("91" + string.Concat(Enumerable.Range(0, 15).Select(_ => Alphabet[RandomNumberGenerator.GetInt32(Alphabet.Length)])));
}
