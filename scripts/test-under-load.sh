#!/usr/bin/env bash
# The README's test command three times in a row on a fresh clone of this tree, with both cores kept
# busy by stress-ng (Debian's stress-ng; same priority as the suite) the whole time; stops at the
# first failed run. Logs (one per run) and a summary go to $LOG_DIR (default /var/tmp/test-under-load).
#   scripts/test-under-load.sh [RUNS]
set -u
runs=${1:-3}
log_dir=${LOG_DIR:-/var/tmp/test-under-load}
clone=${CLONE_DIR:-/tmp/test-under-load}
command -v stress-ng >/dev/null || { echo "test-under-load: stress-ng is not installed (apt-get install stress-ng)" >&2; exit 2; }
mkdir -p "$log_dir"
rm -rf "$clone" && git clone -q "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" "$clone" && cd "$clone" || exit 2
echo "commit $(git rev-parse --short HEAD)"
stress-ng --cpu "$(nproc)" > "$log_dir/stress-ng.log" 2>&1 &
stress=$!
trap 'kill $stress 2>/dev/null' EXIT
for i in $(seq 1 "$runs"); do
  start=$(date +%s); echo "run $i start $(date -u +%H:%M:%S)"
  make test > "$log_dir/make-test-$i.log" 2>&1
  rc=$?
  echo "run $i exit $rc after $(( $(date +%s) - start )) s (end $(date -u +%H:%M:%S))"
  [ $rc = 0 ] || exit 1
done
