#!/usr/bin/env bash
# A unit-year held locked from psql during a spread run: the rate of the ledger before, during and after a 30 s hold
# of one unit-year's row (FOR UPDATE, as a person in psql or another instance would), the errors by reason, and the
# books after every call whose outcome went unseen was retried with its request id.
# With "xid" as the second argument the psql session locks nothing and only holds a transaction id open for as long,
# which separates what the lock costs the others from what an old open transaction costs PostgreSQL (it keeps every
# row version written meanwhile from being pruned).
# Usage: loadtest/lockheld.sh [hold seconds, default 30] [lock|xid, default lock]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
hold="${1:-30}"
mode="${2:-lock}"
out=".artifacts/lockheld"
mkdir -p "$out"

source loadtest/server.sh
port=5183
start_ledger_server "$port" "quotaledger_lockheld_$$" "$out/server.log"

before=20
after=20
duration=$((before + hold + after))
dotnet loadtest/QuotaLedger.LoadTest/bin/Release/net10.0/QuotaLedger.LoadTest.dll --address "http://127.0.0.1:$port" \
  --scenario spread --unit-years 1000 --concurrency 64 --duration "$duration" --warmup 10 --json "$out/ledger.json" > "$out/loadtest.txt" 2>&1 &
load=$!

# The progress lines count seconds from the start of the warm-up.
until grep -qE '^ +1s ' "$out/loadtest.txt"; do
  kill -0 $load 2>/dev/null || { cat "$out/loadtest.txt"; exit 1; }
  sleep 0.2
done
sleep $((10 + before - 1))
if [ "$mode" = xid ]; then
  echo "holding a transaction id open for $hold s from psql, no lock"
  take="SELECT txid_current() AS held_xid;"
else
  echo "holding one unit-year's row for $hold s from psql"
  take="SELECT uy.id AS held_unit_year FROM unit_years uy JOIN grants g ON g.unit_year_id = uy.id ORDER BY uy.id LIMIT 1 FOR UPDATE OF uy;"
fi
psql -X -q -d "$ledger_database" -v ON_ERROR_STOP=1 > "$out/psql.txt" 2>&1 <<SQL
BEGIN;
$take
SELECT pg_sleep($hold);
COMMIT;
SQL
wait $load || true
grep -E "^(scenario|throughput|latency|errors|Retr|Books)" "$out/loadtest.txt"
python3 - "$out/loadtest.txt" "$before" "$hold" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
before, hold = int(sys.argv[2]), int(sys.argv[3])
rates = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"^\s+(\d+)s \S+\s+(\d+) calls/s", text, re.M)}
start, end = 10 + before, 10 + before + hold
def mean(lo, hi):
    values = [r for s, r in rates.items() if lo <= s < hi]
    return sum(values) / len(values) if values else float("nan")
b, d, a = mean(12, start), mean(start + 1, end), mean(end + 2, max(rates) + 1)
print(f"calls/s before the hold {b:.0f}, during {d:.0f} ({d / b:.0%} of before), after {a:.0f}")
PY
