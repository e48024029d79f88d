#!/usr/bin/env bash
# Installs the system tools the test suite runs for real, when they are missing:
# Debian's PostgreSQL 15 server (CI runs the integration tests on it too), Prometheus, the
# Pushgateway, PgBouncer and Chromium (tests/e2e/test_browser.py drives it headless with
# playwright-core from npm, never `playwright install`). Needs root and apt-get; elsewhere it
# says what is missing and the tests that need it skip with that reason.
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-pushgateway >/dev/null || need+=(prometheus-pushgateway)
[ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
[ -x /usr/bin/chromium ] || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-tools: cannot install ${need[*]} (needs root and apt-get); tests that need them will skip" >&2
  exit 0
fi
echo "install-tools: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Another apt or dpkg process (unattended upgrades, a parallel build) may hold the package lock:
# wait for it (up to 10 minutes) instead of failing at once. DPkg::Lock::Timeout covers dpkg's
# lock; `apt-get update`'s lists lock is not covered on every apt version, so that is retried.
apt=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
err="$(mktemp)"
trap 'rm -f "$err"' EXIT
deadline=$((SECONDS + 600))
until "${apt[@]}" update -qq >/dev/null 2>"$err"; do
  if grep -q "Could not get lock" "$err" && [ "$SECONDS" -lt "$deadline" ]; then
    echo "install-tools: waiting for another apt process to release its lock" >&2
    sleep 5
    continue
  fi
  cat "$err" >&2
  exit 1
done
"${apt[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's packages start their services; the tests start their own on free ports.
for svc in prometheus prometheus-pushgateway postgresql pgbouncer; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
  (command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1) || true
done
