using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace QuotaLedger.Server.Security;

/// <summary>The client certificates the trusted CAs have revoked, from the CRL files of <c>Auth:RevocationListFiles</c>
/// (PEM or DER). Each list's signature is checked against the CA that issued it; a list no trusted CA signed is
/// refused at start. A file that changes is read again at the next handshake, so a new list takes effect without a
/// restart.</summary>
public sealed class RevocationList
{
    private readonly IReadOnlyList<string> _files;
    private readonly X509Certificate2Collection _authorities;
    private readonly Lock _gate = new();
    private Dictionary<string, DateTime> _loadedAt = [];
    private HashSet<string> _revoked = [];

    public RevocationList(IReadOnlyList<string> files, X509Certificate2Collection authorities)
    {
        _files = files;
        _authorities = authorities;
        Reload();
    }

    /// <summary>Whether the certificate's issuer has revoked it.</summary>
    public bool IsRevoked(X509Certificate2 certificate)
    {
        if (_files.Count == 0)
        {
            return false;
        }

        lock (_gate)
        {
            if (_files.Any(f => File.GetLastWriteTimeUtc(f) != _loadedAt.GetValueOrDefault(f)))
            {
                Reload();
            }

            return _revoked.Contains(Key(certificate.IssuerName.RawData, certificate.SerialNumberBytes.Span));
        }
    }

    private void Reload()
    {
        var revoked = new HashSet<string>();
        var loadedAt = new Dictionary<string, DateTime>();
        foreach (var file in _files)
        {
            loadedAt[file] = File.GetLastWriteTimeUtc(file);
            var (issuer, serials) = Parse(Decode(File.ReadAllBytes(file)), file);
            foreach (var serial in serials)
            {
                revoked.Add(Key(issuer, serial));
            }
        }

        (_revoked, _loadedAt) = (revoked, loadedAt);
    }

    private static byte[] Decode(byte[] content)
    {
        var text = System.Text.Encoding.ASCII.GetString(content);
        return PemEncoding.TryFind(text, out var pem) && text[pem.Label] == "X509 CRL" ? Convert.FromBase64String(text[pem.Base64Data]) : content;
    }

    /// <summary>Reads a CRL (RFC 5280 §5.1) and checks its signature; returns its issuer and the revoked serial numbers.</summary>
    private (byte[] Issuer, List<byte[]> Serials) Parse(byte[] der, string file)
    {
        try
        {
            var list = new AsnReader(der, AsnEncodingRules.DER).ReadSequence();
            var signedPart = list.PeekEncodedValue().ToArray();
            var tbs = list.ReadSequence();
            if (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Integer))
            {
                tbs.ReadInteger();
            }

            tbs.ReadSequence();
            var issuer = tbs.ReadEncodedValue().ToArray();
            tbs.ReadEncodedValue();
            if (tbs.HasData && (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.UtcTime) || tbs.PeekTag().HasSameClassAndValue(Asn1Tag.GeneralizedTime)))
            {
                tbs.ReadEncodedValue();
            }

            var serials = new List<byte[]>();
            if (tbs.HasData && tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Sequence))
            {
                var entries = tbs.ReadSequence();
                while (entries.HasData)
                {
                    serials.Add(entries.ReadSequence().ReadIntegerBytes().ToArray());
                }
            }

            var algorithm = list.ReadSequence().ReadObjectIdentifier();
            var signature = list.ReadBitString(out _);
            var authority = _authorities.FirstOrDefault(a => a.SubjectName.RawData.AsSpan().SequenceEqual(issuer))
                ?? throw new InvalidOperationException($"The revocation list {file} is issued by none of the trusted client CAs.");
            if (!Verify(authority, algorithm, signedPart, signature))
            {
                throw new InvalidOperationException($"The revocation list {file} is not signed by the CA it names.");
            }

            return (issuer, serials);
        }
        catch (AsnContentException e)
        {
            throw new InvalidOperationException($"The revocation list {file} is not a DER or PEM X.509 CRL.", e);
        }
    }

    private static bool Verify(X509Certificate2 authority, string algorithm, byte[] data, byte[] signature)
    {
        var hash = algorithm switch
        {
            "1.2.840.10045.4.3.2" or "1.2.840.113549.1.1.11" => HashAlgorithmName.SHA256,
            "1.2.840.10045.4.3.3" or "1.2.840.113549.1.1.12" => HashAlgorithmName.SHA384,
            "1.2.840.10045.4.3.4" or "1.2.840.113549.1.1.13" => HashAlgorithmName.SHA512,
            _ => throw new InvalidOperationException($"A revocation list is signed with {algorithm}, which is not accepted."),
        };
        if (authority.GetECDsaPublicKey() is { } ec)
        {
            using (ec)
            {
                return ec.VerifyData(data, signature, hash, DSASignatureFormat.Rfc3279DerSequence);
            }
        }

        using var rsa = authority.GetRSAPublicKey() ?? throw new InvalidOperationException("A client CA has neither an EC nor an RSA key.");
        return rsa.VerifyData(data, signature, hash, RSASignaturePadding.Pkcs1);
    }

    private static string Key(ReadOnlySpan<byte> issuer, ReadOnlySpan<byte> serial)
    {
        var significant = serial;
        while (significant.Length > 1 && significant[0] == 0)
        {
            significant = significant[1..];
        }

        return Convert.ToHexString(issuer) + "/" + Convert.ToHexString(significant);
    }
}
