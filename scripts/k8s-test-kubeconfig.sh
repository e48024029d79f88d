#!/usr/bin/env bash
# `make k8s-test-kubeconfig`: the "existing cluster" path of k8s-tests/ for real, on `make cluster`'s
# running cluster. The tests get a copy of its kubeconfig in KUBECONFIG, as a user would point them
# at any cluster, so they treat it as one they did not make: nothing is started, no image is built or
# imported, the image is taken as already pullable (K8S_TEST_IMAGE, pull policy IfNotPresent) and
# PostgreSQL's image is the one given in K8S_POSTGRES_IMAGE. It runs one cheap file, test_install.py
# (PostgreSQL, one `helm install --wait`, `helm test`), and fails if any test was skipped or the
# session did not see an existing cluster. Run it after `make cluster` (or `make k8s-test`, which
# leaves the images in the node); kind cannot run on these machines, so the hosted workflow covers
# kind and this covers KUBECONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${BIN:-.venv/bin}"
local_config="${K8S_LOCAL_STATE:-/var/lib/langgraph-pg/cluster}/admin.kubeconfig"
if ! ./k8s/cluster/cluster.sh status >/dev/null 2>&1; then
    echo "k8s-test-kubeconfig: make cluster's cluster is not running (this step starts nothing): run make cluster" >&2
    exit 1
fi
dir="$(mktemp -d "${TMPDIR:-/tmp}/k8s-test-kubeconfig.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
cp "$local_config" "$dir/kubeconfig"
log="$dir/pytest.log"
set +e
KUBECONFIG="$dir/kubeconfig" K8S_REQUIRE=1 K8S_TEST_IMAGE="${K8S_TEST_IMAGE:-langgraph-pg:k8s-test}" \
    K8S_POSTGRES_IMAGE="${K8S_POSTGRES_IMAGE:-langgraph-pg-postgres:15}" \
    "$bin/pytest" k8s-tests/test_install.py -m k8s -p no:cacheprovider -rs 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || exit "$rc"
grep -q "^k8s cluster: an existing cluster, kubeconfig $dir/kubeconfig " "$log" || {
    echo "k8s-test-kubeconfig: the session did not treat $dir/kubeconfig as an existing cluster" >&2; exit 1; }
if tail -1 "$log" | grep -q skipped; then
    echo "k8s-test-kubeconfig: a test was skipped: $(tail -1 "$log")" >&2
    exit 1
fi
