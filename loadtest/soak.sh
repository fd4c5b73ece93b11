#!/usr/bin/env bash
# The memory check: a long closed-loop run against a server the script starts (no configuration, a fresh database in
# the local cluster), sampling the server's resident memory every 10 s. Prints the samples, the peak (VmHWM) and the
# first and last minutes' averages. Usage: loadtest/soak.sh [seconds, default 300] [scenario, default hot: hot | spread | grants | mixed]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-300}"
scenario="${2:-hot}"
out=".artifacts/soak"
mkdir -p "$out"

source loadtest/server.sh
port=5182
start_ledger_server "$port" "quotaledger_soak_$$" "$out/server.log"

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
