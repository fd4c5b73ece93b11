#!/usr/bin/env bash
# The expiry pass over a month-start wave. Fills 10 June 2026 with grants (the `grants` scenario across 1,000
# unit-years, on a development server whose clock starts then: Development:ClockStartsAt), and on a server whose clock
# starts on 12 July, when all of them are due, runs the pass (POST /v1/grants:expireDue over JSON, as the bureau's
# tooling would): once alone, timing it, and once, on a second fill, 10 s into a 30 s run of single deductions across
# 1,000 unit-years, reporting the deduction rate and latency around it (the load test's fault report).
# Usage: loadtest/expiry-bench.sh [seconds of grants per fill, default 10]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fill="${1:-10}"
out=".artifacts/expiry-bench"
mkdir -p "$out"
source loadtest/server.sh
port=5184
load() { dotnet loadtest/QuotaLedger.LoadTest/bin/Release/net10.0/QuotaLedger.LoadTest.dll --address "http://127.0.0.1:$port" --unit-years 1000 "$@"; }
pass() { # pass NAME: the expiry pass over JSON; its answer in $out/NAME.json, its HTTP status and seconds in $out/NAME-time.txt
  echo "curl -s --http2-prior-knowledge -o $out/$1.json -w '%{http_code} %{time_total}\n' -H 'content-type: application/json' \
    -d '{\"requestId\":\"$1-$$\"}' http://127.0.0.1:$port/v1/grants:expireDue > $out/$1-time.txt"
}

fill_june() { # fill_june DATABASE
  LEDGER_SERVER_ENV="Development__ClockStartsAt=2026-06-10T10:00:00+08:00" start_ledger_server "$port" "$1" "$out/server-june.log"
  load --scenario grants --concurrency 64 --today 2026-06-10 --duration "$fill" --warmup 0 --json "$out/june.json" | grep -E "^(scenario|throughput|errors)"
  kill -TERM "$server"; wait "$server" 2>/dev/null || true
}

july() { # july DATABASE: a server whose clock says 12 July, on the filled database
  LEDGER_SERVER_ENV="Development__ClockStartsAt=2026-07-12T10:00:00+08:00 Expiry__Enabled=false" start_ledger_server "$port" "$1" "$out/server-july.log"
}

echo "== the pass alone =="
fill_june "quotaledger_expiry_a_$$"
july "quotaledger_expiry_a_$$"
eval "$(pass alone)"
echo "pass alone: HTTP status and seconds: $(cat "$out/alone-time.txt"); answer: $(cat "$out/alone.json")"
stop_ledger_server

echo "== the pass 10 s into 30 s of single deductions =="
fill_june "quotaledger_expiry_b_$$"
july "quotaledger_expiry_b_$$"
load --scenario spread --concurrency 64 --today 2026-07-12 --duration 30 --warmup 10 --fault "$(pass loaded)" --fault-at 10 --json "$out/july.json" \
  | grep -E "^(scenario|throughput|latency|errors|fault)"
echo "pass under load: HTTP status and seconds: $(cat "$out/loaded-time.txt"); answer: $(cat "$out/loaded.json")"
