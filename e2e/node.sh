#!/usr/bin/env bash
# One real Kubernetes node on this host, joined to the e2e cluster of
# cluster.sh: containerd (with runc and the CNI bridge plugin from Debian)
# and a kubelet, both built by build-binaries.sh. Its pods run in real
# containers, so the gadget-node DaemonSet pod runs from the image of
# `cargo xtask image` in its real security context.
#
#   e2e/node.sh up <image archive>...   start the node, import the archives
#                                       into containerd, wait until the node
#                                       is Ready; stdout: the node's name
#   e2e/node.sh down                    stop it and remove everything it left
#                                       on this host (succeeds if not up)
#   e2e/node.sh sandbox-image           stdout: the pod sandbox (pause) image's
#                                       reference, which one of the archives
#                                       must hold: containerd never pulls it
#
# Needs root, and the cluster of cluster.sh up (its kubeconfig and CA).
#
# Environment (all optional):
#   GADGET_E2E_CLUSTER        the cluster's name                 (gadget-e2e)
#   GADGET_E2E_WORKDIR        cluster.sh's work directory (the node's is
#                             a sibling: .../e2e/node)
#   GADGET_E2E_NODE_WORKDIR   the node's work directory: containerd's and
#                             the kubelet's state, logs, certificates
#   GADGET_E2E_BIN            the binaries (default: build-binaries.sh)
#   GADGET_E2E_TIMEOUT        seconds to wait for each readiness step (120)
#
# What it changes on this host, and `down` undoes, in order:
#   - `/` becomes a shared mount (mount --make-rshared /), as on any systemd
#     host: the kubelet's hostPath and token mounts must propagate into the
#     containers. Left shared: it changes nothing else.
#   - the kubelet sets vm.overcommit_memory=1, kernel.panic=10 and
#     kernel.panic_on_oops=1 (its kernel defaults); `down` restores the values
#     saved before it started.
#   - a bridge cni0 for the pods (10.88.0.0/24, the bridge plugin), with
#     route_localnet on it, and an iptables nat chain GADGET-E2E-SERVICES
#     (jumped to from PREROUTING and OUTPUT) that sends the kubernetes
#     service's cluster IP to the API server on 127.0.0.1, as kube-proxy would
#     (kube-proxy is not run: this one service is all the node's pods use).
#   - cgroups under kubepods in every hierarchy, processes of the pods,
#     containerd's shims, network namespaces and mounts: all under the work
#     directory, except the few paths the programs hard-code, listed in
#     remove_hardcoded_paths.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

name="${GADGET_E2E_CLUSTER:-gadget-e2e}"
timeout="${GADGET_E2E_TIMEOUT:-120}"
kwok_workdir="${GADGET_E2E_WORKDIR:-${XDG_STATE_HOME:-$HOME/.local/state}/kubectl-gadget/e2e/kwok}"
cluster_dir="$kwok_workdir/clusters/$name"
kubeconfig="$cluster_dir/kubeconfig.yaml"
work="${GADGET_E2E_NODE_WORKDIR:-$(dirname "$kwok_workdir")/node}"
node="$name-real"
pod_subnet=10.88.0.0/24
bridge=cni0
nat_chain=GADGET-E2E-SERVICES
cni_network=gadget-e2e
# The pause image's name as kubeadm of Kubernetes v1.36 names it.
sandbox_image=registry.k8s.io/pause:3.10.2
sock="$work/containerd/containerd.sock"
# The sysctls the kubelet sets (container_manager_linux.go, setupKernelTunables).
kubelet_sysctls=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)

log() { echo "node: $*" >&2; }
die() { log "$*"; exit 1; }

bin_dir() {
	if [[ -n "${GADGET_E2E_BIN:-}" ]]; then
		echo "$GADGET_E2E_BIN"
	else
		"$here/build-binaries.sh" | tail -n 1
	fi
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

# The IPv4 address of the interface of the default route: the node's
# InternalIP, where the API server reaches the kubelet. Not loopback: the
# kubelet refuses it.
node_ip() {
	ip -4 route get 1.1.1.1 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit } }'
}

write_containerd_config() { # <bin dir>
	cat >"$work/containerd.toml" <<EOF
version = 3
root = "$work/containerd/root"
state = "$work/containerd/state"

[grpc]
  address = "$sock"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  # Never pulled: the archive built from Kubernetes' pause.c is imported.
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$sandbox_image"

[plugins."io.containerd.cri.v1.runtime"]
  # Root on this VM lacks CAP_SYS_RESOURCE, so a container's oom_score_adj
  # cannot go below containerd's own (the pod sandbox asks for -998).
  restrict_oom_score_adj = true
  # Network namespaces under the work directory, not /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        # cgroupfs: this host has no systemd; the kubelet's driver matches.
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$work/runc"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$cni_bin"]
    conf_dir = "$work/cni"

[plugins."io.containerd.nri.v1.nri"]
  disable = true
EOF
}

write_cni_config() {
	mkdir -p "$work/cni"
	cat >"$work/cni/10-$cni_network.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$cni_network",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$work/cni-ipam",
        "ranges": [[{"subnet": "$pod_subnet"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
}

# The kubelet's client certificate, signed by the cluster's CA: user
# system:node:<node> in group system:nodes, which the API server's Node
# authorizer and NodeRestriction limit to this node's own objects.
write_kubelet_credentials() {
	local pki="$work/pki"
	mkdir -p "$pki"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$pki/kubelet.key" -subj "/O=system:nodes/CN=system:node:$node" \
		-out "$pki/kubelet.csr" 2>/dev/null
	openssl x509 -req -in "$pki/kubelet.csr" -CA "$cluster_dir/pki/ca.crt" \
		-CAkey "$cluster_dir/pki/ca.key" -CAcreateserial -CAserial "$pki/ca.srl" \
		-days 2 -out "$pki/kubelet.crt" 2>/dev/null
	cat >"$work/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: $api_server
    certificate-authority: $cluster_dir/pki/ca.crt
users:
- name: system:node:$node
  user:
    client-certificate: $pki/kubelet.crt
    client-key: $pki/kubelet.key
contexts:
- name: $name
  context: {cluster: $name, user: "system:node:$node"}
current-context: $name
EOF
}

write_kubelet_config() { # <node ip>
	cat >"$work/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host's cgroups are hybrid (v1 controllers, cgroup2 at
# /sys/fs/cgroup/unified), which kubelet 1.35+ refuses unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
# Only the API server may call the kubelet (port-forward, logs, exec): a
# client certificate of the cluster's CA, each request authorized by the
# API server (SubjectAccessReview). No anonymous access, no read-only port.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $cluster_dir/pki/ca.crt}
authorization:
  mode: Webhook
address: $1
readOnlyPort: 0
healthzPort: 0
rotateCertificates: false
serverTLSBootstrap: false
resolvConf: /etc/resolv.conf
podLogsDir: $work/pod-logs
# The images are imported, never pulled: nothing may collect them, and the
# disk's usage is not this test's concern.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
registerNode: true
syncFrequency: 5s
nodeStatusUpdateFrequency: 5s
EOF
}

# The kubernetes service, as kube-proxy would route it: pods connect to its
# cluster IP (the in-cluster configuration), the API server listens on
# loopback. route_localnet lets the pod bridge's traffic be sent to 127.0.0.1.
route_service() {
	local port="${api_server##*:}" service_ip
	# The cluster IP the API server gave the service (cluster.sh put it in
	# the serving certificate).
	service_ip="$(k get service kubernetes -n default -o 'jsonpath={.spec.clusterIP}')"
	[[ "$service_ip" =~ ^[0-9]+(\.[0-9]+){3}$ ]] || die "the kubernetes service has no cluster IP ('$service_ip')"
	ip link add "$bridge" type bridge 2>/dev/null || true
	ip link set "$bridge" up
	sysctl -qw "net.ipv4.conf.$bridge.route_localnet=1"
	iptables -t nat -N "$nat_chain"
	iptables -t nat -A "$nat_chain" -d "$service_ip/32" -p tcp --dport 443 \
		-j DNAT --to-destination "127.0.0.1:$port"
	iptables -t nat -A PREROUTING -j "$nat_chain"
	iptables -t nat -A OUTPUT -j "$nat_chain"
}

start_daemon() { # <name> <command...>: background, logging and recording its pid
	local what="$1"
	shift
	"$@" >"$work/logs/$what.log" 2>&1 &
	echo $! >"$work/pids/$what.pid"
}

dump_logs() {
	local f
	for f in "$work"/logs/*.log; do
		[[ -f "$f" ]] || continue
		log "---- last lines of $(basename "$f") ----"
		grep -v 'level=info\|^I' "$f" | tail -n 20 >&2 || true
	done
}

up() { # <image archive>...
	local bin start=$SECONDS ip archive
	[[ $EUID -eq 0 ]] || die "needs root (containerd and the kubelet)"
	[[ -f "$kubeconfig" ]] || die "no cluster $name (no $kubeconfig): run cluster.sh up first"
	bin="$(bin_dir)"
	for b in containerd containerd-shim-runc-v2 ctr kubelet; do
		[[ -x "$bin/$b" ]] || die "no $b in $bin"
	done
	command -v runc >/dev/null || die "runc is not installed (Debian: apt-get install runc)"
	cni_bin=""
	for d in /usr/lib/cni /opt/cni/bin; do
		[[ -x "$d/bridge" && -x "$d/host-local" && -x "$d/loopback" ]] && { cni_bin="$d"; break; }
	done
	[[ -n "$cni_bin" ]] || die "no CNI plugins (Debian: apt-get install containernetworking-plugins)"
	for tool in iptables openssl ip; do
		command -v "$tool" >/dev/null || die "$tool is not installed"
	done
	ip="$(node_ip)"
	[[ -n "$ip" ]] || die "cannot find this host's address (no default route)"
	api_server="$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')"

	if [[ -d "$work" ]]; then
		log "removing the leftover node in $work"
		down
	fi
	mkdir -p "$work"/{logs,pids,containerd,runc}
	local s
	for s in "${kubelet_sysctls[@]}"; do
		echo "$s=$(sysctl -n "$s")"
	done >"$work/sysctls.saved"

	mount --make-rshared /
	write_containerd_config
	write_cni_config
	route_service
	# The shim is found on PATH, next to containerd.
	start_daemon containerd env PATH="$bin:$PATH" "$bin/containerd" --config "$work/containerd.toml"
	wait_for "containerd" "$bin/ctr" --address "$sock" version || { dump_logs; down; exit 1; }
	for archive in "$@"; do
		"$bin/ctr" --address "$sock" -n k8s.io images import --no-unpack "$archive" >&2 ||
			{ dump_logs; down; die "cannot import $archive"; }
	done

	write_kubelet_credentials
	write_kubelet_config "$ip"
	start_daemon kubelet "$bin/kubelet" --config="$work/kubelet.yaml" \
		--kubeconfig="$work/kubelet.kubeconfig" --hostname-override="$node" \
		--node-ip="$ip" --root-dir="$work/kubelet" --cert-dir="$work/pki/serving" \
		--node-labels=type=real
	wait_for "the node $node to be Ready" k wait --for condition=Ready --timeout 1s "node/$node" ||
		{ dump_logs; down; exit 1; }
	log "node $node ($ip) is Ready after $((SECONDS - start))s"
	echo "$node"
}

stop_daemon() { # <name> <seconds to wait before SIGKILL>
	local pid_file="$work/pids/$1.pid" pid i
	[[ -f "$pid_file" ]] || return 0
	pid="$(<"$pid_file")"
	if [[ "$pid" =~ ^[0-9]+$ ]] && kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < $2 * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pid_file"
}

# Every process in the pods' cgroups, and the shims of this containerd
# (their command line names its socket).
kill_pods() {
	local procs pid
	for procs in $(find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods -name cgroup.procs 2>/dev/null); do
		while read -r pid; do
			kill -KILL "$pid" 2>/dev/null || true
		done <"$procs"
	done
	pkill -KILL -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null || true
}

# Removes a cgroup tree bottom-up; a directory still holding a process is
# reported, not forced.
remove_cgroups() {
	local root dir
	for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
		[[ -d "$root" ]] || continue
		while read -r dir; do
			rmdir "$dir" 2>/dev/null || log "cannot remove cgroup $dir (a process is left in it?)"
		done < <(find "$root" -depth -type d)
	done
}

unmount_under() { # <directory>
	local target
	while read -r target; do
		umount -l "$target" 2>/dev/null || true
	done < <(awk -v dir="$1/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

# What containerd, the kubelet and the CNI plugins write outside the work
# directory whatever their configuration says.
remove_hardcoded_paths() {
	local link
	# The runc shim's sockets (containerd's fixed /run/containerd/s).
	rm -rf /run/containerd/s
	rmdir /run/containerd 2>/dev/null || true
	# The kubelet's device-plugin and pod-resources sockets.
	rm -rf /var/lib/kubelet/device-plugins /var/lib/kubelet/pod-resources
	rmdir /var/lib/kubelet 2>/dev/null || true
	# The kubelet's /var/log/containers links into podLogsDir.
	for link in /var/log/containers/*.log; do
		[[ -L "$link" && "$(readlink "$link")" == "$work/"* ]] && rm -f "$link"
	done
	# libcni's cache of each attachment's result.
	rm -f /var/lib/cni/results/"$cni_network"-* /var/lib/cni/results/cni-loopback-*
	# The directories they made, if nothing else uses them.
	rmdir /var/lib/cni/results /var/lib/cni /var/log/containers /var/log/pods 2>/dev/null || true
}

# The kubelet's canary chains, by which it notices a firewall reload; it
# makes them in the mangle, nat and filter tables of IPv4 and IPv6.
remove_kubelet_chains() {
	local tool table
	for tool in iptables ip6tables; do
		for table in mangle nat filter; do
			"$tool" -t "$table" -X KUBE-KUBELET-CANARY 2>/dev/null || true
		done
	done
}

down() {
	[[ -d "$work" ]] || { log "no node in $work"; return 0; }
	stop_daemon kubelet 10
	kill_pods
	stop_daemon containerd 10
	kill_pods
	unmount_under "$work"
	remove_cgroups
	if iptables -t nat -S "$nat_chain" >/dev/null 2>&1; then
		iptables -t nat -D PREROUTING -j "$nat_chain" 2>/dev/null || true
		iptables -t nat -D OUTPUT -j "$nat_chain" 2>/dev/null || true
		iptables -t nat -F "$nat_chain"
		iptables -t nat -X "$nat_chain"
	fi
	ip link del "$bridge" 2>/dev/null || true
	remove_kubelet_chains
	remove_hardcoded_paths
	if [[ -f "$work/sysctls.saved" ]]; then
		sysctl -q -p "$work/sysctls.saved" >/dev/null
	fi
	rm -rf "$work"
	log "node $node removed"
}

case "${1:-}" in
up)
	shift
	up "$@"
	;;
down)
	down
	;;
sandbox-image)
	echo "$sandbox_image"
	;;
*)
	echo "usage: $0 up <image archive>... | down | sandbox-image   (see the top of this file)" >&2
	exit 2
	;;
esac
