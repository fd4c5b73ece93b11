# Sourced by bench.sh and soak.sh (from the repository root): builds the load test and the server (Release), starts
# the server on the no-configuration default with a database new for this run, waits until it listens, exports the
# local cluster's libpq settings, and on exit drops the database and stops the server.
# Usage: start_ledger_server PORT DATABASE LOG; the server's pid is then in $server. LEDGER_SERVER_ENV adds settings
# (NAME=VALUE words, no spaces in them) to the server's environment.
start_ledger_server() {
  local port=$1 log=$3
  ledger_database=$2
  dotnet build loadtest/QuotaLedger.LoadTest -c Release -v quiet -nologo
  dotnet build src/Server -c Release -o .artifacts/loadtest-server -v quiet -nologo
  (cd .artifacts/loadtest-server && Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$port" Kestrel__Endpoints__Grpc__Protocols=Http2 \
    Kestrel__Endpoints__Web__Url="http://127.0.0.1:0" \
    LocalPostgres__Database="$ledger_database" RateLimits__PermitsPerSecond=1000000 RateLimits__Burst=1000000 \
    Logging__LogLevel__Default=Warning ASPNETCORE_ENVIRONMENT=Development exec env ${LEDGER_SERVER_ENV:-} dotnet QuotaLedger.Server.dll) > "$log" 2>&1 &
  server=$!
  trap stop_ledger_server EXIT
  # Kestrel listens once the server has started (or reused) the cluster and migrated the database.
  for _ in $(seq 1 120); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 1; done
  local data=/var/tmp/quotaledger/pgdata
  export PGHOST=127.0.0.1 PGPORT="$(sed -n 4p "$data/postmaster.pid")" PGUSER=quotaledger PGPASSWORD="$(cat "$data.password")"
}

stop_ledger_server() {
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $ledger_database WITH (FORCE)" 2>/dev/null || true
  kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
}
