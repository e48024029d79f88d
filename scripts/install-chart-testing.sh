#!/usr/bin/env bash
# Installs chart-testing (`ct`) for tests/k8s_static/test_chart_testing.py, without a prebuilt
# binary: ct is built from its Go module (github.com/helm/chart-testing/v3) into a per-version cache
# outside the work tree, its own config files (etc/chart_schema.yaml, etc/lintconf.yaml) are read
# from the same module source, and yamale + yamllint (which `ct lint` runs) go into .tools/ct-venv.
# `go install ...@version` is not used: it asks the module proxy for the version list, which the
# proxy here refuses (403); building inside the downloaded module needs only that version.
# Prints three lines on stdout: CT=<binary> CT_ETC=<dir with the config files> CT_PATH=<venv bin>.
set -euo pipefail

CT_VERSION="${CT_VERSION:-v3.14.0}"
YAMALE_VERSION="6.1.0"
repo="$(cd "$(dirname "$0")/.." && pwd)"
tools_dir="${TOOLS_DIR:-$repo/.tools}"
cache="${CT_CACHE:-/var/cache/langgraph-pg/tools}/ct-$CT_VERSION"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$GO" ] || { echo "install-chart-testing: no Go toolchain" >&2; exit 1; }

src="$(cd "$repo/k8s/build" && "$GO" mod download -json "github.com/helm/chart-testing/v3@$CT_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
if [ ! -x "$cache/ct" ]; then
    echo "install-chart-testing: building ct $CT_VERSION" >&2
    mkdir -p "$cache"
    (cd "$src" && CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" nice -n 15 "$GO" build -ldflags "-s -w" \
        -o "$cache/ct.tmp" ./ct)
    mv -f "$cache/ct.tmp" "$cache/ct"
fi
venv="$tools_dir/ct-venv"
if [ ! -x "$venv/bin/yamale" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "yamale==$YAMALE_VERSION" "yamllint==1.38.0"
fi
echo "CT=$cache/ct"
echo "CT_ETC=$src/etc"
echo "CT_PATH=$venv/bin"
