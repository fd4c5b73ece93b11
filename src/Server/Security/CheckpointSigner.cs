using System.Security.Cryptography;

namespace QuotaLedger.Server.Security;

/// <summary>The <c>Checkpoints</c> section.</summary>
public sealed class CheckpointOptions : ICheckedSettings
{
    /// <summary>PEM (PKCS#8) file of the ECDSA P-256 key that signs checkpoints. It lives outside the database, where
    /// nobody with only database access can reach it. Required in secured mode; `dev-pki` writes one.</summary>
    public string SigningKeyFile { get; set; } = "";

    /// <summary>Make a checkpoint every <see cref="Interval"/> in the background.</summary>
    public bool Enabled { get; set; } = true;

    public TimeSpan Interval { get; set; } = TimeSpan.FromMinutes(15);

    public IEnumerable<string> Problems() => Settings.Range(nameof(Interval), Interval, TimeSpan.FromSeconds(1), TimeSpan.FromDays(7));
}

/// <summary>Signs checkpoints with the configured key and checks their signatures. The key id is the hex SHA-256 of the
/// key's SubjectPublicKeyInfo, so anyone holding the public key can tell which key signed what.</summary>
public sealed class CheckpointSigner : IDisposable
{
    private readonly ECDsa _key;

    private CheckpointSigner(ECDsa key)
    {
        _key = key;
        PublicKey = key.ExportSubjectPublicKeyInfo();
        KeyId = KeyIdOf(PublicKey);
    }

    public string KeyId { get; }

    /// <summary>DER SubjectPublicKeyInfo.</summary>
    public byte[] PublicKey { get; }

    /// <summary>The signer of the configured key file. In development without one, a key file beside the local
    /// cluster's folder, made on first use.</summary>
    public static CheckpointSigner FromOptions(CheckpointOptions options, bool development, string developmentKeyFile)
    {
        var file = options.SigningKeyFile;
        if (file.Length == 0)
        {
            if (!development)
            {
                throw new StartupRefusedException(
                    "Checkpoints:SigningKeyFile is required in secured mode: the ECDSA P-256 key (PKCS#8 PEM) that signs the journal's checkpoints, " +
                    "kept where the database cannot reach it (`dotnet run --project src/Server -- dev-pki DIR` writes one).");
            }

            file = developmentKeyFile;
            if (!File.Exists(file))
            {
                using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                // The key's folder is the local cluster's: made as the cluster makes it, never root's alone, so that a
                // development server with a connection string does not leave the next `dotnet run` a folder its cluster
                // cannot use. The key file itself stays this process's, 0600.
                Storage.LocalPostgresCluster.CreateFolderAsync(Path.GetDirectoryName(Path.GetFullPath(file))!, CancellationToken.None).GetAwaiter().GetResult();
                DevelopmentPki.Write(Path.GetDirectoryName(Path.GetFullPath(file))!, Path.GetFileName(file), key.ExportPkcs8PrivateKeyPem(), secret: true);
            }
        }

        try
        {
            var key = ECDsa.Create();
            key.ImportFromPem(File.ReadAllText(file));
            return new CheckpointSigner(key);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new StartupRefusedException($"Checkpoints:SigningKeyFile {file} is not a readable ECDSA private key in PEM: {e.Message}");
        }
    }

    public byte[] Sign(byte[] body) => _key.SignData(body, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);

    /// <summary>Whether <paramref name="signature"/> is this signer's key's over <paramref name="body"/>.</summary>
    public bool Verifies(string keyId, byte[] body, byte[] signature) =>
        keyId == KeyId && _key.VerifyData(body, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);

    /// <summary>Checks a signature with a public key alone (the offline audit).</summary>
    public static bool Verify(byte[] subjectPublicKeyInfo, byte[] body, byte[] signature)
    {
        using var key = ECDsa.Create();
        key.ImportSubjectPublicKeyInfo(subjectPublicKeyInfo, out _);
        return key.VerifyData(body, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
    }

    public static string KeyIdOf(byte[] subjectPublicKeyInfo) => Convert.ToHexStringLower(SHA256.HashData(subjectPublicKeyInfo));

    public void Dispose() => _key.Dispose();
}
