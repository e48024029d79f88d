#!/usr/bin/env bash
# `make test`: run every suite, even after one fails, then print one summary and exit non-zero
# if any failed. Suites: the tool installs, lint (ruff, mypy --strict), each directory of tests/
# on the default PostgreSQL (the embedded 18, or DATABASE_URL), and the integration tests again
# on Debian's PostgreSQL 15. A new directory under tests/ is picked up without editing this.
# Env: BIN (the venv's bin directory, default .venv/bin), MAKE (default make).
set -uo pipefail
cd "$(dirname "$0")/.."

bin="${BIN:-.venv/bin}"
make_cmd="${MAKE:-make}"
pg15_bin=/usr/lib/postgresql/15/bin
log_dir="$(mktemp -d "${TMPDIR:-/tmp}/lgpg-test.XXXXXX")"
names=()
results=()
seconds=()

run() {  # run NAME CMD...: run one suite, keep its exit status and time; never stop the loop
  local name="$1" started=$SECONDS rc
  shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$log_dir/$name.log"
  rc=${PIPESTATUS[0]}
  names+=("$name")
  results+=("$rc")
  seconds+=($((SECONDS - started)))
  echo "=== $name: exit $rc after $((SECONDS - started)) s"
}

run tools "$make_cmd" --no-print-directory tools
run chart-tools "$make_cmd" --no-print-directory chart-tools
run ruff "$bin/ruff" check .
run mypy "$bin/mypy"
# The quick suites first; then any other directory that holds tests, in name order (a directory of
# data only, such as tests/spec, is no suite).
suites=(unit integration chart k8s_static observability e2e)
for dir in tests/*/; do
  suite="$(basename "$dir")"
  compgen -G "tests/$suite/test_*.py" >/dev/null || continue
  case " ${suites[*]} support __pycache__ " in *" $suite "*) ;; *) suites+=("$suite") ;; esac
done
for suite in "${suites[@]}"; do
  [ -d "tests/$suite" ] && run "$suite" "$bin/pytest" "tests/$suite" -q -p no:cacheprovider
done
if [ -x "$pg15_bin/postgres" ] && [ -z "${DATABASE_URL:-}" ]; then
  run integration-pg15 env TEST_PG_BIN_DIR="$pg15_bin" "$bin/pytest" tests/integration -q -p no:cacheprovider
else
  echo "=== integration-pg15: skipped (no $pg15_bin/postgres, or DATABASE_URL is set)"
fi

failed=0
echo
echo "=== summary (logs in $log_dir)"
for i in "${!names[@]}"; do
  if [ "${results[$i]}" = 0 ]; then status=ok; else status="FAILED (exit ${results[$i]})"; failed=$((failed + 1)); fi
  # pytest's last line says how many passed, failed and skipped.
  detail="$(grep -E '(passed|failed|error|skipped|no tests ran)' "$log_dir/${names[$i]}.log" 2>/dev/null | tail -1)"
  printf '  %-18s %-18s %5s s  %s\n' "${names[$i]}" "$status" "${seconds[$i]}" "$detail"
done
if [ "$failed" -gt 0 ]; then
  echo "=== $failed of ${#names[@]} suites FAILED"
  exit 1
fi
echo "=== all ${#names[@]} suites passed"
