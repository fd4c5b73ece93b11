#!/usr/bin/env bash
# CPU used by each process group over a window, in cores: the QuotaLedger server, PostgreSQL, the load generator and
# everything else. Run it while a load test is measuring. Usage: loadtest/cpu-split.sh [seconds, default 10]
set -euo pipefail
seconds="${1:-10}"
snapshot() {
  for proc in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' < "$proc/cmdline" 2>/dev/null | head -c 300) || continue
    [ -n "$cmd" ] || continue
    stat=$(sed 's/.*) //' "$proc/stat" 2>/dev/null) || continue
    read -r -a fields <<< "$stat"
    ticks=$(( fields[11] + fields[12] ))
    case "$cmd" in
      *QuotaLedger.Server*) echo "server $ticks" ;;
      *QuotaLedger.LoadTest*) echo "loadgen $ticks" ;;
      *postgres*) echo "postgres $ticks" ;;
      *) echo "other $ticks" ;;
    esac
  done | awk '{ sum[$1] += $2 } END { for (k in sum) print k, sum[k] }' | sort
}
before=$(mktemp); after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
snapshot > "$before"; sleep "$seconds"; snapshot > "$after"
hz=$(getconf CLK_TCK)
join "$before" "$after" | awk -v s="$seconds" -v hz="$hz" '{ printf "%-9s %.2f cores\n", $1, ($3 - $2) / hz / s }'
echo "(of $(nproc) cores, over ${seconds}s)"
