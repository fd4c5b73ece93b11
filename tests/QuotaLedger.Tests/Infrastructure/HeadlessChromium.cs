using PuppeteerSharp;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>Debian's Chromium (the <c>chromium</c> package, which .ci/run installs), driven headless over the DevTools
/// protocol by PuppeteerSharp. Nothing is downloaded: the browser is the installed one, and a missing browser fails
/// the test saying what to install, never skips it.</summary>
public static class HeadlessChromium
{
    public const string ExecutablePath = "/usr/bin/chromium";

    public static async Task<(IBrowser Browser, string Profile)> LaunchAsync()
    {
        if (!File.Exists(ExecutablePath))
        {
            Assert.Fail($"Chromium is not installed at {ExecutablePath}; the bureau's page is tested in a real browser. " +
                "Install Debian's package (apt-get install -y chromium), as .ci/run does.");
        }

        var profile = Directory.CreateTempSubdirectory("quotaledger-chromium-").FullName;
        var browser = await Puppeteer.LaunchAsync(new LaunchOptions
        {
            ExecutablePath = ExecutablePath,
            Headless = true,
            UserDataDir = profile,
            // As root on CI (--no-sandbox); and nothing that reaches out to the network, which is closed.
            Args =
            [
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
            ],
            Timeout = 60_000,
        });
        return (browser, profile);
    }
}
