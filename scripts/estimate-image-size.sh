#!/usr/bin/env bash
# Estimates the size of the image the Dockerfile builds, without Docker: it runs the Dockerfile's
# build stage on this machine (same commands, same Python minor version, the host's platform) and
# adds the size of the base image.
#
#   1. wheels for requirements.lock, published wheels only (`pip wheel --only-binary=:all:`),
#   2. the project's own wheel from a copy of the build context (pyproject.toml, README.md,
#      service/, migrate/),
#   3. a venv with exactly those, installed with --no-index --no-deps, then `pip check`,
#   4. pip and setuptools removed, bytecode compiled with unchecked hashes,
#   5. `python -c "import service.app, migrate.runner"` and `python -m migrate --help` in it.
#
# The venv is what the runtime stage copies to /opt/venv; the rest of the image is the base.
# The base's size is not measurable without a registry: BASE_IMAGE_MB (default 125) is the
# uncompressed size Docker reports for python:3.11-slim-bookworm on linux/amd64. Measure the real
# image with:  docker image inspect --format '{{.Size}}' langgraph-pg:dev
#
# Output: human-readable lines, then one `key=value` line per number for scripts and tests.
# Env: PYTHON (a Python 3.11, default python3), BASE_IMAGE_MB, WORK_DIR (kept when given).
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
base_mb="${BASE_IMAGE_MB:-125}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "estimate-image-size: needs Python 3.11 (the image's), got $("$python" -V 2>&1)" >&2
  exit 2
fi

if [ -n "${WORK_DIR:-}" ]; then
  work="$WORK_DIR"
  rm -rf "$work" && mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$work/context"
cp -R "$repo_root/requirements.lock" "$repo_root/pyproject.toml" "$repo_root/README.md" \
      "$repo_root/service" "$repo_root/migrate" "$work/context/"
find "$work/context" -name __pycache__ -prune -exec rm -rf {} +

cd "$work/context"
"$python" -m pip wheel -q --only-binary=:all: --wheel-dir "$work/wheels" -r requirements.lock
"$python" -m pip wheel -q --no-deps --wheel-dir "$work/wheels/project" .
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --no-index --no-deps --no-compile --find-links "$work/wheels" \
  -r requirements.lock "$work"/wheels/project/*.whl
"$work/venv/bin/pip" check >/dev/null
"$work/venv/bin/pip" uninstall -q --yes pip setuptools
"$python" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$work/venv/lib" >/dev/null
(cd / && "$work/venv/bin/python" -c 'import service.app, migrate.runner')
(cd / && "$work/venv/bin/python" -m migrate --help >/dev/null)

wheel_count="$(find "$work/wheels" -name '*.whl' | wc -l)"
wheel_bytes="$(find "$work/wheels" -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s}')"
venv_bytes="$(du -sb "$work/venv" | cut -f1)"
mb() { awk -v b="$1" 'BEGIN {printf "%d", (b / 1000000) + 0.5}'; }
venv_mb="$(mb "$venv_bytes")"
estimate_mb=$((base_mb + venv_mb))

echo "wheels: $wheel_count files, $(mb "$wheel_bytes") MB compressed"
echo "/opt/venv (installed, bytecode compiled): $venv_mb MB"
echo "base image (assumed, BASE_IMAGE_MB): $base_mb MB"
echo "estimated image size: $estimate_mb MB uncompressed (the number docker image inspect reports)"
echo "measure: docker image inspect --format '{{.Size}}' langgraph-pg:dev"
echo "wheel_count=$wheel_count"
echo "wheel_bytes=$wheel_bytes"
echo "venv_bytes=$venv_bytes"
echo "base_mb=$base_mb"
echo "estimate_mb=$estimate_mb"
