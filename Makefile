# The two commands of the README's Quick start are `make run` and `make test`; both build the
# virtual environment from the lock file first, so they work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG15_BIN := /usr/lib/postgresql/15/bin

.PHONY: venv run test lint unit integration integration-pg15 tools chart-tools chart-test cluster cluster-down k8s-test k8s-test-kubeconfig bench lock db-stop clean

$(BIN)/.installed: pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(BIN)/.installed

## run: migrate the embedded (or $$DATABASE_URL) database, then serve on $$PORT (default 8000).
run: venv
	./scripts/run-local.sh

## test: lint, type-check and run every suite (integration tests on PostgreSQL 18 and 15); a failed
## suite does not stop the others: scripts/test-all.sh prints a summary and exits 1 if any failed.
test: venv
	BIN=$(BIN) MAKE="$(MAKE)" ./scripts/test-all.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit

integration: venv
	$(BIN)/pytest tests/integration

integration-pg15: venv
	@if [ -x $(PG15_BIN)/postgres ] && [ -z "$$DATABASE_URL" ]; then \
	  TEST_PG_BIN_DIR=$(PG15_BIN) $(BIN)/pytest tests/integration -q -p no:cacheprovider; \
	else echo "integration-pg15: skipped (no $(PG15_BIN) or DATABASE_URL set)"; fi

tools:
	./scripts/install-tools.sh

## chart-tools: helm (.tools/bin) and checkov/kubernetes-validate/hadolint/yamllint (.tools/venv).
chart-tools:
	./scripts/install-chart-tools.sh

chart-test: venv chart-tools
	$(BIN)/pytest tests/chart -q

## cluster: a single-node Kubernetes v1.34 here (k8s/cluster/cluster.sh: root, Linux; binaries built once
## from the Go module proxy into /var/cache/langgraph-pg/k8s) with the test images imported.
cluster:
	./k8s/cluster/cluster.sh up
	./k8s/cluster/cluster.sh images

## cluster-down: stop every process `make cluster` started and remove its network and state.
cluster-down:
	./k8s/cluster/cluster.sh down
	./k8s/cluster/cluster.sh dockerd-down

## k8s-test: real-cluster tests (docs/kubernetes.md): on the cluster of $$KUBECONFIG when set, on kind
## with K8S_CLUSTER=kind, else on `make cluster`'s (started here when it is not running).
k8s-test: venv
	@if [ -z "$$KUBECONFIG" ] && [ "$${K8S_CLUSTER:-local}" = local ]; then ./k8s/cluster/cluster.sh up >/dev/null; fi
	$(BIN)/pytest k8s-tests -m k8s -p no:cacheprovider

## k8s-test-kubeconfig: test_install.py on `make cluster`'s running cluster through a copy of its kubeconfig
## in KUBECONFIG, the way the tests meet any existing cluster (nothing started, built or imported).
k8s-test-kubeconfig: venv
	BIN=$(BIN) ./scripts/k8s-test-kubeconfig.sh

bench: venv
	$(BIN)/python bench/migrate_race.py

## lock: re-resolve the pinned dependency sets from pyproject.toml.
lock:
	rm -rf /tmp/lgpg-lock && $(PYTHON) -m venv /tmp/lgpg-lock
	/tmp/lgpg-lock/bin/pip install -q . && /tmp/lgpg-lock/bin/pip freeze --exclude-editable | grep -v '^langgraph-pg' > requirements.lock
	/tmp/lgpg-lock/bin/pip install -q '.[dev]' && /tmp/lgpg-lock/bin/pip freeze --exclude-editable | grep -v '^langgraph-pg' > requirements-dev.lock

## db-stop: stop the embedded PostgreSQL that local runs leave running in .local/.
db-stop: venv
	$(BIN)/python -c "from service.embedded import EmbeddedPostgres; EmbeddedPostgres().stop()"

clean:
	rm -rf $(VENV) .local .tools .pytest_cache .mypy_cache .ruff_cache
