#!/bin/bash
# Same-run A/B of two builds of the node or of the client: CPU per event
# over gRPC, for the open storm, JSON to a file. The two builds run by
# turns, REPS times each, so that both see the same machine (its speed
# moves by the hour; compare within one run only).
#
#   xtask/scripts/ab.sh node   GADGET_NODE_A GADGET_NODE_B
#   xtask/scripts/ab.sh client KUBECTL_GADGET_A KUBECTL_GADGET_B
#
# Root (it loads eBPF programs). Build first: cargo build --release -p
# gadget-node -p kubectl-gadget && cargo build -p xtask. The other side
# is target/release's: the client for `node`, the node for `client`.
# N opens per run (default 1000000), REPS runs of each (default 3). CPU
# comes from /proc/PID/stat in clock ticks (10 ms): use N large enough.
# docs/benchmarks.md's notes quote the runs made with it.
set -euo pipefail
if [ $# -ne 3 ] || { [ "$1" != node ] && [ "$1" != client ]; }; then
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
side=$1 a=$2 b=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
node=$root/target/release/gadget-node
client=$root/target/release/kubectl-gadget
xtask=$root/target/debug/xtask
n=${N:-1000000} reps=${REPS:-3}
tick=$(getconf CLK_TCK)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sock=$work/node.sock

# Prints the user+system CPU seconds of PID.
cpu() { awk -v t="$tick" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

start_node() {
  rm -f "$sock"
  RUST_LOG=warn "$1" serve --no-kubernetes --listen "unix://$sock" &
  node_pid=$!
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
  sleep 1
}

[ "$side" = client ] && start_node "$node"
for rep in $(seq "$reps"); do
  for which in A B; do
    if [ "$which" = A ]; then build=$a; else build=$b; fi
    this_client=$client
    if [ "$side" = node ]; then start_node "$build"; else this_client=$build; fi
    "$this_client" trace open --host -o json --node-address "unix://$sock" \
      > "$work/rows.json" 2> "$work/stderr" &
    client_pid=$!
    # For `client`, one node serves every run: count its CPU from here.
    node_cpu_before=$(cpu "$node_pid")
    sleep 1.5
    "$xtask" bench-workload open "$n" > /dev/null
    sleep 1
    client_cpu=$(cpu "$client_pid")
    node_cpu=$(awk -v now="$(cpu "$node_pid")" -v before="$node_cpu_before" \
      'BEGIN { printf "%.2f", now - before }')
    kill -INT "$client_pid"; wait "$client_pid" || true
    if [ "$side" = node ]; then kill "$node_pid"; wait "$node_pid" 2> /dev/null || true; fi
    rows=$(grep -c '"type":"open"' "$work/rows.json" || true)
    awk -v r="$rep" -v w="$which" -v rows="$rows" -v nc="$node_cpu" -v cc="$client_cpu" \
      'BEGIN { printf "run %d %s: %d rows, node %.3f µs per event, client %.3f µs per event\n",
               r, w, rows, nc / rows * 1e6, cc / rows * 1e6 }'
  done
done
if [ "$side" = client ]; then kill "$node_pid"; wait "$node_pid" 2> /dev/null || true; fi
