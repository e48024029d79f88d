"""chart-testing's own checks (`ct lint`): Chart.yaml against ct's schema (yamale), the chart's YAML
against ct's yamllint rules, and `helm lint` with every values file in the chart's ci/ directory.

ct is built from its Go module and its configuration read from the same module source
(scripts/install-chart-testing.sh); without a Go toolchain the tests skip with that reason.
`ct install` runs on a real cluster in k8s-tests/test_chart_testing.py, with its own values
directory (k8s-tests/ct/): the chart's ci/ files are render fixtures for tests/chart (databases that
do not exist, an image on a registry), which ct would install one by one.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.chart.conftest import CHART_DIR, REPO_ROOT, TOOLS_DIR, helm_binary, render_chart


@functools.cache
def chart_testing() -> dict[str, str]:
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        pytest.skip("no Go toolchain to build chart-testing from its module")
    result = subprocess.run([str(REPO_ROOT / "scripts" / "install-chart-testing.sh")], capture_output=True,
                            text=True, check=False, timeout=1800)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def ct_lint(charts_root: Path, chart: str) -> subprocess.CompletedProcess[str]:
    ct = chart_testing()
    path = os.pathsep.join([ct["CT_PATH"], str(Path(helm_binary()).parent), str(TOOLS_DIR / "bin"),
                            os.environ.get("PATH", "")])
    return subprocess.run(
        [ct["CT"], "lint", "--charts", chart, "--chart-yaml-schema", f"{ct['CT_ETC']}/chart_schema.yaml",
         "--lint-conf", f"{ct['CT_ETC']}/lintconf.yaml", "--validate-maintainers=false",
         "--check-version-increment=false"],
        cwd=charts_root, env={**os.environ, "PATH": path}, capture_output=True, text=True, check=False,
        timeout=600)


class TestCtLint:
    def test_should_pass_on_the_chart(self) -> None:
        result = ct_lint(REPO_ROOT, "charts/langgraph-pg")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "All charts linted successfully" in result.stdout
        linted = {line.split('"')[1] for line in result.stdout.splitlines()
                  if line.startswith("Linting chart with values")}
        assert {Path(p).name for p in linted} == {p.name for p in (CHART_DIR / "ci").glob("*-values.yaml")}

    def test_should_fail_on_a_chart_yaml_ct_rejects(self, tmp_path: Path) -> None:
        shutil.copytree(CHART_DIR, tmp_path / "langgraph-pg")
        chart_yaml = tmp_path / "langgraph-pg" / "Chart.yaml"
        # A maintainer without a name: valid YAML for helm, refused by ct's schema (yamale).
        chart_yaml.write_text(chart_yaml.read_text() + "maintainers:\n  - email: team@example.com\n")
        result = ct_lint(tmp_path, "langgraph-pg")
        assert result.returncode != 0, result.stdout
        assert "maintainers.0.name: Required field missing" in result.stdout + result.stderr


class TestCtInstallValues:
    """k8s-tests/ct: the configuration and values `ct install` uses on a real cluster."""

    CT_DIR = REPO_ROOT / "k8s-tests" / "ct"

    def test_should_give_ct_one_values_file_pointing_at_the_manifest_postgresql(self) -> None:
        assert [p.name for p in (self.CT_DIR / "ci").iterdir()] == ["local-values.yaml"]
        values = yaml.safe_load((self.CT_DIR / "ci" / "local-values.yaml").read_text())
        manifest = [d for d in yaml.safe_load_all((REPO_ROOT / "k8s-tests" / "manifests" / "postgres.yaml").read_text())
                    if d]
        service = next(d for d in manifest if d["kind"] == "Service")
        init_sql = next(d for d in manifest if d["kind"] == "ConfigMap")["data"]["10-roles.sql"]
        urls = {key: urlsplit(values["database"][key]) for key in ("url", "migrateUrl")}
        for url in urls.values():
            assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}"
            assert f"CREATE ROLE {url.username} LOGIN PASSWORD '{url.password}';" in init_sql
        assert (urls["url"].username, urls["migrateUrl"].username) == ("langgraph_app", "langgraph_owner")
        # A database of its own, not the one the other k8s-tests' releases migrate.
        assert urls["url"].path == urls["migrateUrl"].path != "/langgraph"

    def test_should_render_with_the_chart(self) -> None:
        docs = render_chart(values_files=[self.CT_DIR / "ci" / "local-values.yaml"])
        assert {d["kind"] for d in docs} >= {"Deployment", "Service", "Job"}

    def test_should_install_into_one_namespace_selected_by_the_release_label(self) -> None:
        config = yaml.safe_load((self.CT_DIR / "ct.yaml").read_text())
        assert config["chart-dirs"] == ["charts"]
        conftest = (REPO_ROOT / "k8s-tests" / "conftest.py").read_text()
        assert f'"{config["namespace"]}"' in conftest.split("RELEASE_NAMESPACES =")[1].split(")")[0]
        server = next(d for d in render_chart() if d["kind"] == "Deployment")
        assert config["release-label"] in server["metadata"]["labels"]
        assert "--timeout" in config["helm-extra-args"].split()
