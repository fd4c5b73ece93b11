#!/usr/bin/env bash
# A high-availability PostgreSQL 15 formation on this one machine, managed by pg_auto_failover (pg_autoctl 2.0): a
# monitor and two nodes (a primary and a synchronous secondary), each on its own loopback port, everything (data, logs,
# pg_autoctl's configuration, state and pid files, passwords) in one folder. For trying the ledger through a failover.
#
# Security: every connection is TCP on 127.0.0.1 (listen_addresses=127.0.0.1), TLS with self-signed certificates
# (--ssl-self-signed: encrypts, does not authenticate the server; Npgsql's SSL Mode=Require does not verify either) and
# scram-sha-256 passwords, which the script generates once into secrets and pgpass (0600, owned by postgres).
# pg_autoctl's own pg_hba editing is off (--skip-pg-hba), because under it initdb's defaults trust every loopback
# connection; the script writes each node's pg_hba.conf itself: peer for the postgres OS user on the Unix socket,
# scram over TLS for the rest, nothing else.
#
# Replication is synchronous: with one standby that takes part in the replication quorum, pg_auto_failover sets
# synchronous_standby_names to 'ANY 1 (pgautofailover_standby_N)' on the primary (pg_stat_replication: sync_state
# quorum) and synchronous_commit stays on, so a commit the primary acknowledges is on the standby's disk too. The
# formation's number_sync_standbys stays at its default, 0: the monitor refuses 1 with fewer than two standbys, and 0
# already means one synchronous standby here.
#
# Failover (kill-primary): the monitor waits until the dead primary has missed its reports and a health check, gives
# it primary_demote_timeout to demote itself, then promotes the standby. The standby is promoted in stop_replication
# with default_transaction_read_only on (refused by target_session_attrs=read-write, so nothing writes to two
# primaries), and takes writes in wait_primary, where synchronous_standby_names is empty: with its only standby gone
# the new primary commits alone until the old node is back. The old node's pg_autoctl, restarted, finds it was
# demoted, runs pg_rewind (which finds nothing to undo: every commit it had acknowledged was on the standby) and
# follows the new primary; once it has caught up the new primary goes to primary and synchronous replication is on
# again. Measured on a 2-core machine: 6 to 10 s from the kill to the first write with HA_FAILOVER=fast (with or
# without the ledger under load), 53 s with pg_auto_failover's defaults (20 s before the primary counts as unhealthy,
# then 30 s of primary_demote_timeout); the old node is back in sync 13 to 28 s after its restart.
#
# Usage: loadtest/ha.sh start|env|status|kill-primary|stop|destroy
#   start         create the formation if missing, start it, wait for primary + secondary in sync, create the ledger's
#                 database and roles, print the connection strings as exports (already running: print them)
#   env           print the exports again: eval "$(loadtest/ha.sh env)"
#   status        the monitor's view, which node is primary, its replication and synchronous settings
#   kill-primary  SIGKILL the primary's postgres and its pg_autoctl (a dead machine, as near as one machine gets),
#                 time the failover and the first write through the multi-host connection string, then restart the
#                 old node and time its rejoining as secondary
#   stop          stop both nodes and the monitor;  destroy: stop and delete the folder
# Settings (environment): HA_DIR (default /var/tmp/quotaledger-ha), HA_MONITOR_PORT (6000), HA_NODE1_PORT (6001),
# HA_NODE2_PORT (6002), HA_FAILOVER=fast|default (fast: the monitor's health checks and timeouts lowered so that a
# dead primary is replaced in seconds; default: pg_auto_failover's own; applied by every start).
set -euo pipefail

dir="${HA_DIR:-/var/tmp/quotaledger-ha}"
monitor_port="${HA_MONITOR_PORT:-6000}"
node_port=([1]="${HA_NODE1_PORT:-6001}" [2]="${HA_NODE2_PORT:-6002}")
failover="${HA_FAILOVER:-fast}"
bin=/usr/lib/postgresql/15/bin
monitor_uri="postgres://autoctl_node@127.0.0.1:$monitor_port/pg_auto_failover?sslmode=require"
hosts="127.0.0.1:${node_port[1]},127.0.0.1:${node_port[2]}"

[ "$(id -u)" = 0 ] || { echo "ha.sh: run as root (it runs PostgreSQL as the postgres user)" >&2; exit 1; }
case "$failover" in fast|default) ;; *) echo "ha.sh: HA_FAILOVER is fast or default" >&2; exit 2 ;; esac

# pg_autoctl keeps its configuration, state and pid files under the XDG folders: point them into the folder so that
# destroy leaves nothing behind. PGPASSFILE gives pg_autoctl (and the standby's WAL receiver, which inherits the
# environment) the monitor's and the replication passwords without putting them on command lines.
as_postgres() {
  (cd "$dir" && runuser -u postgres -- env PATH="$bin:/usr/bin:/bin" PG_CONFIG="$bin/pg_config" \
    XDG_CONFIG_HOME="$dir/config" XDG_DATA_HOME="$dir/share" XDG_RUNTIME_DIR="$dir/run" PGPASSFILE="$dir/pgpass" "$@")
}
# Superuser statements go over the Unix socket (peer authentication as the postgres OS user).
sql() { local port=$1 db=$2; shift 2; as_postgres psql -X -q -At -v ON_ERROR_STOP=1 -p "$port" -d "$db" "$@"; }
monitor_sql() { sql "$monitor_port" pg_auto_failover -c "$1"; }

# The monitor's health-check settings (pgautofailover.*, in milliseconds) and the keepers' network partition timeout
# (seconds). A dead primary is replaced once it has not reported for node_considered_unhealthy_timeout and failed a
# health check (period, then max_retries retries retry_delay apart, each up to health_check_timeout), and then
# primary_demote_timeout later (the time a primary cut off from the monitor and the standby takes to demote itself,
# network_partition_timeout, must stay below it, or both could take writes).
if [ "$failover" = fast ]; then
  monitor_settings=(health_check_period=1000 health_check_timeout=1000 health_check_max_retries=1
    health_check_retry_delay=500 node_considered_unhealthy_timeout=2000 primary_demote_timeout=3000)
  network_partition_timeout=2
else
  monitor_settings=(health_check_period health_check_timeout health_check_max_retries health_check_retry_delay
    node_considered_unhealthy_timeout primary_demote_timeout)
  network_partition_timeout=20
fi

secret() { sed -n "s/^$1=//p" "$dir/secrets"; }

# Npgsql tries both hosts and keeps the one that takes writes. read-write, not primary: while the monitor promotes a
# standby (state stop_replication) pg_autoctl has already ended its recovery but holds default_transaction_read_only
# on until the old primary is presumed demoted, so that nothing writes to two primaries; "primary" only asks whether
# the server is in recovery, and would send the ledger's writes there to fail (25006, read-only transaction).
exports() {
  local common="Host=$hosts;Database=quotaledger;SSL Mode=Require;Target Session Attributes=read-write"
  echo "export ConnectionStrings__LedgerMigrations='$common;Username=quotaledger;Password=$(secret owner)'"
  echo "export ConnectionStrings__Ledger='$common;Username=quotaledger_app;Password=$(secret app)'"
}

# pg_autoctl run's supervisor pid (first line of its pid file), empty when it is not running.
keeper_pid() {
  local file pid
  file=$(as_postgres pg_autoctl show file --pid --pgdata "$dir/$1" 2>/dev/null) || return 0
  [ -f "$file" ] || return 0
  pid=$(head -1 "$file")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

# The node runs in the background, detached from this shell, its pg_autoctl log in the folder (PostgreSQL's own log is
# in its data folder's log/).
run_node() {
  [ -n "$(keeper_pid "$1")" ] && return 0
  (cd "$dir" && setsid -f runuser -u postgres -- env PATH="$bin:/usr/bin:/bin" PG_CONFIG="$bin/pg_config" \
    XDG_CONFIG_HOME="$dir/config" XDG_DATA_HOME="$dir/share" XDG_RUNTIME_DIR="$dir/run" PGPASSFILE="$dir/pgpass" \
    pg_autoctl run --pgdata "$dir/$1" >> "$dir/$1.log" 2>&1 < /dev/null)
  for _ in $(seq 1 100); do [ -n "$(keeper_pid "$1")" ] && return 0; sleep 0.1; done
  echo "ha.sh: pg_autoctl run for $1 did not start, see $dir/$1.log" >&2; exit 1
}

# Our own settings, included after pg_auto_failover's (which sizes shared_buffers to a quarter of the machine's
# memory, for each of the three instances), and synchronous_commit stated on.
tune() {
  local conf="$dir/$1/quotaledger-ha.conf"
  cat > "$conf" <<EOF
# Written by loadtest/ha.sh, included last from postgresql.conf.
shared_buffers = '128MB'
effective_cache_size = '1GB'
maintenance_work_mem = '64MB'
work_mem = '4MB'
synchronous_commit = on
EOF
  # pg_auto_failover keeps up to 8 GB of WAL for standbys; its replication slots already keep what a standby needs.
  [ "$1" = monitor ] || echo "wal_keep_size = '512MB'" >> "$conf"
  [ "$1" = monitor ] || echo "max_connections = 200" >> "$conf"
  chown postgres:postgres "$conf"
  grep -q "^include 'quotaledger-ha.conf'" "$dir/$1/postgresql.conf" || echo "include 'quotaledger-ha.conf'" >> "$dir/$1/postgresql.conf"
}

# pg_hba.conf is per node (and not replicated): the same rules on both nodes, since either may be the primary.
write_hba() {
  local hba="$dir/$1/pg_hba.conf"
  if [ "$1" = monitor ]; then
    cat > "$hba" <<'EOF'
# Written by loadtest/ha.sh (pg_autoctl runs with --skip-pg-hba): loopback only, scram passwords over TLS.
local   all               postgres                        peer
hostssl pg_auto_failover  autoctl_node      127.0.0.1/32  scram-sha-256
EOF
  else
    cat > "$hba" <<'EOF'
# Written by loadtest/ha.sh (pg_autoctl runs with --skip-pg-hba): loopback only, scram passwords over TLS.
local   all          postgres                                    peer
# Streaming replication and pg_rewind when a former primary rejoins.
hostssl replication  pgautofailover_replicator      127.0.0.1/32 scram-sha-256
hostssl postgres     pgautofailover_replicator      127.0.0.1/32 scram-sha-256
# The monitor's health check only needs an answer (an authentication request counts); the role has no password.
hostssl postgres     pgautofailover_monitor         127.0.0.1/32 scram-sha-256
# The ledger: the schema's owner (migrations) and the serving role.
hostssl quotaledger  quotaledger,quotaledger_app    127.0.0.1/32 scram-sha-256
EOF
  fi
  chown postgres:postgres "$hba"; chmod 600 "$hba"
}

# name reportedstate goalstate port, one line per node, from the monitor.
nodes() { monitor_sql "SELECT nodename, reportedstate, goalstate, nodeport FROM pgautofailover.node ORDER BY nodeid" | tr '|' ' '; }
primary_port() { nodes | awk '$2 == $3 && ($2 == "primary" || $2 == "wait_primary" || $2 == "single") { print $4; exit }'; }
has_primary() { local port; port=$(primary_port); [ -n "$port" ] && sql "$port" postgres -c "SELECT 1" > /dev/null 2>&1; }
node_of_port() { [ "$1" = "${node_port[1]}" ] && echo node1 || echo node2; }

wait_until() {
  local what=$1 seconds=$2; shift 2
  for _ in $(seq 1 $((seconds * 2))); do "$@" && return 0; sleep 0.5; done
  echo "ha.sh: no $what after $seconds s" >&2; nodes >&2 || true; exit 1
}

in_sync() {
  local port
  port=$(primary_port)
  [ -n "$port" ] && nodes | awk '$2 == $3 && $2 == "primary" { p++ } $2 == $3 && $2 == "secondary" { s++ } END { exit !(p == 1 && s == 1) }' &&
    [ "$(sql "$port" postgres -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')")" = 1 ]
}

create_node() {
  local name=$1 port=$2
  [ -f "$dir/.$name-created" ] && return 0
  [ -e "$dir/$name" ] && { echo "ha.sh: $dir/$name exists but was not fully created; run destroy first" >&2; exit 1; }
  as_postgres pg_autoctl create postgres --pgdata "$dir/$name" --pgport "$port" --listen 127.0.0.1 --hostname 127.0.0.1 \
    --name "$name" --pgctl "$bin/pg_ctl" --skip-pg-hba --ssl-self-signed \
    --monitor "$monitor_uri" >> "$dir/$name.log" 2>&1 ||
    { echo "ha.sh: creating $name failed, see $dir/$name.log" >&2; tail -20 "$dir/$name.log" >&2; exit 1; }
  # The replication password goes into the standby's primary_conninfo; pg_autoctl does not set it on the role.
  as_postgres pg_autoctl config set --pgdata "$dir/$name" replication.password "$(secret replication)" > /dev/null
  write_hba "$name"
  tune "$name"
  touch "$dir/.$name-created"
}

# On the monitor (reloaded) and in each created node's pg_autoctl configuration (a running keeper reloads it).
apply_failover_settings() {
  local setting name
  for setting in "${monitor_settings[@]}"; do
    if [[ $setting == *=* ]]; then
      monitor_sql "ALTER SYSTEM SET pgautofailover.${setting%%=*} = ${setting#*=}"
    else
      monitor_sql "ALTER SYSTEM RESET pgautofailover.$setting"
    fi
  done
  monitor_sql "SELECT pg_reload_conf()" > /dev/null
  for name in node1 node2; do
    [ -f "$dir/.$name-created" ] || continue
    as_postgres pg_autoctl config set --pgdata "$dir/$name" timeout.network_partition_timeout "$network_partition_timeout" > /dev/null
  done
}

cmd_start() {
  if [ -f "$dir/.formation-ready" ] && [ -n "$(keeper_pid monitor)" ] && [ -n "$(keeper_pid node1)" ] && [ -n "$(keeper_pid node2)" ]; then
    apply_failover_settings
    exports; return 0
  fi
  mkdir -p "$dir/run"
  chmod 700 "$dir/run"
  chown -R postgres:postgres "$dir"
  if [ ! -f "$dir/secrets" ]; then
    (umask 077
     for name in monitor replication owner app; do echo "$name=$(openssl rand -hex 24)"; done > "$dir/secrets"
     cat > "$dir/pgpass" <<EOF
127.0.0.1:$monitor_port:pg_auto_failover:autoctl_node:$(secret monitor)
127.0.0.1:*:*:pgautofailover_replicator:$(secret replication)
EOF
    )
    chown postgres:postgres "$dir/secrets" "$dir/pgpass"
  fi

  if [ ! -f "$dir/.monitor-created" ]; then
    [ -e "$dir/monitor" ] && { echo "ha.sh: $dir/monitor exists but was not fully created; run destroy first" >&2; exit 1; }
    as_postgres pg_autoctl create monitor --pgdata "$dir/monitor" --pgport "$monitor_port" --listen 127.0.0.1 \
      --hostname 127.0.0.1 --pgctl "$bin/pg_ctl" --skip-pg-hba --ssl-self-signed >> "$dir/monitor.log" 2>&1 ||
      { echo "ha.sh: creating the monitor failed, see $dir/monitor.log" >&2; tail -20 "$dir/monitor.log" >&2; exit 1; }
    write_hba monitor
    tune monitor
    touch "$dir/.monitor-created"
  fi
  run_node monitor
  wait_until "monitor" 60 monitor_sql "SELECT 1" > /dev/null 2>&1
  # pg_autoctl does not set the password of the role the nodes use to reach the monitor.
  sql "$monitor_port" pg_auto_failover -v pw="$(secret monitor)" <<'SQL'
ALTER ROLE autoctl_node PASSWORD :'pw';
SQL

  # The first node is created and running (as primary, state single) before the second registers as its standby.
  create_node node1 "${node_port[1]}"
  apply_failover_settings
  run_node node1
  wait_until "primary" 120 has_primary
  # The replication role exists once the first node has initialised, without a password; set on the primary, the
  # password reaches the standby with the rest of the catalog.
  sql "$(primary_port)" postgres -v pw="$(secret replication)" <<'SQL'
ALTER ROLE pgautofailover_replicator PASSWORD :'pw';
SQL
  create_node node2 "${node_port[2]}"
  apply_failover_settings
  run_node node1
  run_node node2
  wait_until "primary and secondary in sync" 300 in_sync

  # The ledger's database and roles, on the primary (they replicate; pg_hba.conf was written on both nodes).
  sql "$(primary_port)" postgres -v owner_pw="$(secret owner)" -v app_pw="$(secret app)" <<'SQL'
SELECT 'CREATE ROLE quotaledger' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quotaledger') \gexec
SELECT 'CREATE ROLE quotaledger_app' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quotaledger_app') \gexec
ALTER ROLE quotaledger WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_pw';
ALTER ROLE quotaledger_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD :'app_pw';
SELECT 'CREATE DATABASE quotaledger OWNER quotaledger' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'quotaledger') \gexec
SQL
  touch "$dir/.formation-ready"
  exports
}

cmd_status() {
  as_postgres pg_autoctl show state --monitor "$monitor_uri"
  local port
  port=$(primary_port)
  [ -n "$port" ] || { echo "no primary"; return 0; }
  echo "primary: $(node_of_port "$port") (port $port), synchronous_standby_names = '$(sql "$port" postgres -c "SHOW synchronous_standby_names")'," \
    "synchronous_commit = $(sql "$port" postgres -c "SHOW synchronous_commit")"
  sql "$port" postgres -F ' ' -c "SELECT 'standby ' || application_name, state, 'sync_state=' || sync_state FROM pg_stat_replication"
}

# A write through the multi-host connection string: libpq tries both nodes and keeps the one that takes writes. A
# temporary table leaves nothing behind but writes catalog rows, so its commit is flushed and, while a standby is in
# sync, waits for the standby (txid_current() alone would not: a transaction that wrote no WAL commits asynchronously).
probe_write() {
  PGPASSWORD="$(secret owner)" psql -X -q -At -c "CREATE TEMP TABLE ha_probe AS SELECT 1 AS x" \
    "host=127.0.0.1,127.0.0.1 port=${node_port[1]},${node_port[2]} dbname=quotaledger user=quotaledger sslmode=require target_session_attrs=read-write connect_timeout=1" > /dev/null 2>&1
}

cmd_kill_primary() {
  local port old new pids t0 seen="" state line
  in_sync || { echo "ha.sh: the formation is not a primary with a secondary in sync; see status" >&2; exit 1; }
  port=$(primary_port)
  old=$(node_of_port "$port")
  [ "$old" = node1 ] && new=node2 || new=node1
  # Everything that would notice and restart postgres dies with it: pg_autoctl's supervisor and its services
  # (postgres controller, node-active keeper), then the postmaster and its children, all with SIGKILL at once.
  local supervisor postmaster
  supervisor=$(keeper_pid "$old")
  postmaster=$(head -1 "$dir/$old/postmaster.pid")
  pids="$supervisor $(pgrep -P "$supervisor" | tr '\n' ' ') $postmaster $(pgrep -P "$postmaster" | tr '\n' ' ')"
  t0=$(date +%s.%N)
  kill -KILL $pids 2>/dev/null || true
  echo "$(date +%T.%3N) killed $old (port $port) with SIGKILL: pg_autoctl $supervisor and children, postmaster $postmaster and children"
  elapsed() { awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }'; }
  local write_s=""
  for _ in $(seq 1 1800); do
    line=$(nodes | awk -v n="$new" '$1 == n { print $2 "/" $3 }')
    if [ "$line" != "$seen" ]; then echo "  +$(elapsed) s monitor: $new reported/goal $line"; seen=$line; fi
    if probe_write; then write_s=$(elapsed); break; fi
    sleep 0.1
  done
  [ -n "$write_s" ] || { echo "ha.sh: no write succeeded within 180 s" >&2; exit 1; }
  echo "$(date +%T.%3N) first write through the multi-host connection string committed $write_s s after the kill (on $new)"
  state=$(nodes | awk -v n="$new" '$1 == n { print $2 }')
  echo "  $new is $state, synchronous_standby_names = '$(sql "${node_port[${new#node}]}" postgres -c "SHOW synchronous_standby_names")'"

  # The old node comes back as a standby of the new primary: its keeper finds it was demoted, rewinds it to the
  # new timeline (pg_rewind) when it has WAL the new primary lacks, and follows it.
  local t1 logged
  t1=$(date +%s.%N)
  logged=$(wc -l < "$dir/$old.log")
  echo "$(date +%T.%3N) restarting $old's pg_autoctl"
  run_node "$old"
  t0=$t1
  wait_until "rejoin of $old" 300 in_sync
  echo "$(date +%T.%3N) $old rejoined as secondary, in sync again $(elapsed) s after its restart"
  tail -n +"$((logged + 1))" "$dir/$old.log" | grep -E "Rewinding|diverged|rewind required|pg_basebackup" | sed "s/^[0-9:]* [0-9]* [A-Z]* */  $old: /" | cut -c1-160 || true
}

stop_node() {
  local pid
  pid=$(keeper_pid "$1")
  [ -n "$pid" ] || return 0
  as_postgres pg_autoctl stop --pgdata "$dir/$1" > /dev/null 2>&1 || true
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "ha.sh: $1's pg_autoctl ($pid) still runs after 60 s" >&2; return 1
}

# The secondary first, so the monitor never sees the primary vanish while a standby could take over.
cmd_stop() {
  [ -d "$dir" ] || return 0
  local port first=node2 second=node1
  port=$(primary_port 2>/dev/null || true)
  [ "$port" = "${node_port[2]}" ] && { first=node1; second=node2; }
  stop_node "$first"; stop_node "$second"; stop_node monitor
}

case "${1:-}" in
  start) cmd_start ;;
  env) [ -f "$dir/.formation-ready" ] || { echo "ha.sh: no formation in $dir; run start" >&2; exit 1; }; exports ;;
  status) cmd_status ;;
  kill-primary) cmd_kill_primary ;;
  stop) cmd_stop ;;
  destroy) cmd_stop; rm -rf "$dir" ;;
  *) echo "usage: $0 start|env|status|kill-primary|stop|destroy" >&2; exit 2 ;;
esac
