#!/usr/bin/env bash
# Watch at scale (issue 3), keel beside a real etcd 3.4 (`etcd` on PATH) in the
# same run, each as ONE member on free loopback ports started with the same flags:
#
# 1. memory: the server's VmRSS (/proc/PID/status) at idle, with 100 streams of
#    1 watcher, and with 100 streams of 100 watchers, the watchers held open by a
#    `keel bench watch --put-total 0 --hold` process (one process per step, 10
#    conns); bytes per stream = (RSS(100x1) - RSS(idle)) / 100 (a stream, its
#    share of 10 connections and one watcher), bytes per watcher =
#    (RSS(100x100) - RSS(100x1)) / 9900;
# 2. delivery: 100 streams x 100 watchers on 100 keys (each put reaches 100
#    watchers), puts of 8-byte keys / 256-byte values at PUT_RATE/s for PUT_SECS s
#    from 10 clients, over a connection of their own (as etcd's tool) and again
#    over the streams' connections (--shared-conns, as kube-apiserver shares one):
#    event delivery latency (put sent -> event received) and events expected vs
#    received.
#
#   bench/watch-memory.sh [HOLD_SECS] [PUT_RATE] [PUT_SECS]
#
# Prints markdown tables. Data dirs go under ./bench-data (removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
hold=${1:-8}
rate=${2:-1000}
secs=${3:-10}
streams=100
per=100
conns=10
cargo build --release --bin keel --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/keel
etcd_bin=$(command -v etcd) || { echo "etcd not on PATH (apt-get install etcd-server)" >&2; exit 1; }
work=$PWD/bench-data/watch
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; rmdir "$PWD/bench-data" 2>/dev/null || true; }
trap cleanup EXIT
# Say where a failure happened (set -e alone exits without a word), with the
# servers' and the load generator's last lines.
set -E
trap 'echo "watch-memory.sh: line $LINENO failed: $BASH_COMMAND" >&2
  for f in "$work"/*.log "$work"/*.err; do [ -f "$f" ] && { echo "== $f" >&2; tail -5 "$f" >&2; }; done' ERR

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_healthy() { for _ in $(seq 400); do curl -sf "http://$1/health" | grep -q true && return 0; sleep 0.05; done; echo "not healthy: $1" >&2; return 1; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

start_server() { # kind (keel|etcd) -> sets server_pid, ep
  local kind=$1 cport pport
  cport=$(port); pport=$(port)
  local flags=(--name w1 --data-dir "$work/$kind"
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport"
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport"
    --initial-cluster "w1=http://127.0.0.1:$pport" --initial-cluster-token watch-bench --initial-cluster-state new)
  if [ "$kind" = keel ]; then
    "$bin" store "${flags[@]}" 2>"$work/$kind.log" &
  else
    "$etcd_bin" "${flags[@]}" 2>"$work/$kind.log" &
  fi
  server_pid=$!
  pids+=("$server_pid")
  ep=127.0.0.1:$cport
  wait_healthy "$ep"
}

stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }

held_rss() { # streams per-stream -> prints the server's RSS (kB) while they are held
  local err=$work/hold.err
  "$bin" bench --endpoints "$ep" --conns "$conns" --json watch --streams "$1" --watch-per-stream "$2" \
    --put-total 0 --hold "${hold}s" >"$work/hold.json" 2>"$err" &
  local b=$!
  for _ in $(seq 1200); do grep -q holding "$err" && break; kill -0 "$b" 2>/dev/null || break; sleep 0.05; done
  grep -q holding "$err" || { cat "$err" >&2; return 1; }
  sleep 2
  rss_kb "$server_pid"
  wait "$b" || { cat "$err" >&2; return 1; }
}

declare -A mem delivery
for kind in keel etcd; do
  start_server "$kind"
  sleep 2
  idle=$(rss_kb "$server_pid")
  s1=$(held_rss "$streams" 1)
  sleep 1
  s100=$(held_rss "$streams" "$per")
  mem[$kind]="$idle $s1 $s100"
  sleep 1
  for mode in own shared; do
    shared=(); [ "$mode" = shared ] && shared=(--shared-conns)
    delivery[$kind-$mode]=$("$bin" bench --endpoints "$ep" --conns "$conns" --clients 10 --json watch \
      --streams "$streams" --watch-per-stream "$per" --watched-key-total "$per" \
      --put-total $((rate * secs)) --put-rate "$rate" --key-size 8 --val-size 256 "${shared[@]}")
  done
  mem[$kind]+=" $(rss_kb "$server_pid") $(hwm_kb "$server_pid")"
  stop_server
done

python3 - "$streams" "$per" "${mem[keel]}" "${mem[etcd]}" "${delivery[keel-own]}" "${delivery[etcd-own]}" \
  "${delivery[keel-shared]}" "${delivery[etcd-shared]}" <<'PY'
import json, sys
streams, per = int(sys.argv[1]), int(sys.argv[2])
mem = {"keel": [int(x) for x in sys.argv[3].split()], "etcd": [int(x) for x in sys.argv[4].split()]}
dl = {"keel": json.loads(sys.argv[5]), "etcd": json.loads(sys.argv[6]),
      "keel, --shared-conns": json.loads(sys.argv[7]), "etcd, --shared-conns": json.loads(sys.argv[8])}
mib = lambda kb: f"{kb / 1024:.1f}"
per_stream, per_watcher = {}, {}
print(f"Memory (VmRSS of the one member; {streams} streams, 10 conns):\n")
print("| server | idle MiB | 100 x 1 MiB | 100 x 100 MiB | after delivery MiB | peak (VmHWM) MiB | bytes / stream | bytes / watcher |")
print("|---|---|---|---|---|---|---|---|")
for k in ("keel", "etcd"):
    idle, s1, s100, after, hwm = mem[k]
    per_stream[k] = (s1 - idle) * 1024 / streams
    per_watcher[k] = (s100 - s1) * 1024 / (streams * (per - 1))
    print(f"| {k} | {mib(idle)} | {mib(s1)} | {mib(s100)} | {mib(after)} | {mib(hwm)} | {per_stream[k]:.0f} | {per_watcher[k]:.0f} |")
ratio = lambda a, b: f"{a / b:.2f}" if b > 0 else "n/a"
print(f"\nkeel / etcd: per stream {ratio(per_stream['keel'], per_stream['etcd'])}, per watcher {ratio(per_watcher['keel'], per_watcher['etcd'])}\n")
print(f"Delivery ({streams} streams x {per} watchers on {per} keys over 10 conns; 10 put clients on a conn of their own, or on the streams' conns with --shared-conns):\n")
print("| server | puts/s | events/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | avg ms | expected | received | missing | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for k in dl:
    j = dl[k]; w = j["watch"]; l = j["latency_ms"]
    print(f"| {k} | {w['puts_per_sec']:.0f} | {w['events_per_sec']:.0f} | {l['p50']:.2f} | {l['p90']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {l['max']:.1f} | {l['avg']:.2f} | {w['events_expected']} | {w['events_received']} | {w['events_missing']} | {j['errors']} |")
PY
