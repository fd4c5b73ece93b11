#!/usr/bin/env bash
# A month closed under load. Fills June 2026 on a development server whose clock starts on 29 June
# (Development:ClockStartsAt; DeductMany calls across 1,000 unit-years), then, on a server whose clock starts on
# 2 July, runs single deductions across 1,000 unit-years and closes June in the middle of that run
# (POST /v1/closings over JSON, as the bureau's tooling would). Reports the close's own time, how long it held journal
# inserts off (the server's log line), and the deduction rate around it (the load test's fault report).
# Usage: loadtest/close-bench.sh [seconds of June fill, default 20]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fill="${1:-20}"
out=".artifacts/close-bench"
mkdir -p "$out"
source loadtest/server.sh
port=5183
database="quotaledger_close_$$"
load() { dotnet loadtest/QuotaLedger.LoadTest/bin/Release/net10.0/QuotaLedger.LoadTest.dll --address "http://127.0.0.1:$port" --unit-years 1000 "$@"; }

echo "== June: bulk deductions for ${fill} s on a server whose clock says 29 June =="
LEDGER_SERVER_ENV="Development__ClockStartsAt=2026-06-29T00:00:00+08:00" start_ledger_server "$port" "$database" "$out/server-june.log"
load --scenario bulk --batch 1000 --concurrency 4 --today 2026-06-29 --duration "$fill" --warmup 0 --json "$out/june.json" \
  | grep -E "^(scenario|throughput|errors)"
kill -TERM "$server"; wait "$server" 2>/dev/null || true

echo "== July: single deductions for 30 s; June closed 10 s in =="
close="curl -s --http2-prior-knowledge -o $out/close.json -w '%{http_code} %{time_total}\n' -H 'content-type: application/json' \
  -d '{\"requestId\":\"close-june-$$\",\"year\":2026,\"month\":6}' http://127.0.0.1:$port/v1/closings > $out/close-time.txt"
LEDGER_SERVER_ENV="Development__ClockStartsAt=2026-07-02T10:00:00+08:00 Logging__LogLevel__QuotaLedger.Server.Admin.AdminGrpcService=Information" \
  start_ledger_server "$port" "$database" "$out/server-july.log"
load --scenario spread --concurrency 64 --today 2026-07-02 --duration 30 --warmup 10 --fault "$close" --fault-at 10 --json "$out/july.json" \
  | grep -E "^(scenario|throughput|latency|errors|fault)"
echo "close: HTTP status and seconds: $(cat "$out/close-time.txt")"
grep -o "Closed 2026-06.*" "$out/server-july.log" || { echo "no close logged"; head -c 600 "$out/close.json"; }
