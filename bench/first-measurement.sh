#!/usr/bin/env bash
# First measurement of keel's write path (issue 2): sequential puts (1 conn, 1
# client) and concurrent puts (10 conns, 100 clients), 8-byte keys and 256-byte
# values, on a 1-member and a 3-member keel cluster on loopback, with the disk's
# fdatasync latency measured beside them. Prints a markdown table.
#
#   bench/first-measurement.sh [TOTAL_SEQ] [TOTAL_CONC]
#
# Data dirs go under ./bench-data (the disk being measured); removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
seq_total=${1:-3000}
conc_total=${2:-20000}
cargo build --release --bin keel >/dev/null 2>&1
bin=$PWD/target/release/keel
work=$PWD/bench-data
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_healthy() { for _ in $(seq 200); do curl -sf "http://$1/health" | grep -q true && return 0; sleep 0.05; done; echo "not healthy: $1" >&2; return 1; }

start_cluster() { # n -> sets endpoints
  local n=$1 cluster="" names=() cports=() pports=()
  for i in $(seq 1 "$n"); do names+=("m$i"); cports+=("$(port)"); pports+=("$(port)"); done
  for i in $(seq 0 $((n-1))); do cluster+="${cluster:+,}${names[$i]}=http://127.0.0.1:${pports[$i]}"; done
  endpoints=""
  for i in $(seq 0 $((n-1))); do
    "$bin" store --name "${names[$i]}" --data-dir "$work/$n-${names[$i]}" \
      --listen-client-urls "http://127.0.0.1:${cports[$i]}" --listen-peer-urls "http://127.0.0.1:${pports[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-token "bench-$n" 2>"$work/$n-${names[$i]}.log" &
    pids+=($!)
    endpoints+="${endpoints:+,}127.0.0.1:${cports[$i]}"
  done
  for i in $(seq 0 $((n-1))); do wait_healthy "127.0.0.1:${cports[$i]}"; done
}
stop_cluster() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }

row() { # label json
  python3 - "$1" "$2" <<'PY'
import json, sys
label, j = sys.argv[1], json.loads(sys.argv[2])
l = j["latency_ms"]
print(f"| {label} | {j['requests_per_sec']:.0f} | {l['avg']:.2f} | {l['p50']:.2f} | {l['p99']:.2f} | {l['max']:.1f} | {j['errors']} |")
PY
}

fs=$("$bin" bench fsync --path "$work" --count 300 --json)
python3 - "$fs" <<'PY'
import json, sys
j = json.loads(sys.argv[1]); l = j["latency_ms"]
print(f"fdatasync (4 KiB, 300 rounds): avg {l['avg']:.3f} ms, p50 {l['p50']:.3f} ms, p99 {l['p99']:.3f} ms; 1/p50 = {1000/l['p50']:.0f}/s")
PY
echo
echo "| workload | req/s | avg ms | p50 ms | p99 ms | max ms | errors |"
echo "|---|---|---|---|---|---|---|"
for n in 1 3; do
  start_cluster "$n"
  j=$("$bin" bench --endpoints "$endpoints" --target-leader --conns 1 --clients 1 --json put --key-size 8 --val-size 256 --sequential-keys --key-space-size 100000 --total "$seq_total")
  row "$n member(s), put 1 conn / 1 client, sequential" "$j"
  j=$("$bin" bench --endpoints "$endpoints" --target-leader --conns 10 --clients 100 --json put --key-size 8 --val-size 256 --key-space-size 100000 --total "$conc_total")
  row "$n member(s), put 10 conns / 100 clients" "$j"
  stop_cluster
done
