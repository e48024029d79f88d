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

import pytest

from tests.chart.conftest import CHART_DIR, REPO_ROOT, TOOLS_DIR, helm_binary


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
