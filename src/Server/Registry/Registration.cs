using QuotaLedger.Server.Rules;
using QuotaLedger.V1;

namespace QuotaLedger.Server.Registry;

/// <summary>What a registration must carry: a provider's licences (Art 5.1), a unit's materials (Art 7), a contract's
/// service mode (Art 8). A registration missing one is refused, so nothing money depends on is self-declared.</summary>
internal static class Registration
{
    /// <summary>The licence kinds Art 5.1 names.</summary>
    public static readonly string[] LicenceKinds = ["IDC", "ISP", "ICP", "CDN", "EDI"];

    /// <summary>The materials every unit submits (Art 7.1-7.4); an SME adds its declaration (Art 7.5).</summary>
    public static readonly MaterialKind[] RequiredMaterials =
        [MaterialKind.ApplicationForm, MaterialKind.RegistrationCertificate, MaterialKind.IntegrityPledge, MaterialKind.CreditReport];

    /// <summary>The licence rule: at least one licence, each written KIND-NUMBER with a kind of Art 5.1.</summary>
    public static IReadOnlyList<string> Licences(IEnumerable<string> licences)
    {
        var list = Validate.TextList(licences, "licences");
        if (list.Count == 0)
        {
            throw new LedgerException(Reason.InvalidArgument,
                $"licences: a provider holds at least one telecom licence of a kind Art 5.1 names ({string.Join(", ", LicenceKinds)}), written KIND-NUMBER, e.g. IDC-B1-20260001.");
        }

        foreach (var licence in list)
        {
            var dash = licence.IndexOf('-', StringComparison.Ordinal);
            if (dash <= 0 || dash == licence.Length - 1 || !LicenceKinds.Contains(licence[..dash], StringComparer.Ordinal))
            {
                throw new LedgerException(Reason.InvalidArgument,
                    $"licences: '{licence}' is not KIND-NUMBER with KIND one of {string.Join(", ", LicenceKinds)} (Art 5.1).");
            }
        }

        return list;
    }

    /// <summary>The materials rule: each of Art 7's materials once at least, the SME declaration when the unit is an SME,
    /// and the SME flag for enterprises only (POLICY.md, Decision). Returns the materials as stored, "KIND:reference".</summary>
    public static List<string> Materials(IEnumerable<Material> materials, V1.UnitKind kind, bool sme)
    {
        if (sme && kind != V1.UnitKind.Enterprise)
        {
            throw new LedgerException(Reason.InvalidArgument,
                $"sme: the SME bonus is for enterprises only (Art 6); a {kind} cannot register as an SME.");
        }

        var list = materials.ToList();
        if (list.Count > 32)
        {
            throw new LedgerException(Reason.InvalidArgument, "materials: at most 32 are accepted.");
        }

        foreach (var material in list)
        {
            if (material.Kind == MaterialKind.Unspecified || !Enum.IsDefined(material.Kind))
            {
                throw new LedgerException(Reason.InvalidArgument, $"materials: kind {material.Kind} is not one Art 7 names.");
            }

            Validate.Text(material.Reference, "materials reference");
        }

        var required = sme ? [.. RequiredMaterials, MaterialKind.SmeDeclaration] : RequiredMaterials;
        var missing = required.Where(k => list.All(m => m.Kind != k)).ToList();
        if (missing.Count > 0)
        {
            throw new LedgerException(Reason.InvalidArgument,
                $"materials lack {string.Join(", ", missing)} (Art 7{(sme ? "; an SME files its SME declaration" : "")}).");
        }

        return [.. list.Select(m => $"{m.Kind}:{m.Reference}")];
    }

    /// <summary>The stored materials back as messages; a stored value that does not parse is shown with no kind.</summary>
    public static IEnumerable<Material> MaterialsOf(IEnumerable<string> stored) => stored.Select(value =>
    {
        var colon = value.IndexOf(':', StringComparison.Ordinal);
        return colon > 0 && Enum.TryParse<MaterialKind>(value[..colon], out var kind)
            ? new Material { Kind = kind, Reference = value[(colon + 1)..] }
            : new Material { Reference = value };
    });

    /// <summary>The contract's service mode (Art 8), which must be one of the enum's modes.</summary>
    public static Storage.ServiceMode ServiceMode(V1.ServiceMode mode) => mode switch
    {
        V1.ServiceMode.BareMetal => Storage.ServiceMode.BareMetal,
        V1.ServiceMode.CloudInstance => Storage.ServiceMode.CloudInstance,
        V1.ServiceMode.Container => Storage.ServiceMode.Container,
        V1.ServiceMode.DedicatedCluster => Storage.ServiceMode.DedicatedCluster,
        _ => throw new LedgerException(Reason.InvalidArgument,
            "service_mode is required: SERVICE_MODE_BARE_METAL, SERVICE_MODE_CLOUD_INSTANCE, SERVICE_MODE_CONTAINER or SERVICE_MODE_DEDICATED_CLUSTER (Art 8)."),
    };
}
