using System.Net;
using System.Net.Sockets;

namespace QuotaLedger.Tests.Infrastructure;

/// <summary>Loopback ports for servers the tests start on real sockets.</summary>
public static class TestPorts
{
    /// <summary>A port free on loopback now (the system's choice for a listener on port 0).</summary>
    public static int Free()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
