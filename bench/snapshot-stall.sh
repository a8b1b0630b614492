#!/usr/bin/env bash
# Does taking or sending a snapshot stall writes? (issue 5)
#
# A 3-member keel cluster with the default --snapshot-count (100000) is loaded
# with 1M keys (256-byte values, txns of 100 puts). Then, with `keel bench put`
# running each time (100 clients, 10 conns, 256-byte values):
#   baseline  - puts that trigger no truncation;
#   truncate  - a follower stopped; enough puts that the leader truncates its
#               Raft log (a "snapshot" in etcd's sense) at least once;
#   catch-up  - the follower restarted: behind the truncated log, so the leader
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
all="127.0.0.1:${cport[m1]},127.0.0.1:${cport[m2]},127.0.0.1:${cport[m3]}"

bench() { "$bin" bench --endpoints "$1" --conns 10 --clients 100 put --total "$2" --val-size 256 --key-space-size 1000000 --json; }
row() { python3 -c '
import json,sys
r=json.loads(sys.argv[2]); l=r["latency_ms"]
print("| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %d |" % (sys.argv[1], r["requests_per_sec"], l["p50"], l["p99"], l["p999"], l["max"], r["errors"]))' "$1" "$2"; }

echo "loading 1M keys..." >&2
"$bin" bench --endpoints "$all" --conns 10 --clients 20 txn-put --txn-ops 100 --key-space-size 1000000 --total 10000 --val-size 256 --json >/dev/null
echo "| phase | puts/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |"
echo "|---|---|---|---|---|---|---|"
row baseline "$(bench "$all" 20000)"
# Stop a follower (never the leader: that would measure an election instead).
down=""; for n in m3 m2 m1; do [ "$(metric "127.0.0.1:${cport[$n]}" etcd_server_is_leader)" = "1" ] || { down=$n; break; }; done
up=""; for n in "${names[@]}"; do [ "$n" = "$down" ] || up+="${up:+,}127.0.0.1:${cport[$n]}"; done
kill "${pid[$down]}"; wait "${pid[$down]}" 2>/dev/null || true; unset "pid[$down]"
first=${up%%,*}
t0=$(metric "$first" keel_raft_log_truncations_total)
row truncate "$(bench "$up" "$phase_total")"
t1=$(metric "$first" keel_raft_log_truncations_total)
start "$down"
row catch-up "$(bench "$up" 30000)"
wait_healthy "127.0.0.1:${cport[$down]}"
echo
echo "stopped follower: $down; log truncations on $first during 'truncate': $t0 -> $t1"
echo "$down snapshots received: $(metric "127.0.0.1:${cport[$down]}" etcd_network_snapshot_receive_success)"
grep -h "raft log truncated" "$work"/*.log | tail -2 | sed 's/\x1b\[[0-9;]*m//g'
echo "slow Raft readies (longer than 2 heartbeats) and leader changes after the start:"
grep -h "slow raft ready\|PreCandidate\|Candidate" "$work"/*.log | sort | tail -8 | sed 's/\x1b\[[0-9;]*m//g'
grep -h "snapshot sent" "$work"/*.log | tail -1 | sed 's/\x1b\[[0-9;]*m//g'
grep -h "snapshot installed\|image installed" "$work/$down.log" | tail -2 | sed 's/\x1b\[[0-9;]*m//g'
