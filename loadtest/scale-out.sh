#!/usr/bin/env bash
# Whether a second server helps: the same load against one server, then against two servers on one database (the load
# test routing by affinity, or with ROUTING=none round-robin), taking turns round after round so the machine's drift
# falls on both alike. Each run gets a database new for it. Prints each run, then per scenario the median rate, p99 and
# errors of each setup and the median ratio, round by round, of two servers to one.
# Usage: loadtest/scale-out.sh [ROUNDS SECONDS]   e.g. loadtest/scale-out.sh 3 20
#        SCENARIOS="hot spread mixed" WARMUP=15 ROUTING=affinity loadtest/scale-out.sh ...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds="${1:-3}"
seconds="${2:-20}"
out="$PWD/.artifacts/scale-out"
rm -rf "$out"; mkdir -p "$out"
dotnet build loadtest/QuotaLedger.LoadTest -c Release -v quiet -nologo
dotnet build src/Server -c Release -o "$out/server" -v quiet -nologo

servers=()
start_server() { # start_server PORT DATABASE: in the background, waits until it listens
  (cd "$out/server" && Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$1" Kestrel__Endpoints__Grpc__Protocols=Http2 \
    Kestrel__Endpoints__Web__Url="http://127.0.0.1:0" LocalPostgres__Database="$2" \
    RateLimits__PermitsPerSecond=1000000 RateLimits__Burst=1000000 Logging__LogLevel__Default=Warning \
    ASPNETCORE_ENVIRONMENT=Development exec dotnet QuotaLedger.Server.dll) >> "$out/server-$1.log" 2>&1 &
  servers+=($!)
  for _ in $(seq 1 120); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 1; done
  echo "the server on $1 did not listen" >&2; exit 1
}
stop_servers() { # stop_servers DATABASE: drops the run's database, then stops the servers (the last one stops the cluster)
  local data=/var/tmp/quotaledger/pgdata
  PGHOST=127.0.0.1 PGPORT="$(sed -n 4p "$data/postmaster.pid")" PGUSER=quotaledger PGPASSWORD="$(cat "$data.password")" \
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" || true
  for pid in "${servers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null || true; done
  servers=()
}

for round in $(seq 1 "$rounds"); do
  for setup in one two; do
    for scenario in ${SCENARIOS:-hot spread mixed}; do
      database="quotaledger_scale_${round}_${setup}_${scenario}_$$"
      start_server 5186 "$database"
      addresses="http://127.0.0.1:5186"
      if [ "$setup" = two ]; then start_server 5187 "$database"; addresses="$addresses,http://127.0.0.1:5187"; fi
      dotnet loadtest/QuotaLedger.LoadTest/bin/Release/net10.0/QuotaLedger.LoadTest.dll --address "$addresses" \
        --routing "${ROUTING:-affinity}" --scenario "$scenario" --concurrency 64 --duration "$seconds" --warmup "${WARMUP:-15}" \
        --unit-years 1000 --json "$out/$scenario-$setup-$round.json" > "$out/$scenario-$setup-$round.txt" || true
      echo "round $round $setup $scenario: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{d['CallsPerSecond']:.0f}/s p99 {d['P99Ms']:.1f} ms errors {sum(d['ErrorsByReason'].values())}\")" "$out/$scenario-$setup-$round.json")"
      stop_servers "$database"
    done
  done
done

SCENARIOS="${SCENARIOS:-hot spread mixed}" python3 - "$out" "$rounds" <<'PY'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
load = lambda s, k, n: json.load(open(f"{out}/{s}-{k}-{n}.json"))
for s in os.environ["SCENARIOS"].split():
    for k in ("one", "two"):
        runs = [load(s, k, n) for n in range(1, rounds + 1)]
        line = (f"{s:6} {k:3} median {statistics.median(r['CallsPerSecond'] for r in runs):7.0f}/s  "
                f"p99 median {statistics.median(r['P99Ms'] for r in runs):6.1f} ms  errors {sum(sum(r['ErrorsByReason'].values()) for r in runs)}")
        if k == "two":
            ratios = [load(s, "two", n)["CallsPerSecond"] / load(s, "one", n)["CallsPerSecond"] for n in range(1, rounds + 1)]
            line += f"  two/one median {statistics.median(ratios):.3f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
        print(line)
PY
