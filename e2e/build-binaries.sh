#!/usr/bin/env bash
# Builds the binaries of the local e2e cluster from the Go module proxy:
#   kube-apiserver, kube-controller-manager, kube-scheduler,
#   kubelet                                    (e2e/k8s, k8s.io/kubernetes)
#   etcd                                       (e2e/etcd, go.etcd.io/etcd/server/v3)
#   kwok, kwokctl                              (go install sigs.k8s.io/kwok/cmd/...@tag)
#   containerd, containerd-shim-runc-v2, ctr   (e2e/containerd, github.com/containerd/containerd/v2)
#   pause                                      (build/pause/linux/pause.c of k8s.io/kubernetes,
#                                               compiled statically with cc)
# kubelet, containerd and pause run the real node (node.sh).
#
# They land in a cache directory keyed by the pinned versions:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-gadget/e2e/<k8s>-<etcd>-<kwok>-<containerd>/bin
# (GADGET_E2E_CACHE overrides the part before <k8s>-<etcd>-<kwok>).
# A binary is built to a temporary name and renamed into place when done; the
# stamp file .complete is written after the last one, so an interrupted build
# is picked up where it stopped and a finished one costs nothing.
#
# stdout: exactly one line, the bin directory. Progress and timings: stderr.
# With --dir: only print the bin directory, build nothing (it may not exist).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The versions are read from the wrapper modules so that go.mod is the one
# place to bump them; KWOK has no wrapper module and is pinned here.
mod_version() { # <go.mod> <module path>
	awk -v m="$2" '($1 == m) || ($1 == "require" && $2 == m) { print $NF; exit }' "$1"
}
K8S_VERSION="$(mod_version "$here/k8s/go.mod" k8s.io/kubernetes)"
ETCD_VERSION="$(mod_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)"
CONTAINERD_VERSION="$(mod_version "$here/containerd/go.mod" github.com/containerd/containerd/v2)"
KWOK_VERSION=v0.8.0
if [[ ! "$K8S_VERSION" =~ ^v1\.[0-9]+\.[0-9]+$ || ! "$ETCD_VERSION" =~ ^v3\.[0-9]+\.[0-9]+$ ||
	! "$CONTAINERD_VERSION" =~ ^v2\.[0-9]+\.[0-9]+$ ]]; then
	echo "build-binaries: cannot read the pinned versions from e2e/k8s/go.mod, e2e/etcd/go.mod and e2e/containerd/go.mod" >&2
	exit 1
fi

cache_root="${GADGET_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-gadget/e2e}"
dir="$cache_root/$K8S_VERSION-$ETCD_VERSION-$KWOK_VERSION-containerd-$CONTAINERD_VERSION"
bin="$dir/bin"
stamp="$dir/.complete"

if [[ "${1:-}" == --dir || -f "$stamp" ]]; then
	echo "$bin"
	exit 0
fi

command -v go >/dev/null || { echo "build-binaries: go is not installed" >&2; exit 1; }
command -v cc >/dev/null || { echo "build-binaries: cc is not installed (it compiles pause)" >&2; exit 1; }
mkdir -p "$bin"

# One build at a time per cache directory (parallel test runs may all call this).
exec 9>"$dir/.lock"
flock 9
if [[ -f "$stamp" ]]; then
	echo "$bin"
	exit 0
fi

export CGO_ENABLED=0
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"

log() { echo "build-binaries: $*" >&2; }

total_start=$SECONDS
timed() { # <name> <command...>: builds bin/<name> unless present, prints the time taken
	local name="$1" start
	shift
	if [[ -x "$bin/$name" ]]; then
		log "$name: already built"
		return
	fi
	log "$name: building"
	start=$SECONDS
	rm -f "$bin/$name.tmp"
	"$@"
	mv -f "$bin/$name.tmp" "$bin/$name"
	log "$name: built in $((SECONDS - start))s"
}

# Version ldflags as Kubernetes' hack/lib/version.sh sets them, so that
# /version and --version report the release.
minor="${K8S_VERSION#v1.}"
minor="${minor%%.*}"
build_date="$(cd "$here/k8s" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null || true)"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION"
	k8s_ldflags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	k8s_ldflags+=" -X $pkg.gitTreeState=clean"
	k8s_ldflags+=" -X $pkg.gitCommit="
	[[ -n "$build_date" ]] && k8s_ldflags+=" -X $pkg.buildDate=$build_date"
done

k8s_build() { # <command>
	(cd "$here/k8s" && go build -ldflags "$k8s_ldflags" -o "$bin/$1.tmp" "k8s.io/kubernetes/cmd/$1")
}
etcd_build() {
	(cd "$here/etcd" && go build -ldflags "-s -w" -o "$bin/etcd.tmp" .)
}
containerd_build() { # <command>
	(cd "$here/containerd" && go build -ldflags "-s -w" -o "$bin/$1.tmp" "github.com/containerd/containerd/v2/cmd/$1")
}
# The pod sandbox's process, from the same Kubernetes release: a static C
# program (no libc in its image), as Kubernetes' build/pause builds it.
pause_build() {
	local source
	source="$(cd "$here/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
	cc -Os -static -Wall -Werror -DVERSION="$K8S_VERSION" -o "$bin/pause.tmp" "$source"
}
kwok_build() { # <command>: go install into a scratch GOBIN, then into place
	local gobin="$dir/gobin.$1"
	rm -rf "$gobin"
	GOBIN="$gobin" GOFLAGS="-trimpath -buildvcs=false" \
		go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/$1@$KWOK_VERSION"
	mv -f "$gobin/$1" "$bin/$1.tmp"
	rm -rf "$gobin"
}

log "Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, KWOK $KWOK_VERSION, containerd $CONTAINERD_VERSION -> $bin"
# kube-apiserver first: it is the longest and compiles most of what the others share.
timed kube-apiserver k8s_build kube-apiserver
timed kube-controller-manager k8s_build kube-controller-manager
timed kube-scheduler k8s_build kube-scheduler
timed etcd etcd_build
timed kwok kwok_build kwok
timed kwokctl kwok_build kwokctl
timed kubelet k8s_build kubelet
timed containerd containerd_build containerd
timed containerd-shim-runc-v2 containerd_build containerd-shim-runc-v2
timed ctr containerd_build ctr
timed pause pause_build

"$bin/kube-apiserver" --version >&2
touch "$stamp"
log "all built in $((SECONDS - total_start))s"
echo "$bin"
