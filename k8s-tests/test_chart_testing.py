"""chart-testing's `ct install` on the cluster: install, wait for the Deployments, `helm test`, uninstall.

ct is built from its Go module (scripts/install-chart-testing.sh, the same build `ct lint` uses in
tests/k8s_static); without a Go toolchain the test is skipped with that reason. Its configuration
is k8s-tests/ct/ct.yaml. The chart's own ci/*-values.yaml are render fixtures (databases that do not
exist), so ct installs a copy of charts/langgraph-pg whose ci/ is k8s-tests/ct/ci: one install,
on a database of its own in the session's PostgreSQL. The image under test goes in through
ct's --helm-extra-set-args. ct runs the helm and kubectl of the session (helm 4).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import (
    APP_ROLE,
    CHART_DIR,
    HERE,
    OWNER_ROLE,
    REPO_ROOT,
    Cluster,
    Release,
    create_database,
    ddl_statements,
    pull_policy,
    run,
)

pytestmark = pytest.mark.k8s

CT_DIR = HERE / "ct"
CT_CONFIG = CT_DIR / "ct.yaml"
# The database ct's values name (the test creates it).
CT_DATABASE = urlsplit(yaml.safe_load((CT_DIR / "ci" / "local-values.yaml").read_text())["database"]["migrateUrl"]
                       ).path.lstrip("/")


@functools.cache
def chart_testing() -> str:
    """The ct binary scripts/install-chart-testing.sh built (cached by version)."""
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        pytest.skip("no Go toolchain to build chart-testing from its module")
    out = run([str(REPO_ROOT / "scripts" / "install-chart-testing.sh")], timeout=1800).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)["CT"]


def ct_install(cluster: Cluster, image: tuple[str, str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """`ct install --all` in `workdir`, whose charts/ holds the chart with ct's ci/ directory."""
    config = yaml.safe_load(CT_CONFIG.read_text())
    chart = workdir / config["chart-dirs"][0] / CHART_DIR.name
    shutil.copytree(CHART_DIR, chart, ignore=shutil.ignore_patterns("ci"))
    shutil.copytree(CT_DIR / "ci", chart / "ci")
    bin_dir = workdir / "bin"  # the helm and kubectl ct calls by name: the session's own
    bin_dir.mkdir()
    (bin_dir / "helm").symlink_to(cluster.helm_path)
    (bin_dir / "kubectl").symlink_to(shutil.which(cluster.kubectl_path) or cluster.kubectl_path)
    set_args = " ".join(f"--set={key}={value}" for key, value in (
        ("image.repository", image[0]), ("image.tag", image[1]), ("image.pullPolicy", pull_policy(cluster))))
    env = {**cluster.env, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([chart_testing(), "install", "--config", str(CT_CONFIG), "--all",
                           "--helm-extra-set-args", set_args],
                          cwd=workdir, env=env, capture_output=True, text=True, check=False, timeout=1800)


def test_ct_install_should_install_test_and_uninstall_the_chart(postgres: Cluster, image: tuple[str, str],
                                                               tmp_path: Path) -> None:
    namespace = yaml.safe_load(CT_CONFIG.read_text())["namespace"]
    create_database(postgres, CT_DATABASE)
    postgres.kubectl("create", "namespace", namespace)
    try:
        result = ct_install(postgres, image, tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:]
        assert "All charts installed successfully" in result.stdout, output[-6000:]
        # One install, with ct's values file (not the chart's render fixtures), then helm test.
        assert output.count("Installing chart with values file") == 1, output[-6000:]
        assert "ci/local-values.yaml" in output
        assert re.search(r"TEST SUITE:.*\n(?:.*\n)*?Phase:\s+Succeeded", output), output[-6000:]
        # The release used ct's database: the migration made its schema there as the owner role,
        # and the server pods (the app role) wrote the smoke test's thread into it, which the test
        # deletes again, so pg_stat_statements is what counts the insert.
        ddl = ddl_statements(postgres, CT_DATABASE)
        assert ddl and {d.user for d in ddl} == {OWNER_ROLE}, ddl
        assert all(d.app.startswith("langgraph-migrate:") for d in ddl), {d.app for d in ddl}
        inserts = postgres.psql(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            f"JOIN pg_roles r ON r.oid = s.userid WHERE d.datname = '{CT_DATABASE}' AND r.rolname = '{APP_ROLE}' "
            r"AND s.query ~* '^\s*insert into threads\M'")
        assert int(inserts[0][0]) >= 1, inserts
        # ct uninstalled the release: no release, no pod, nothing holding the owner's password.
        assert postgres.helm("list", "--namespace", namespace, "--short").stdout.split() == []
        # The Deployment went with the release; its pods are garbage-collected after it.
        deadline = time.monotonic() + 180
        while (pods := postgres.get("pods", "-n", namespace)["items"]) and time.monotonic() < deadline:
            time.sleep(2)
        assert [p["metadata"]["name"] for p in pods] == []
        assert Release("ct", namespace, CT_DATABASE, postgres).secrets_holding("owner-dev-password") == []
    finally:
        postgres.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
