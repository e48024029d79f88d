#!/usr/bin/env bash
# Builds skaffold from its Go module (github.com/GoogleContainerTools/skaffold/v2) into a per-version
# cache outside the work tree, for the optional `skaffold render` check in tests/k8s_static/
# test_skaffold.py. About 7 minutes of a 2-core machine the first time (niced); prints the path.
# Built inside the downloaded module (its replace directives apply; `go install ...@v` would refuse
# them, and the proxy here refuses the version list it asks for).
set -euo pipefail

SKAFFOLD_VERSION="${SKAFFOLD_VERSION:-v2.16.1}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${SKAFFOLD_CACHE:-/var/cache/langgraph-pg/tools}/skaffold-$SKAFFOLD_VERSION/skaffold"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$GO" ] || { echo "install-skaffold: no Go toolchain" >&2; exit 1; }
if [ ! -x "$out" ]; then
    src="$(cd "$repo/k8s/build" && "$GO" mod download -json "github.com/GoogleContainerTools/skaffold/v2@$SKAFFOLD_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    echo "install-skaffold: building skaffold $SKAFFOLD_VERSION (several minutes)" >&2
    mkdir -p "$(dirname "$out")"
    (cd "$src" && CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" nice -n 15 "$GO" build -ldflags "-s -w" \
        -o "$out.tmp" ./cmd/skaffold)
    mv -f "$out.tmp" "$out"
fi
echo "$out"
