#!/usr/bin/env bash
# The fault suite: load through the load test's client while one fault at a time is inflicted, then every call whose
# outcome the client did not see is retried with its request id and the ledger is audited in its own database: every
# acknowledged deduction exists exactly once, nothing was applied that no caller was told of, no invoice twice, grant
# and unit-year figures equal the sums acknowledged, VerifyJournal ok, trial balance balanced. Runs every fault with
# one server instance, then with two on the same database behind the client (each of its two clients routing over both
# by affinity, the SDK's Addresses: a killed instance's unit-years fall over to the other; ROUTING=none for every call
# round-robin over one-server clients, as before).
#
# The faults: kill -9 of a server and its restart; SIGTERM of a server under load and its restart; PostgreSQL
# `pg_ctl restart -m immediate` (a crash and recovery); pg_terminate_backend of every server connection; one unit-year's
# row held FOR UPDATE from psql for 30 s.
#
# PostgreSQL is a throwaway cluster of the suite's own (/var/tmp/quotaledger-faults, loopback only, trust auth for
# its two roles: it holds nothing but test data and is deleted at the end), so that restarting it touches nothing else;
# each run gets a fresh database. Prints a table and writes it to .artifacts/faults/report.md.
#
# Usage: loadtest/faults.sh [measured seconds per fault, default 45] [one|two|both, default both]
#        FAULTS="kill9 terminate" loadtest/faults.sh ...   (only these faults)
#        ROUTING=none loadtest/faults.sh ...   (two instances: every call round-robin instead of routed by affinity)
#        FAULTS_PG_OPTIONS="-c checkpoint_timeout=30s" loadtest/faults.sh ...   (PostgreSQL settings for the suite's cluster)
#        loadtest/faults.sh ha [seconds, default 60]   (a failover of the loadtest/ha.sh formation under load, as root)
#        loadtest/faults.sh inject FAULT   (what the load test runs at the fault's time)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="$PWD/.artifacts/faults"
dir=/var/tmp/quotaledger-faults
pgdata="$dir/pgdata"
pgport="${FAULTS_PG_PORT:-5441}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$bin/initdb" ] || { echo "faults.sh: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2; exit 2; }
server_dir="$PWD/.artifacts/faults-server"
ports=(0 5191 5192)

as_postgres() {
  if [ "$(id -u)" = 0 ]; then (cd "$dir" && runuser -u postgres -- "$@"); else "$@"; fi
}

sql() { "$bin/psql" -X -q -At -h 127.0.0.1 -p "$pgport" -U quotaledger -d "${2:-postgres}" -c "$1"; }

# One server instance, N (1 or 2), on the run's database; returns once it listens.
start_instance() {
  local n=$1 port=${ports[$1]}
  (cd "$server_dir" && exec setsid env \
    ConnectionStrings__LedgerMigrations="${FAULTS_OWNER:-Host=127.0.0.1;Port=$pgport;Username=quotaledger;Database=$FAULTS_DATABASE}" \
    ConnectionStrings__Ledger="${FAULTS_SERVING:-Host=127.0.0.1;Port=$pgport;Username=quotaledger_app;Database=$FAULTS_DATABASE}" \
    Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$port" Kestrel__Endpoints__Grpc__Protocols=Http2 \
    Kestrel__Endpoints__Web__Url="http://127.0.0.1:0" \
    RateLimits__PermitsPerSecond=1000000 RateLimits__Burst=1000000 Logging__LogLevel__Default=Warning \
    ASPNETCORE_ENVIRONMENT=Development dotnet QuotaLedger.Server.dll) < /dev/null >> "$out/server-$n.log" 2>&1 &
  echo $! > "$out/server-$n.pid"
  disown $! # a server killed on purpose is no news to this shell
  for _ in $(seq 1 600); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "server $n did not start listening on $port; see $out/server-$n.log" >&2
  return 1
}

stop_instance() {
  local pid
  pid=$(cat "$out/server-$1.pid" 2>/dev/null) || return 0
  rm -f "$out/server-$1.pid"
  # Only a server this script started: a pid left from an earlier run may since belong to another process.
  grep -q QuotaLedger.Server "/proc/$pid/cmdline" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

inject() {
  case "$1" in
    kill9)
      local pid; pid=$(cat "$out/server-1.pid")
      kill -KILL "$pid"
      while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
      start_instance 1 ;;
    sigterm)
      stop_instance 1
      start_instance 1 ;;
    pg-restart)
      as_postgres "$bin/pg_ctl" restart -D "$pgdata" -m immediate -w -t 120 -l "$dir/postgres.log" > /dev/null ;;
    terminate)
      echo "terminated $(sql "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'quotaledger_app'") server connections" ;;
    lock-held)
      sql "BEGIN; SELECT id FROM unit_years WHERE id = (SELECT unit_year_id FROM grants ORDER BY id DESC LIMIT 1) FOR UPDATE; SELECT pg_sleep(30); COMMIT;" \
        "$FAULTS_DATABASE" > /dev/null ;;
    *) echo "unknown fault $1" >&2; return 2 ;;
  esac
}

if [ "${1:-}" = inject ]; then
  inject "$2"
  exit
fi

# The failover: one server on the pg_auto_failover formation of loadtest/ha.sh (both hosts in its connection strings),
# the primary killed under load, then the same audit.
if [ "${1:-}" = ha ]; then
  seconds="${2:-60}"
  mkdir -p "$out"
  rm -f "$out"/failover.* "$out"/server-1.log
  dotnet build loadtest/QuotaLedger.LoadTest -c Release -v quiet -nologo > /dev/null
  dotnet build src/Server -c Release -o "$server_dir" -v quiet -nologo > /dev/null
  loadtest/ha.sh start > /dev/null
  eval "$(loadtest/ha.sh env)"
  export FAULTS_OWNER="$ConnectionStrings__LedgerMigrations" FAULTS_SERVING="$ConnectionStrings__Ledger"
  unset ConnectionStrings__LedgerMigrations ConnectionStrings__Ledger
  trap 'stop_instance 1; loadtest/ha.sh stop > /dev/null 2>&1 || true' EXIT
  start_instance 1
  echo "== failover: one instance on the formation, the primary killed at 15 s of $seconds s"
  dotnet loadtest/QuotaLedger.LoadTest/bin/Release/net10.0/QuotaLedger.LoadTest.dll --address "http://127.0.0.1:${ports[1]}" \
    --scenario spread --unit-years 100 --concurrency 64 --warmup 5 --duration "$seconds" \
    --fault "loadtest/ha.sh kill-primary" --fault-at 15 --database "$FAULTS_OWNER" --json "$out/failover.json" > "$out/failover.txt" 2>&1 || true
  grep -E "^(throughput|errors|fault|Exactly|Retried|Books|BOOKS)" "$out/failover.txt" || tail -5 "$out/failover.txt"
  grep -q "^Books check: OK" "$out/failover.txt" && ! grep -q "Internal" "$out/failover.txt"
  exit
fi

seconds="${1:-45}"
which="${2:-both}"
mkdir -p "$out"
rm -f "$out"/{kill9,sigterm,pg-restart,terminate,lock-held}-* "$out"/server-*.log "$out"/report.md

start_cluster() {
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$dir"
    chown postgres: "$dir"
  else
    mkdir -p "$dir"
  fi
  chmod 700 "$dir"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$pgdata" -U postgres --auth-local=trust --auth-host=reject --no-sync --no-instructions > /dev/null
    # Loopback only, and only the suite's two roles; the Unix socket lives in the suite's 0700 folder.
    printf 'local all postgres trust\nhost all quotaledger 127.0.0.1/32 trust\nhost all quotaledger_app 127.0.0.1/32 trust\n' \
      | as_postgres tee "$pgdata/pg_hba.conf" > /dev/null
  fi
  as_postgres "$bin/pg_ctl" start -D "$pgdata" -w -t 120 -l "$dir/postgres.log" \
    -o "-p $pgport -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=300 ${FAULTS_PG_OPTIONS:-}" > /dev/null
  as_postgres "$bin/psql" -X -q -h "$dir" -p "$pgport" -U postgres -d postgres -c \
    "DO \$\$ BEGIN
       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quotaledger') THEN CREATE ROLE quotaledger LOGIN CREATEDB; END IF;
       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quotaledger_app') THEN CREATE ROLE quotaledger_app LOGIN; END IF;
     END \$\$; GRANT pg_signal_backend TO quotaledger;" > /dev/null
}

stop_cluster() {
  stop_instance 1; stop_instance 2
  as_postgres "$bin/pg_ctl" stop -D "$pgdata" -m fast -w > /dev/null 2>&1 || true
  rm -rf "$dir"
}

echo "Building the server and the load test (Release) ..."
dotnet build loadtest/QuotaLedger.LoadTest -c Release -v quiet -nologo > /dev/null
dotnet build src/Server -c Release -o "$server_dir" -v quiet -nologo > /dev/null
stop_cluster
start_cluster
trap stop_cluster EXIT

read -r -a faults <<< "${FAULTS:-kill9 sigterm pg-restart terminate lock-held}"
case "$which" in one) instance_counts=(1) ;; two) instance_counts=(2) ;; *) instance_counts=(1 2) ;; esac
for instances in "${instance_counts[@]}"; do
  for fault in "${faults[@]}"; do
    name="$fault-$instances"
    export FAULTS_DATABASE="ql_faults_${fault//-/_}_$instances"
    sql "CREATE DATABASE $FAULTS_DATABASE OWNER quotaledger" > /dev/null
    addresses="http://127.0.0.1:${ports[1]}"
    start_instance 1
    if [ "$instances" = 2 ]; then start_instance 2; addresses="$addresses,http://127.0.0.1:${ports[2]}"; fi
    echo "== $name: $instances instance(s), $fault at 10 s of $seconds s"
    dotnet loadtest/QuotaLedger.LoadTest/bin/Release/net10.0/QuotaLedger.LoadTest.dll --address "$addresses" --connections "$instances" \
      --routing "${ROUTING:-affinity}" --scenario spread --unit-years 100 --concurrency 64 --warmup 5 --duration "$seconds" \
      --fault "loadtest/faults.sh inject $fault" --fault-at 10 \
      --database "Host=127.0.0.1;Port=$pgport;Username=quotaledger;Database=$FAULTS_DATABASE" \
      --json "$out/$name.json" > "$out/$name.txt" 2>&1 || true
    grep -E "^(throughput|errors|fault|Exactly|Retried|Books|BOOKS)" "$out/$name.txt" || tail -5 "$out/$name.txt"
    stop_instance 1; stop_instance 2
  done
done

python3 - "$out" "${instance_counts[@]}" <<'PY' | tee "$out/report.md"
import json, os, sys
out, counts = sys.argv[1], sys.argv[2:]
faults = os.environ.get("FAULTS", "kill9 sigterm pg-restart terminate lock-held").split()
failed = []
print("| fault | instances | acknowledged | lost | duplicated | INTERNAL answers | s to recover | s with nothing applied | rate before → lowest 1 s | unseen, retried | books |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for n in counts:
    for fault in faults:
        path = os.path.join(out, f"{fault}-{n}.json")
        if not os.path.exists(path):
            print(f"| {fault} | {n} | no result (see {fault}-{n}.txt) |||||||||")
            failed.append(f"{fault}-{n}")
            continue
        r = json.load(open(path))
        audit, f = r.get("ExactlyOnce") or {}, r.get("Fault") or {}
        internal = r["ErrorsByReason"].get("Internal", 0) + r["Retried"].get("Internal", 0)
        retried = ", ".join(f"{k} {v}" for k, v in r["Retried"].items()) or "none"
        recover = f.get("SecondsToRecover", -1)
        print(f"| {fault} | {n} | {audit.get('Acknowledged', '?')} | {audit.get('Lost', '?')} | {audit.get('Duplicated', '?')} | {internal} "
              f"| {recover} | {f.get('ZeroSeconds', '?')} | {f.get('RateBefore', 0):.0f} → {f.get('LowestRateAfter', 0):.0f}/s "
              f"| {retried} | {'OK' if not r['BookFailures'] else '; '.join(r['BookFailures'][:3])} |")
        if audit.get("Lost", 1) or audit.get("Duplicated", 1) or internal or r["BookFailures"]:
            failed.append(f"{fault}-{n}")
if failed:
    print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)
PY
