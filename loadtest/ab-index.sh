#!/usr/bin/env bash
# What the change feed's index costs the write path: the load test against one server, alternating runs with the
# journal's commit-order index (journal_entries (tx_id, id), which Watch and ListEntries after_cursor read by) and
# runs with it dropped, on the same server, database and cluster as bench.sh. Alternating pairs cancel the drift of
# a growing journal and of a noisy machine; the ratio of each pair is printed, then the median ratio per scenario.
# Usage: loadtest/ab-index.sh [pairs, default 4] [seconds per run, default 15]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pairs="${1:-4}"
seconds="${2:-15}"
out=".artifacts/ab-index"
mkdir -p "$out"
source loadtest/server.sh
port=5183
start_ledger_server "$port" "quotaledger_abindex_$$" "$out/server.log"

index() { psql -X -q -d "$ledger_database" -c "$1"; }
run() { # run SCENARIO LABEL N
  dotnet loadtest/QuotaLedger.LoadTest/bin/Release/net10.0/QuotaLedger.LoadTest.dll --address "http://127.0.0.1:$port" \
    --scenario "$1" --concurrency 64 --duration "$seconds" --warmup 5 --unit-years 1000 --json "$out/$1-$2-$3.json" > "$out/$1-$2-$3.txt"
  python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['CallsPerSecond']))" "$out/$1-$2-$3.json"
}

for scenario in hot spread; do
  ratios=()
  for n in $(seq 1 "$pairs"); do
    with=$(run "$scenario" with "$n")
    index "DROP INDEX ix_journal_entries_tx_id_id"
    without=$(run "$scenario" without "$n")
    index "CREATE INDEX ix_journal_entries_tx_id_id ON journal_entries (tx_id, id)"
    ratio=$(python3 -c "print(round($with/$without, 3))")
    ratios+=("$ratio")
    echo "$scenario pair $n: with index $with/s, without $without/s, ratio $ratio"
  done
  python3 -c "import statistics,sys; print(f'$scenario: median ratio with/without = {statistics.median(map(float, sys.argv[1:])):.3f}')" "${ratios[@]}"
done
