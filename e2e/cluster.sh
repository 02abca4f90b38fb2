#!/usr/bin/env bash
# The local e2e cluster: a real etcd, kube-apiserver, kube-controller-manager
# and kube-scheduler started by kwokctl (--runtime binary, bound to
# 127.0.0.1) from the binaries of build-binaries.sh, with KWOK simulating the
# nodes and serving the PortForward/ClusterPortForward CRDs.
#
#   e2e/cluster.sh up          create the cluster (replacing a leftover one of
#                              the same name) and its nodes, wait until usable;
#                              stdout: one line, the kubeconfig path
#   e2e/cluster.sh down        delete the cluster (succeeds if there is none)
#   e2e/cluster.sh kubeconfig  stdout: the kubeconfig path (fails if no cluster)
#   e2e/cluster.sh nodes       stdout: the node names, one a line
#
# Environment (all optional):
#   GADGET_E2E_CLUSTER  cluster name                       (gadget-e2e)
#   GADGET_E2E_NODES    number of KWOK nodes, 0 for none   (3)
#                       (node.sh adds a real node to the cluster)
#   GADGET_E2E_WORKDIR  kwokctl's work directory: cluster state, pki, logs
#                       (${XDG_STATE_HOME:-$HOME/.local/state}/kubectl-gadget/e2e/kwok)
#   GADGET_E2E_BIN      directory holding the binaries; if unset,
#                       build-binaries.sh is run (cheap once cached)
#   GADGET_E2E_TIMEOUT  seconds `up` waits for each readiness step (120)
#
# Nodes are named <cluster>-node-<i> (i from 0), labelled kubernetes.io/os=linux,
# kubernetes.io/arch=amd64, kubernetes.io/hostname=<name>, type=kwok, and
# annotated kwok.x-k8s.io/node=fake. Progress goes to stderr; on a failed `up`
# the tail of each component's log is printed to stderr and the cluster is
# deleted.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

name="${GADGET_E2E_CLUSTER:-gadget-e2e}"
nodes="${GADGET_E2E_NODES:-3}"
timeout="${GADGET_E2E_TIMEOUT:-120}"
export KWOK_WORKDIR="${GADGET_E2E_WORKDIR:-${XDG_STATE_HOME:-$HOME/.local/state}/kubectl-gadget/e2e/kwok}"
cluster_dir="$KWOK_WORKDIR/clusters/$name"
kubeconfig="$cluster_dir/kubeconfig.yaml"
# The kubernetes service's cluster IP: the first address of kwokctl's
# default service range, 10.0.0.0/24.
service_ip=10.0.0.1

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

[[ "$name" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "bad cluster name '$name'"
[[ "$nodes" =~ ^(0|[1-9][0-9]*)$ ]] || die "GADGET_E2E_NODES must be a number, not '$nodes'"

bin_dir() {
	if [[ -n "${GADGET_E2E_BIN:-}" ]]; then
		echo "$GADGET_E2E_BIN"
	else
		"$here/build-binaries.sh" | tail -n 1
	fi
}

node_names() {
	local i
	for ((i = 0; i < nodes; i++)); do
		echo "$name-node-$i"
	done
}

# Stops the cluster's processes and removes its directory. `down` must not
# trigger a build, so it looks for kwokctl without building it; if kwokctl is
# not there it signals the processes recorded in the cluster's pid files.
delete_cluster() { # [kwokctl]
	local kwokctl="${1:-}" pid_file pid
	[[ -d "$cluster_dir" ]] || return 0
	if [[ -z "$kwokctl" ]]; then
		kwokctl="${GADGET_E2E_BIN:-$("$here/build-binaries.sh" --dir)}/kwokctl"
	fi
	if [[ -x "$kwokctl" ]]; then
		"$kwokctl" delete cluster --name "$name" >&2 || true
	else
		log "no kwokctl at $kwokctl: stopping the processes in $cluster_dir/pids"
		for pid_file in "$cluster_dir"/pids/*.pid; do
			[[ -f "$pid_file" ]] || continue
			pid="$(<"$pid_file")"
			# SIGKILL, as kwokctl does: the cluster's state is thrown away anyway.
			[[ "$pid" =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null || true
		done
	fi
	rm -rf "$cluster_dir"
}

# Polls <command...> once a second until it succeeds or $timeout runs out.
wait_for() { # <what> <command...>
	local what="$1" deadline=$((SECONDS + timeout))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || { log "timed out after ${timeout}s waiting for $what"; return 1; }
		sleep 1
	done
}

k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

dump_logs() { # <kwokctl>
	local c
	for c in etcd kube-apiserver kube-controller-manager kube-scheduler kwok-controller; do
		log "---- last lines of $c's log ----"
		"$1" logs "$c" --name "$name" 2>&1 | tail -n 30 >&2 || true
	done
}

node_manifest() {
	local n
	for n in $(node_names); do
		cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $n
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
status:
  allocatable:
    cpu: "32"
    memory: 256Gi
    pods: "110"
  capacity:
    cpu: "32"
    memory: 256Gi
    pods: "110"
---
EOF
	done
}

up() {
	local bin kwokctl start=$SECONDS
	bin="$(bin_dir)"
	kwokctl="$bin/kwokctl"
	local b
	for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kwokctl; do
		[[ -x "$bin/$b" ]] || die "no $b in $bin"
	done
	command -v kubectl >/dev/null || die "kubectl is not installed"

	if [[ -d "$cluster_dir" ]]; then
		log "deleting the leftover cluster $name"
		delete_cluster "$kwokctl"
	fi
	mkdir -p "$KWOK_WORKDIR"
	local config="$KWOK_WORKDIR/$name.kwokctl.yaml"
	cat >"$config" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  quietPull: true
  etcdBinary: $bin/etcd
  kubeApiserverBinary: $bin/kube-apiserver
  kubeControllerManagerBinary: $bin/kube-controller-manager
  kubeSchedulerBinary: $bin/kube-scheduler
  kwokControllerBinary: $bin/kwok
  enableCRDs:
  - PortForward
  - ClusterPortForward
  # The real node's pods reach the API server through the kubernetes
  # service's cluster IP (node.sh routes it there), so its certificate names it.
  kubeApiserverCertSANs:
  - $service_ip
componentsPatches:
# KWOK simulates only the nodes annotated as fake, never the real node.
- name: kwok-controller
  extraArgs:
  - key: manage-all-nodes
    value: "false"
    override: true
  - key: manage-nodes-with-annotation-selector
    value: kwok.x-k8s.io/node=fake
# The API server authenticates to the real kubelet (port-forward, logs) with
# kwokctl's admin certificate; the kubelet checks it against the cluster CA
# and asks the API server whether that user may (webhook authorization).
- name: kube-apiserver
  extraArgs:
  - key: kubelet-client-certificate
    value: $cluster_dir/pki/admin.crt
  - key: kubelet-client-key
    value: $cluster_dir/pki/admin.key
  # The real node's host name is not in this machine's DNS, its address is;
  # KWOK's nodes have only a host name (localhost).
  - key: kubelet-preferred-address-types
    value: InternalIP,Hostname
EOF

	log "creating cluster $name in $cluster_dir"
	if ! "$kwokctl" --config "$config" create cluster --name "$name" --kubeconfig "" --timeout "${timeout}s" --wait 0s >&2; then
		log "kwokctl create cluster failed"
		dump_logs "$kwokctl"
		delete_cluster "$kwokctl"
		exit 1
	fi
	log "control plane started after $((SECONDS - start))s"

	if ! ready; then
		dump_logs "$kwokctl"
		delete_cluster "$kwokctl"
		exit 1
	fi
	log "cluster $name is up after $((SECONDS - start))s: $(k get nodes -o name | tr '\n' ' ')"
	echo "$kubeconfig"
}

# Everything the suite needs before it starts: API server ready, the KWOK CRDs
# served, the nodes Ready, the default service account there (pods are
# rejected without it), and the controller-manager and scheduler holding their
# leases.
ready() {
	[[ -f "$kubeconfig" ]] || { log "no kubeconfig at $kubeconfig"; return 1; }
	wait_for "the API server" k get --raw /readyz || return 1
	wait_for "the PortForward CRDs" k wait --for condition=established --timeout 1s \
		crd/portforwards.kwok.x-k8s.io crd/clusterportforwards.kwok.x-k8s.io || return 1
	if ((nodes > 0)); then
		node_manifest | k apply -f - >&2 || { log "creating the nodes failed"; return 1; }
		wait_for "the nodes to be Ready" k wait --for condition=Ready --timeout 1s $(node_names | sed 's|^|node/|') || return 1
	fi
	wait_for "the default service account" k get serviceaccount default --namespace default || return 1
	wait_for "the controller-manager lease" k get lease kube-controller-manager --namespace kube-system || return 1
	wait_for "the scheduler lease" k get lease kube-scheduler --namespace kube-system || return 1
}

case "${1:-}" in
up)
	up
	;;
down)
	if [[ -d "$cluster_dir" ]]; then
		delete_cluster
		log "cluster $name deleted"
	else
		log "no cluster $name"
	fi
	;;
kubeconfig)
	[[ -f "$kubeconfig" ]] || die "no cluster $name (no $kubeconfig)"
	echo "$kubeconfig"
	;;
nodes)
	node_names
	;;
*)
	echo "usage: $0 up|down|kubeconfig|nodes   (see the top of this file for the environment)" >&2
	exit 2
	;;
esac
