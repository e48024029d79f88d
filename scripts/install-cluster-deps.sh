#!/usr/bin/env bash
# Installs the Debian packages `make cluster` needs (root only), when any is missing:
# containerd, runc and the CNI plugins for the node; conntrack, socat and iptables for kube-proxy
# and port-forward; debootstrap, docker.io, gcc and libc6-dev (static libc) for the images.
# Go must be there already (/usr/local/go/bin/go or go on PATH): the project's machines have it.
set -euo pipefail

packages=(containerd runc containernetworking-plugins conntrack socat iptables iproute2 openssl
          debootstrap docker.io gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-cluster-deps: needs root to install: ${missing[*]}" >&2
    exit 1
fi
echo "install-cluster-deps: installing ${missing[*]}" >&2
apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
    echo "install-cluster-deps: no Go toolchain (go on PATH or /usr/local/go/bin/go): k8s/build/build.sh needs one" >&2
    exit 1
fi
