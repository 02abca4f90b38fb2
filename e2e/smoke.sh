#!/usr/bin/env bash
# Smoke test of a running e2e cluster (e2e/cluster.sh up): checks what the
# suite relies on.
#   1. A DaemonSet gets exactly one pod per node, created by the real
#      controller-manager, bound by the real scheduler, Running as KWOK reports.
#   2. `kubectl port-forward` to one of those pods reaches a TCP listener on
#      this host through a KWOK PortForward object: kubectl -> API server ->
#      KWOK (as the node's kubelet) -> 127.0.0.1:<port>. Both kubectl transports
#      are tried: WebSocket (the default) and SPDY.
# Needs python3 (the listener). Works in a namespace e2e-smoke-<random> and deletes it.
# Same environment as cluster.sh (GADGET_E2E_CLUSTER, GADGET_E2E_WORKDIR, ...).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KUBECONFIG="$("$here/cluster.sh" kubeconfig)"
export KUBECONFIG
ns="e2e-smoke-$RANDOM"
nodes="$("$here/cluster.sh" nodes | sort)"
tmp="$(mktemp -d)"
pids=()

log() { echo "smoke: $*" >&2; }
cleanup() {
	local pid
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

kubectl create namespace "$ns" >/dev/null
kubectl apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: smoke
  namespace: $ns
spec:
  selector:
    matchLabels: {app: smoke}
  template:
    metadata:
      labels: {app: smoke}
    spec:
      nodeSelector:
        kubernetes.io/os: linux
      containers:
      - name: smoke
        image: example.invalid/smoke:1
        ports:
        - {name: grpc, containerPort: 8080}
EOF
kubectl rollout status daemonset/smoke --namespace "$ns" --timeout 60s >&2
placed="$(kubectl get pods --namespace "$ns" --field-selector status.phase=Running \
	-o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort)"
[[ "$placed" == "$nodes" ]] || { log "pods are on [$placed], expected one on each of [$nodes]"; exit 1; }
log "one Running pod on each node: $(echo $placed)"

pod="$(kubectl get pods --namespace "$ns" -o jsonpath='{.items[0].metadata.name}')"
echo "through-the-api-server $pod" >"$tmp/index.html"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$tmp" >"$tmp/http.log" 2>&1 &
pids+=($!)
target=""
for _ in $(seq 50); do
	target="$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$tmp/http.log" | head -n 1)"
	[[ -n "$target" ]] && break
	sleep 0.1
done
[[ -n "$target" ]] || { log "the listener did not start"; exit 1; }

kubectl apply -f - >/dev/null <<EOF
apiVersion: kwok.x-k8s.io/v1alpha1
kind: PortForward
metadata:
  name: $pod
  namespace: $ns
spec:
  forwards:
  - ports: [8080]
    target:
      address: 127.0.0.1
      port: $target
EOF

for websockets in true false; do
	out="$tmp/pf-$websockets.log"
	KUBECTL_PORT_FORWARD_WEBSOCKETS=$websockets kubectl port-forward --namespace "$ns" "pod/$pod" :8080 >"$out" 2>&1 &
	pids+=($!)
	local_port=""
	for _ in $(seq 100); do
		local_port="$(sed -n 's/^Forwarding from 127.0.0.1:\([0-9]*\).*/\1/p' "$out" | head -n 1)"
		[[ -n "$local_port" ]] && break
		sleep 0.1
	done
	[[ -n "$local_port" ]] || { log "kubectl port-forward did not start:"; cat "$out" >&2; exit 1; }
	got="$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().strip())' \
		"http://127.0.0.1:$local_port/index.html")"
	[[ "$got" == "through-the-api-server $pod" ]] || { log "read '$got' through the port-forward"; exit 1; }
	log "port-forward (websockets=$websockets) to $ns/$pod:8080 reached 127.0.0.1:$target"
done
log "ok"
