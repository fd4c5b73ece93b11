#!/usr/bin/env bash
# The memory check: a long closed-loop run against a server the script starts (no configuration, a fresh database in
# the local cluster), sampling the server's resident memory every 10 s. Prints the samples, the peak (VmHWM) and the
# first and last minutes' averages. Usage: loadtest/soak.sh [seconds, default 300] [scenario, default hot]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-300}"
scenario="${2:-hot}"
out=".artifacts/soak"
mkdir -p "$out"

dotnet build loadtest/QuotaLedger.LoadTest -c Release -v quiet -nologo
dotnet build src/Server -c Release -o .artifacts/loadtest-server -v quiet -nologo

port=5182
database="quotaledger_soak_$$"
(cd .artifacts/loadtest-server && Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$port" Kestrel__Endpoints__Grpc__Protocols=Http2 \
  LocalPostgres__Database="$database" RateLimits__PermitsPerSecond=1000000 RateLimits__Burst=1000000 \
  Logging__LogLevel__Default=Warning exec dotnet QuotaLedger.Server.dll) > "$out/server.log" 2>&1 &
server=$!
data=/var/tmp/quotaledger/pgdata
cleanup() {
  PGHOST=127.0.0.1 PGPORT="$(sed -n 4p "$data/postmaster.pid" 2>/dev/null)" PGUSER=quotaledger PGPASSWORD="$(cat "$data.password" 2>/dev/null)" \
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" 2>/dev/null || true
  kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true
}
trap cleanup EXIT
# Kestrel listens once the database is migrated.
for _ in $(seq 1 120); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 1; done

dotnet loadtest/QuotaLedger.LoadTest/bin/Release/net10.0/QuotaLedger.LoadTest.dll --address "http://127.0.0.1:$port" \
  --scenario "$scenario" --concurrency 64 --duration "$seconds" --warmup 5 --json "$out/soak.json" > "$out/loadtest.txt" 2>&1 &
load=$!
echo "seconds,rss_mib" > "$out/rss.csv"
start=$SECONDS
while kill -0 $load 2>/dev/null; do
  rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$server/status")
  echo "$((SECONDS - start)),$rss" >> "$out/rss.csv"
  sleep 10
done
wait $load
grep -E "^(scenario|throughput|latency|errors|Books)" "$out/loadtest.txt"
peak=$(awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$server/status")
python3 - "$out/rss.csv" "$peak" <<'PY'
import csv, sys
rows = [(int(r["seconds"]), int(r["rss_mib"])) for r in csv.DictReader(open(sys.argv[1]))]
print("rss MiB every 10 s: " + " ".join(str(m) for _, m in rows))
end = rows[-1][0]
first = [m for s, m in rows if 20 <= s < 80]
last = [m for s, m in rows if s >= end - 60]
if first and last:
    print(f"first minute of load avg {sum(first) / len(first):.0f} MiB, last minute avg {sum(last) / len(last):.0f} MiB, peak (VmHWM) {sys.argv[2]} MiB")
PY
