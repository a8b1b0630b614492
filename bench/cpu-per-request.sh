#!/usr/bin/env bash
# Requests/s and the CPU each request costs the server(s) and the load
# generator, for keel or etcd 3.4 (`etcd` on PATH), on a fresh cluster of 1 or
# 3 members on loopback (issue 8). On two cores both servers are CPU-bound at
# 10/100 and above, so CPU per request is what their throughput follows:
# with server CPU s and client CPU c per request, requests/s <= cores / (s + c).
#
#   bench/cpu-per-request.sh keel|etcd MEMBERS CONNS CLIENTS TOTAL [WORKLOAD...]
#
#   bench/cpu-per-request.sh keel 1 10 100 40000             # put 10/100
#   bench/cpu-per-request.sh etcd 3 1 1 5000                 # put 1/1, 3 members
#   bench/cpu-per-request.sh keel 3 1 1 6000 range foo       # linearizable range
#
# The workload defaults to `put --key-space-size 100000` (8-byte keys,
# 256-byte values). Variables in the environment reach the servers (e.g.
# KEEL_EXPERIMENTAL_RAFT_SPIN=0s); KEEL=path runs that keel binary (servers and
# load generator) instead of building this tree's. Server CPU is utime + stime of every member
# (/proc/PID/stat) across the run; client CPU is the bench process's, from
# /usr/bin/time. Both servers get etcd's flags from bench/compare (heartbeat
# 100 ms, election 1 s, snapshot count 100,000). A warm-up of 1,000 requests
# runs first. Prints one line; data goes under ./bench-data and is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 5 ] || { sed -n 2,20p "$0"; exit 2; }
who=$1 members=$2 conns=$3 clients=$4 total=$5
shift 5
workload=("$@")
[ ${#workload[@]} -gt 0 ] || workload=(put --key-space-size 100000)
case $who in keel | etcd) ;; *) echo "first argument: keel or etcd" >&2; exit 2 ;; esac
case $members in 1 | 3) ;; *) echo "members: 1 or 3" >&2; exit 2 ;; esac
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
[ "$who" = keel ] || command -v etcd >/dev/null || { echo "needs etcd (apt-get install etcd-server)" >&2; exit 2; }

if [ -n "${KEEL:-}" ]; then keel=$KEEL; else
    cargo build --release --quiet --bin keel
    keel=$PWD/target/release/keel
fi
data=$PWD/bench-data/cpu-per-request
rm -rf "$data" && mkdir -p "$data"

# Free loopback ports: client ports, then peer ports.
read -r -a ports < <(python3 -c "
import socket
ss=[socket.socket() for _ in range(2*$members)]
for s in ss: s.bind(('127.0.0.1',0))
print(' '.join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()")
cluster=""
for i in $(seq 0 $((members - 1))); do
    cluster+="${cluster:+,}m$i=http://127.0.0.1:${ports[$((members + i))]}"
done

pids=()
stop() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"; }
trap stop EXIT
endpoints=""
for i in $(seq 0 $((members - 1))); do
    client=http://127.0.0.1:${ports[$i]} peer=http://127.0.0.1:${ports[$((members + i))]}
    endpoints+="${endpoints:+,}127.0.0.1:${ports[$i]}"
    common=(--name "m$i" --data-dir "$data/m$i" --listen-client-urls "$client"
        --advertise-client-urls "$client" --listen-peer-urls "$peer"
        --initial-advertise-peer-urls "$peer" --initial-cluster "$cluster"
        --heartbeat-interval=100 --election-timeout=1000 --snapshot-count=100000)
    if [ "$who" = keel ]; then
        "$keel" server "${common[@]}" >"$data/m$i.log" 2>&1 &
    else
        etcd "${common[@]}" --quota-backend-bytes=2147483648 >"$data/m$i.log" 2>&1 &
    fi
    pids+=($!)
done
for i in $(seq 0 $((members - 1))); do
    for _ in $(seq 200); do
        curl -s "127.0.0.1:${ports[$i]}/health" | grep -q '"true"' && break
        sleep 0.1
    done
done

bench=("$keel" bench --endpoints "$endpoints" --target-leader --conns "$conns" --clients "$clients")
"${bench[@]}" "${workload[@]}" --total 1000 --json >/dev/null
cpu() { local t=0; for p in "${pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
before=$(cpu)
/usr/bin/time -f "%U %S" -o "$data/client-cpu" "${bench[@]}" "${workload[@]}" --total "$total" --json >"$data/out.json"
after=$(cpu)
python3 - "$before" "$after" "$(getconf CLK_TCK)" "$data" "$who" "$members" "$conns/$clients" "${workload[*]}" <<'PY'
import json, sys
before, after, hz = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
data, who, members, cc, workload = sys.argv[4:9]
out = json.load(open(f"{data}/out.json"))
user, system = map(float, open(f"{data}/client-cpu").read().split())
n = out["total"]
print(f"{who} {members} member(s) {workload} {cc}: {out['requests_per_sec']:.0f} /s, "
      f"p99 {out['latency_ms']['p99']:.2f} ms, server CPU {(after - before) / hz * 1e6 / n:.1f} us/request, "
      f"client CPU {(user + system) * 1e6 / n:.1f} us/request, errors {out['errors']}")
PY
