#!/usr/bin/env bash
# The benchmark command: the textbook baseline (pgbench) and QuotaLedger (the load test) one after the other, on the
# same machine and the same PostgreSQL cluster (the server's no-configuration local cluster, synchronous_commit and
# fsync on), then their ratios; then the grants wave (no baseline: its rate alone).
# Usage: loadtest/bench.sh [seconds per run, default 30]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-30}"
out=".artifacts/bench"
mkdir -p "$out"

# One server for every QuotaLedger run; it starts (or reuses) the local cluster the baseline also runs on. Its
# database is new for this run and dropped after it, so every run starts from the same empty ledger.
source loadtest/server.sh
port=5181
start_ledger_server "$port" "quotaledger_bench_$$" "$out/server.log"

run_baseline() { bash loadtest/baseline/run.sh "$1" 64 "$seconds" | tee "$out/baseline-$1.txt" | tail -1; }
run_ledger() {
  dotnet loadtest/QuotaLedger.LoadTest/bin/Release/net10.0/QuotaLedger.LoadTest.dll --address "http://127.0.0.1:$port" \
    --scenario "$1" --concurrency 64 --duration "$seconds" --warmup 15 --unit-years 1000 --json "$out/ledger-$1.json" "${@:2}" \
    | tee "$out/ledger-$1.txt" | grep -E "^(scenario|throughput|latency|errors|Books)"
}

echo "== baseline (pgbench, textbook deduction) =="
base_hot=$(run_baseline 1 | sed 's/.*tps=//')
base_spread=$(run_baseline 1000 | sed 's/.*tps=//')
echo "hot $base_hot tps, spread $base_spread tps"

echo "== QuotaLedger =="
run_ledger ping
run_ledger hot
run_ledger spread
run_ledger grants
rate() { python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['CallsPerSecond']))" "$out/ledger-$1.json"; }
ping=$(rate ping); hot=$(rate hot); spread=$(rate spread); grants=$(rate grants)

python3 - "$base_hot" "$base_spread" "$ping" "$hot" "$spread" "$grants" <<'PY'
import sys
bh, bs, ping, hot, spread, grants = map(float, sys.argv[1:])
print(f"== ratios ==\nhot:    {hot:.0f}/s = {hot/bh:.2f}x baseline ({bh:.0f}/s), {hot/ping:.1%} of ping ({ping:.0f}/s)")
print(f"spread: {spread:.0f}/s = {spread/bs:.2f}x baseline ({bs:.0f}/s), {spread/ping:.1%} of ping")
print(f"grants: {grants:.0f}/s, {grants/ping:.1%} of ping (a month-start wave over 1,000 units of one year)")
PY
