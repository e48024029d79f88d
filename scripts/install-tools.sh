#!/usr/bin/env bash
# Installs the system tools the test suite runs for real, when they are missing:
# Debian's PostgreSQL 15 server (CI runs the integration tests on it too), Prometheus, the
# Pushgateway and PgBouncer. Needs root and apt-get; elsewhere it says what is missing and the tests that
# need it skip with that reason.
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-pushgateway >/dev/null || need+=(prometheus-pushgateway)
[ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-tools: cannot install ${need[*]} (needs root and apt-get); tests that need them will skip" >&2
  exit 0
fi
echo "install-tools: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's packages start their services; the tests start their own on free ports.
for svc in prometheus prometheus-pushgateway postgresql pgbouncer; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
  (command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1) || true
done
