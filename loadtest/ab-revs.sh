#!/usr/bin/env bash
# Compares the write path of git revisions: each revision's server (Release, its own worktree and build) is started on
# the no-configuration default against a database new for each run, and the load test (this checkout's) runs hot then
# spread against it; the revisions take turns, round after round, so drift of the machine and of the shared cluster
# falls on all of them alike. Prints each run, then per scenario the median rate of each revision and its median ratio,
# round by round, to the first revision.
# Usage: loadtest/ab-revs.sh REV REV... [-- ROUNDS SECONDS]   e.g. loadtest/ab-revs.sh 9cc1cf9 HEAD -- 4 15
#        SCENARIOS=hot loadtest/ab-revs.sh ...   (only these scenarios, of hot spread grants mixed ping; default "hot spread";
#                                                mixed prints its deductions, grants and reads each on its own as well)
#        WARMUP=15 loadtest/ab-revs.sh ...       (seconds of warm-up before each run; default 5)
#        SCENARIOS="spread bulk" ...             (bulk: BULK_CONCURRENCY callers, default 4, each sending DeductMany calls of
#                                                1,000; its rate is deductions applied per second, and with spread in the
#                                                same rounds the ratio bulk/spread of each round is printed too)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
revs=()
while (($#)) && [ "$1" != "--" ]; do revs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
rounds="${1:-4}"
seconds="${2:-15}"
out="$PWD/.artifacts/ab-revs"
rm -rf "$out"; mkdir -p "$out"
dotnet build loadtest/QuotaLedger.LoadTest -c Release -v quiet -nologo
for rev in "${revs[@]}"; do
  dir="$out/src-$rev"
  git worktree prune
  git worktree add -q --detach "$dir" "$rev"
  dotnet build "$dir/src/Server" -c Release -o "$out/server-$rev" -v quiet -nologo
  git worktree remove --force "$dir"
done

port=5184
run_server() { # run_server REV DATABASE: starts it in the background, waits until it listens
  (cd "$out/server-$1" && Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$port" Kestrel__Endpoints__Grpc__Protocols=Http2 \
    Kestrel__Endpoints__Web__Url="http://127.0.0.1:0" LocalPostgres__Database="$2" \
    RateLimits__PermitsPerSecond=1000000 RateLimits__Burst=1000000 Logging__LogLevel__Default=Warning \
    ASPNETCORE_ENVIRONMENT=Development exec dotnet QuotaLedger.Server.dll) >> "$out/server-$1.log" 2>&1 &
  server=$!
  for _ in $(seq 1 120); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 1; done
  echo "the server of $1 did not listen" >&2; exit 1
}
stop_server() { # stop_server DATABASE: drops the run's database while the cluster runs (the server that started the
  # cluster stops it when it stops), then stops the server
  local data=/var/tmp/quotaledger/pgdata
  PGHOST=127.0.0.1 PGPORT="$(sed -n 4p "$data/postmaster.pid")" PGUSER=quotaledger PGPASSWORD="$(cat "$data.password")" \
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" || true
  kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
}

for round in $(seq 1 "$rounds"); do
  for rev in "${revs[@]}"; do
    database="quotaledger_ab_${round}_$$"
    run_server "$rev" "$database"
    for scenario in ${SCENARIOS:-hot spread}; do
      dotnet loadtest/QuotaLedger.LoadTest/bin/Release/net10.0/QuotaLedger.LoadTest.dll --address "http://127.0.0.1:$port" \
        --scenario "$scenario" --concurrency "$([ "$scenario" = bulk ] && echo "${BULK_CONCURRENCY:-4}" || echo 64)" --duration "$seconds" --warmup "${WARMUP:-5}" --unit-years 1000 \
        --json "$out/$scenario-$rev-$round.json" > "$out/$scenario-$rev-$round.txt"
      echo "round $round $rev $scenario: $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(round(r.get('ItemsPerSecond') or r['CallsPerSecond']))" "$out/$scenario-$rev-$round.json")/s"
    done
    stop_server "$database"
  done
done

SCENARIOS="${SCENARIOS:-hot spread}" python3 - "$out" "$rounds" "${revs[@]}" <<'PY'
import json, os, statistics, sys
out, rounds, revs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def rate(s, r, n):
    run = json.load(open(f"{out}/{s}-{r}-{n}.json"))
    return run.get("ItemsPerSecond") or run["CallsPerSecond"]
for s in os.environ["SCENARIOS"].split():
    for r in revs:
        rates = [rate(s, r, n) for n in range(1, rounds + 1)]
        ratios = [rate(s, r, n) / rate(s, revs[0], n) for n in range(1, rounds + 1)]
        runs = [json.load(open(f"{out}/{s}-{r}-{n}.json")) for n in range(1, rounds + 1)]
        print(f"{s:6} {r:10} median {statistics.median(rates):7.0f}/s  ratio to {revs[0]}: median {statistics.median(ratios):.3f} "
              f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})  p99 median {statistics.median(x['P99Ms'] for x in runs):.1f} ms  "
              f"errors {sum(sum(x['ErrorsByReason'].values()) for x in runs)}")
        if s == "mixed":
            for op in ("deduct", "grant", "read"):
                per = [json.load(open(f"{out}/{s}-{r}-{n}.json")).get("Operations", {}).get(op) for n in range(1, rounds + 1)]
                if all(per):
                    print(f"  {op:6} median {statistics.median(p['CallsPerSecond'] for p in per):7.0f}/s  "
                          f"p99 median {statistics.median(p['P99Ms'] for p in per):7.1f} ms  errors {sum(sum(p['ErrorsByReason'].values()) for p in per)}")
scenarios = os.environ["SCENARIOS"].split()
if "bulk" in scenarios and "spread" in scenarios:
    for r in revs:
        ratios = [rate("bulk", r, n) / rate("spread", r, n) for n in range(1, rounds + 1)]
        print(f"bulk/spread {r:10} median {statistics.median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
PY
