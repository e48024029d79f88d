"""The kind tests (k8s-tests/) as far as they can be checked without a cluster.

* Their collection and skip: the root `pytest` never collects them, `pytest k8s-tests -m k8s`
  collects them all and, without Docker and kind, skips every one with the reason.
* The chart values they install with render (the real `helm template`) to what they rely on.
* What they run inside the image needs nothing beyond the runtime lock.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.chart.conftest import REPO_ROOT, render_chart

K8S_TESTS = REPO_ROOT / "k8s-tests"


@functools.cache
def k8s_conftest() -> ModuleType:
    """k8s-tests/conftest.py as a module (its directory name is not importable)."""
    spec = importlib.util.spec_from_file_location("k8s_tests_conftest", K8S_TESTS / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def pytest_k8s(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "k8s-tests", "-m", "k8s", "-p", "no:cacheprovider", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=300,
                          env={**os.environ, **(env or {})})


class TestTarget:
    """Which cluster the tests use: $KUBECONFIG, else kind when asked, else `make cluster`'s."""

    def test_should_use_the_kubeconfig_when_set(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        config = tmp_path / "config"
        monkeypatch.setenv("KUBECONFIG", str(config))
        monkeypatch.setenv("K8S_CLUSTER", "kind")  # KUBECONFIG wins
        conftest = k8s_conftest()
        assert conftest.target() == "kubeconfig"
        assert conftest.kubeconfig_path() == config
        assert conftest.missing_requirements() == f"KUBECONFIG={config} does not exist"

    def test_should_use_the_local_cluster_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("KUBECONFIG", raising=False)
        monkeypatch.delenv("K8S_CLUSTER", raising=False)
        conftest = k8s_conftest()
        assert conftest.target() == "local"
        assert conftest.kubeconfig_path() == conftest.LOCAL_KUBECONFIG
        monkeypatch.setenv("K8S_CLUSTER", "kind")
        assert conftest.target() == "kind"

    def test_should_say_in_the_header_whether_the_cluster_is_make_clusters(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        # scripts/k8s-test-kubeconfig.sh gives the tests a copy of make cluster's kubeconfig and
        # checks this line: a copy is an existing cluster (nothing built or imported), not make cluster's.
        conftest = k8s_conftest()
        monkeypatch.delenv("K8S_CLUSTER", raising=False)
        monkeypatch.delenv("K8S_TEST_IMAGE", raising=False)
        monkeypatch.delenv("K8S_IMAGE_PULL_POLICY", raising=False)
        monkeypatch.delenv("KUBECONFIG", raising=False)
        assert conftest.pytest_report_header(None).startswith("k8s cluster: make cluster's, kubeconfig ")
        copy = tmp_path / "kubeconfig"
        monkeypatch.setenv("KUBECONFIG", str(copy))
        assert conftest.pytest_report_header(None) == (
            f"k8s cluster: an existing cluster, kubeconfig {copy} (image langgraph-pg:k8s-test must be pullable "
            "there, IfNotPresent)")
        script = (REPO_ROOT / "scripts" / "k8s-test-kubeconfig.sh").read_text()
        assert 'grep -q "^k8s cluster: an existing cluster, kubeconfig $dir/kubeconfig "' in script

    def test_should_refuse_an_unknown_cluster_kind(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("KUBECONFIG", raising=False)
        monkeypatch.setenv("K8S_CLUSTER", "minikube")
        with pytest.raises(pytest.UsageError, match="K8S_CLUSTER must be local or kind"):
            k8s_conftest().target()

    def test_should_name_the_make_target_when_the_local_cluster_is_down(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("KUBECONFIG", raising=False)
        monkeypatch.delenv("K8S_CLUSTER", raising=False)
        conftest = k8s_conftest()
        monkeypatch.setattr(conftest, "LOCAL_KUBECONFIG", tmp_path / "admin.kubeconfig")
        reason = conftest.missing_requirements()
        assert reason is not None and "run `make cluster`" in reason


class TestCollection:
    def test_should_not_be_collected_by_the_root_test_command(self) -> None:
        config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
        assert config["testpaths"] == ["tests"]
        assert any(m.startswith("k8s:") for m in config["markers"])

    def test_should_collect_every_scenario_marked_k8s(self) -> None:
        result = pytest_k8s("--collect-only", "-q")
        assert result.returncode == 0, result.stdout + result.stderr
        ids = [line for line in result.stdout.splitlines() if "::" in line]
        files = {i.split("::")[0] for i in ids}
        assert files == {f"k8s-tests/test_{n}.py" for n in
                         ("install", "conversations", "upgrade", "shared_database", "pod_deletion",
                          "failed_migration", "plain_job", "objects", "isolation", "chart_testing", "skaffold")}
        assert len(ids) >= 9
        unmarked = pytest_k8s("--collect-only", "-q", "-m", "not k8s")
        assert "no tests collected" in unmarked.stdout or " 0 " in unmarked.stdout or "deselected" in unmarked.stdout

    def test_should_run_the_tests_that_deploy_their_own_database_first(self) -> None:
        # test_skaffold deploys the manifest's PostgreSQL into the session's namespace: before the
        # session's PostgreSQL exists (which replaces it), whatever the file order.
        result = pytest_k8s("--collect-only", "-q")
        ids = [line for line in result.stdout.splitlines() if "::" in line]
        assert ids[0].startswith("k8s-tests/test_skaffold.py::"), ids
        assert not any(i.startswith("k8s-tests/test_skaffold.py::") for i in ids[1:]), ids

    def test_should_skip_with_the_reason_without_a_cluster(self, tmp_path: Path) -> None:
        # A kubeconfig that names no cluster at all: every test skips, saying which file.
        missing = tmp_path / "no-such-kubeconfig"
        result = pytest_k8s("-q", "-rs", env={"KUBECONFIG": str(missing)})
        assert result.returncode == 0, result.stdout + result.stderr
        summary = result.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"\d+ skipped in [\d.]+s", summary), summary
        reasons = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
        assert reasons and all(f"k8s tests need a cluster: KUBECONFIG={missing} does not exist" in r
                               for r in reasons)

    def test_should_fail_instead_of_skipping_when_required(self, tmp_path: Path) -> None:
        missing = tmp_path / "no-such-kubeconfig"
        result = pytest_k8s("-q", env={"KUBECONFIG": str(missing), "K8S_REQUIRE": "1"})
        assert result.returncode != 0, result.stdout
        assert f"K8S_REQUIRE=1 and the k8s tests cannot run: KUBECONFIG={missing} does not exist" in result.stderr

    def test_should_name_each_missing_piece_for_kind(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        fake_docker = tmp_path / "docker"
        fake_docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///x.sock.' >&2\nexit 1\n")
        fake_docker.chmod(0o755)
        monkeypatch.setenv("PATH", str(tmp_path))  # only the fake docker (it runs with /bin/sh)
        monkeypatch.delenv("KUBECONFIG", raising=False)
        monkeypatch.setenv("K8S_CLUSTER", "kind")
        reason = k8s_conftest().missing_requirements()
        assert reason is not None
        assert "`kind` is not on PATH" in reason and "`kubectl` is not on PATH" in reason
        assert "`docker info` failed (no Docker engine): Cannot connect to the Docker daemon" in reason


class TestInstallValues:
    def release_docs(self, extra: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        conftest = k8s_conftest()
        rel = conftest.Release("lgpg", "lgpg-a", "langgraph_shared", cluster=None)
        args = rel.values_args(("langgraph-pg", "k8s-test"), extra)
        files = [Path(a) for a in args if a != "--values"]
        docs = render_chart(name=rel.name, namespace=rel.namespace, values_files=files)
        return {(d["kind"], d["metadata"]["name"]): d for d in docs}

    def test_should_run_the_loaded_image_with_the_slow_graph_mounted(self) -> None:
        docs = self.release_docs()
        deployment = docs[("Deployment", "lgpg-langgraph-pg")]
        pod = deployment["spec"]["template"]["spec"]
        server = pod["containers"][0]
        assert server["image"] == "langgraph-pg:k8s-test"
        assert server["imagePullPolicy"] == "Never"  # kind load, never a registry
        assert {"name": "k8s-graphs", "mountPath": "/k8s-graphs", "readOnly": True} in server["volumeMounts"]
        assert {"name": "k8s-graphs", "configMap": {"name": "k8s-graphs"}} in pod["volumes"]
        env = {e["name"]: e.get("value") for e in server["env"]}
        assert env["PYTHONPATH"] == "/k8s-graphs" and env["RUN_LEASE_SECONDS"] == "10"
        config = docs[("ConfigMap", "lgpg-langgraph-pg")]["data"]
        assert json.loads(config["GRAPHS"])["slow"] == "k8s_graphs:slow"
        assert deployment["spec"]["replicas"] == 2

    def test_should_point_both_urls_at_the_chosen_database(self) -> None:
        docs = self.release_docs()
        secrets = [d for (kind, _), d in docs.items() if kind == "Secret"]
        values = [base64.b64decode(v).decode() for s in secrets for v in (s.get("data") or {}).values()]
        urls = [v for v in values if v.startswith("postgresql://")]
        assert len(urls) == 2, [s["metadata"]["name"] for s in secrets]
        for url in urls:
            assert "@postgresql.langgraph-db:5432/langgraph_shared?" in url

    def test_should_match_the_label_the_tests_select_server_pods_by(self) -> None:
        docs = self.release_docs()
        labels = docs[("Deployment", "lgpg-langgraph-pg")]["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "lgpg"
        assert labels["app.kubernetes.io/component"] == "server"
        job = next(d for (kind, _), d in docs.items() if kind == "Job")
        assert job["metadata"]["name"] == "lgpg-langgraph-pg-migrate"  # migration_events() looks for it


class TestInImage:
    def test_loader_and_graph_should_import_only_what_the_runtime_lock_has(self) -> None:
        locked = {re.split(r"[=<>\[]", line)[0].lower().replace("_", "-")
                  for line in (REPO_ROOT / "requirements.lock").read_text().splitlines() if line.strip()}
        stdlib = set(sys.stdlib_module_names) | {"__future__"}
        names = {"httpx": "httpx", "langchain_core": "langchain-core", "langgraph": "langgraph",
                 "typing_extensions": "typing-extensions"}
        for path in (K8S_TESTS / "loader.py", K8S_TESTS / "graphs" / "k8s_graphs.py"):
            imports = set(re.findall(r"^(?:from|import) (\w+)", path.read_text(), re.MULTILINE))
            for module in imports - stdlib:
                assert names.get(module) in locked, f"{path.name} imports {module}, not in requirements.lock"

    def test_postgres_manifest_should_be_valid_yaml_with_the_objects_the_tests_use(self) -> None:
        docs = [d for d in yaml.safe_load_all((K8S_TESTS / "manifests" / "postgres.yaml").read_text()) if d]
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert kinds == {("Namespace", "langgraph-db"), ("Secret", "postgresql"),
                         ("ConfigMap", "postgresql-init"), ("Deployment", "postgresql"), ("Service", "postgresql")}
        assert k8s_conftest().DB_NAMESPACE == "langgraph-db"


class TestPostgresLogParsing:
    LOG = "\n".join([
        "2025-11-22 00:10:01.100 UTC [61] user=postgres db=langgraph app=psql LOG:  statement: "
        "CREATE EXTENSION pg_stat_statements;",
        "2025-11-22 00:11:02.200 UTC [80] user=langgraph_owner db=langgraph app=langgraph-migrate:lgpg-migrate-x7 "
        "LOG:  execute <unnamed>: CREATE TABLE IF NOT EXISTS checkpoint_migrations (",
        "\t    v INTEGER PRIMARY KEY",
        "2025-11-22 00:11:02.300 UTC [80] user=langgraph_owner db=langgraph app=langgraph-migrate:lgpg-migrate-x7 "
        "LOG:  statement: CREATE INDEX CONCURRENTLY IF NOT EXISTS checkpoints_thread_id_idx ON checkpoints(thread_id)",
        "2025-11-22 00:11:03.000 UTC [95] user=langgraph_app db=langgraph_shared app= LOG:  statement: DROP TABLE x",
        "2025-11-22 00:11:04.000 UTC [96] user=langgraph_app db=langgraph app=langgraph-service:pod LOG:  "
        "duration: 0.1 ms",
    ])

    def test_should_find_ddl_by_database_without_the_superusers_setup(self) -> None:
        conftest = k8s_conftest()
        found = conftest.parse_ddl_log(self.LOG, "langgraph")
        assert [(d.user, d.app, d.sql.split(" (")[0]) for d in found] == [
            ("langgraph_owner", "langgraph-migrate:lgpg-migrate-x7",
             "CREATE TABLE IF NOT EXISTS checkpoint_migrations"),
            ("langgraph_owner", "langgraph-migrate:lgpg-migrate-x7",
             "CREATE INDEX CONCURRENTLY IF NOT EXISTS checkpoints_thread_id_idx ON checkpoints(thread_id)"),
        ]
        shared = conftest.parse_ddl_log(self.LOG, "langgraph_shared")
        assert [(d.user, d.app, d.sql) for d in shared] == [("langgraph_app", "", "DROP TABLE x")]

    def test_should_keep_every_line_of_a_multi_line_statement(self) -> None:
        # Two statements that differ only after their first line are two statements, not one
        # statement run twice.
        log = "\n".join([
            "2025-11-22 00:11:02.200 UTC [80] user=langgraph_owner db=langgraph app=langgraph-migrate:x "
            "LOG:  statement: CREATE TABLE IF NOT EXISTS a (",
            "\t    v INTEGER PRIMARY KEY",
            "\t)",
            "2025-11-22 00:11:02.300 UTC [80] user=langgraph_owner db=langgraph app=langgraph-migrate:x "
            "LOG:  statement: CREATE TABLE IF NOT EXISTS a (",
            "\t    w TEXT",
            "\t)",
        ])
        found = k8s_conftest().parse_ddl_log(log, "langgraph")
        assert [d.sql for d in found] == ["CREATE TABLE IF NOT EXISTS a (\n\t    v INTEGER PRIMARY KEY\n\t)",
                                          "CREATE TABLE IF NOT EXISTS a (\n\t    w TEXT\n\t)"]


class TestPsqlOutputParsing:
    def test_should_keep_a_multi_line_value_in_its_row(self) -> None:
        # `psql --csv -t` of a query whose text spans lines (pg_stat_statements.query).
        out = 'langgraph_owner,3,"CREATE TABLE x (\n    v int\n)"\npostgres,1,CREATE EXTENSION pg_stat_statements\n'
        assert k8s_conftest().parse_psql_csv(out) == [
            ["langgraph_owner", "3", "CREATE TABLE x (\n    v int\n)"],
            ["postgres", "1", "CREATE EXTENSION pg_stat_statements"],
        ]

    def test_should_match_the_manifest_log_line_prefix(self) -> None:
        docs = [d for d in yaml.safe_load_all((K8S_TESTS / "manifests" / "postgres.yaml").read_text()) if d]
        args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        prefix = next(a.split("=", 1)[1] for a in args if a.startswith("log_line_prefix="))
        assert prefix == "%m [%p] user=%u db=%d app=%a "  # what DDL_LINE parses
