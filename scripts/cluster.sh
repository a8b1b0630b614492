#!/usr/bin/env bash
# Starts a 3-member keel store cluster on this machine (loopback), like etcd's
# Procfile: clients on 2379, 22379, 32379; peers on 2380, 22380, 32380; data in
# ./cluster-data/<name>. Ctrl-C stops all three.
#
#   scripts/cluster.sh            # build (release) and start
#   etcdctl --endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 put k v
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin keel
bin=target/release/keel
cluster="infra1=http://127.0.0.1:2380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for spec in infra1:2379:2380 infra2:22379:22380 infra3:32379:32380; do
  IFS=: read -r name cport pport <<<"$spec"
  "$bin" store --name "$name" --data-dir "cluster-data/$name" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "$cluster" --initial-cluster-token keel-cluster-1 --initial-cluster-state new &
  pids+=($!)
done
wait
