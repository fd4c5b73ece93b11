#!/usr/bin/env bash
# Textbook double-entry deduction baseline (pgbench).
# Usage: run.sh <unit_years> <clients> <seconds>
# Connection: libpq env vars (PGHOST, PGPORT, PGUSER, PGPASSWORD);
# PGDATABASE defaults to quotaledger_baseline and is created if missing.
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 <unit_years> <clients> <seconds>" >&2
    exit 64
fi
unit_years=$1
clients=$2
seconds=$3
for v in "$unit_years" "$clients" "$seconds"; do
    if ! [[ $v =~ ^[1-9][0-9]*$ ]]; then
        echo "$0: arguments must be positive integers, got '$v'" >&2
        exit 64
    fi
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PGDATABASE=${PGDATABASE:-quotaledger_baseline}

find_bin() {
    local name=$1 cand
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return 0
    fi
    # Highest installed PostgreSQL version first.
    for cand in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4 -rn); do
        if [[ -x $cand/$name ]]; then
            echo "$cand/$name"
            return 0
        fi
    done
    echo "$0: $name not found in PATH or /usr/lib/postgresql/*/bin" >&2
    return 1
}
PSQL=$(find_bin psql)
PGBENCH=$(find_bin pgbench)

# Create the database if missing (connect to the maintenance db 'postgres').
# (SQL goes through stdin: psql does not interpolate :variables in -c strings.)
exists=$(PGDATABASE=postgres "$PSQL" -X -q -tA -v ON_ERROR_STOP=1 \
    -v dbname="$PGDATABASE" <<'SQL'
SELECT 1 FROM pg_database WHERE datname = :'dbname';
SQL
)
if [[ -z $exists ]]; then
    echo "creating database $PGDATABASE"
    PGDATABASE=postgres "$PSQL" -X -q -v ON_ERROR_STOP=1 -v dbname="$PGDATABASE" <<'SQL'
CREATE DATABASE :"dbname";
SQL
fi

echo "loading schema (unit_years=$unit_years) into $PGDATABASE"
"$PSQL" -X -q -v ON_ERROR_STOP=1 -v unit_years="$unit_years" -f "$here/schema.sql"

echo "synchronous_commit = $("$PSQL" -X -tA -c 'SHOW synchronous_commit')"
echo "fsync = $("$PSQL" -X -tA -c 'SHOW fsync')"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
"$PGBENCH" -n -M prepared -c "$clients" -j 2 -T "$seconds" \
    -D unit_years="$unit_years" -f "$here/deduct.sql" 2>&1 | tee "$out" || status=$?
if [[ $status -ne 0 ]]; then
    echo "$0: pgbench failed (exit $status)" >&2
    exit "$status"
fi

tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out" | tail -n 1)
if [[ -z $tps ]]; then
    echo "$0: could not find 'tps = ... (without initial connection time)' in pgbench output" >&2
    exit 1
fi
echo "baseline unit_years=$unit_years clients=$clients tps=$tps"
