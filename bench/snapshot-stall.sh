#!/usr/bin/env bash
# Does taking or sending a snapshot stall writes? (issue 5)
#
# A 3-member keel cluster with the default --snapshot-count (100000) is loaded
# with 1M keys (256-byte values, txns of 100 puts). Then, with `keel bench put`
# running each time (100 clients, 10 conns, 256-byte values):
#   baseline  - puts that trigger no truncation;
#   truncate  - member m3 stopped; enough puts that the leader truncates its
#               Raft log (a "snapshot" in etcd's sense) at least once;
#   catch-up  - m3 restarted: it is behind the truncated log, so the leader
#               streams it an image of the 1M-key store while the puts go on.
# Prints each phase's throughput and latency (p50/p99/p99.9/max) as a table,
# and the snapshot counters that prove each phase did what it says.
#
#   bench/snapshot-stall.sh [PUTS_PER_PHASE]
#
# Data dirs go under ./bench-data (the disk being measured); removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
phase_total=${1:-110000}
cargo build --release --bin keel >/dev/null 2>&1
bin=$PWD/target/release/keel
work=$PWD/bench-data
rm -rf "$work"; mkdir -p "$work"
declare -A pid
cleanup() { for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_healthy() { for _ in $(seq 600); do curl -sf "http://$1/health" | grep -q true && return 0; sleep 0.1; done; echo "not healthy: $1" >&2; return 1; }
metric() { curl -sf "http://$1/metrics" | awk -v n="$2" '$1==n {print $2}'; }

names=(m1 m2 m3); declare -A cport pport
for n in "${names[@]}"; do cport[$n]=$(port); pport[$n]=$(port); done
cluster=""; for n in "${names[@]}"; do cluster+="${cluster:+,}$n=http://127.0.0.1:${pport[$n]}"; done
start() {
  "$bin" store --name "$1" --data-dir "$work/$1" \
    --listen-client-urls "http://127.0.0.1:${cport[$1]}" --listen-peer-urls "http://127.0.0.1:${pport[$1]}" \
    --initial-cluster "$cluster" --initial-cluster-token stall 2>>"$work/$1.log" &
  pid[$1]=$!
}
for n in "${names[@]}"; do start "$n"; done
for n in "${names[@]}"; do wait_healthy "127.0.0.1:${cport[$n]}"; done
ep12="127.0.0.1:${cport[m1]},127.0.0.1:${cport[m2]}"
all="$ep12,127.0.0.1:${cport[m3]}"

bench() { "$bin" bench --endpoints "$1" --conns 10 --clients 100 put --total "$2" --val-size 256 --key-space-size 1000000 --json; }
row() { python3 -c '
import json,sys
r=json.loads(sys.argv[2]); l=r["latency_ms"]
print(f"| {sys.argv[1]} | {r[\"requests_per_sec\"]:.0f} | {l[\"p50\"]:.1f} | {l[\"p99\"]:.1f} | {l[\"p999\"]:.1f} | {l[\"max\"]:.1f} | {r[\"errors\"]} |")' "$1" "$2"; }

echo "loading 1M keys..." >&2
"$bin" bench --endpoints "$all" --conns 10 --clients 20 txn-put --txn-ops 100 --key-space-size 1000000 --total 10000 --val-size 256 --json >/dev/null
echo "| phase | puts/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |"
echo "|---|---|---|---|---|---|---|"
row baseline "$(bench "$all" 20000)"
kill "${pid[m3]}"; wait "${pid[m3]}" 2>/dev/null || true; unset 'pid[m3]'
t0=$(metric "127.0.0.1:${cport[m1]}" keel_raft_log_truncations_total)
row truncate "$(bench "$ep12" "$phase_total")"
t1=$(metric "127.0.0.1:${cport[m1]}" keel_raft_log_truncations_total)
start m3
row catch-up "$(bench "$ep12" 30000)"
wait_healthy "127.0.0.1:${cport[m3]}"
echo
echo "m1 log truncations during 'truncate': $t0 -> $t1"
echo "m3 snapshots received: $(metric "127.0.0.1:${cport[m3]}" etcd_network_snapshot_receive_success)"
grep -h "snapshot sent" "$work"/m1.log "$work"/m2.log | tail -1 | sed 's/\x1b\[[0-9;]*m//g'
grep -h "snapshot installed\|image installed" "$work"/m3.log | tail -2 | sed 's/\x1b\[[0-9;]*m//g'
