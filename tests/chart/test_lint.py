"""Linters on the chart and the image: helm lint, yamllint, checkov, hadolint, promtool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.chart.conftest import (
    CHART_DIR,
    CI_VALUES,
    REPO_ROOT,
    TOOLS_VENV_BIN,
    helm_binary,
    render_chart_text,
    run_helm,
    tool,
)

VALUES_SETS = [None, *CI_VALUES]
VALUES_IDS = ["default", *(p.stem for p in CI_VALUES)]

# checkov checks the chart does not pass, each with the reason it is skipped for the whole chart.
# Checks that concern one resource are skipped on that resource instead, with checkov.io/skipN
# annotations that carry the reason (the helm test Pod has no probes to configure).
CHECKOV_SKIPS = {
    # "Image Pull Policy should be Always": the chart runs versioned (or digest-pinned) images,
    # for which IfNotPresent is the usual policy; Always would make every pod start, and so every
    # rollout and reschedule, depend on the registry. image.pullPolicy can be set to Always.
    "CKV_K8S_15": "image.pullPolicy is configurable; IfNotPresent suits immutable tags",
    # "Image should use digest": the chart cannot know a digest in its defaults; image.digest pins
    # one and ci/full-values.yaml shows it (checkov passes this check on that render).
    "CKV_K8S_43": "image.digest is supported and documented; defaults cannot know a digest",
    # "Prefer using secrets as files over secrets as environment variables": the service contract
    # reads DATABASE_URL, MIGRATE_DATABASE_URL and API_KEYS from the environment.
    "CKV_K8S_35": "the service reads its database URLs and API keys from environment variables",
}
# Only for checkov's own `helm template` of the chart, which always renders into the "default"
# namespace: every object is in .Release.Namespace (the renders below use "langgraph" and pass).
CHECKOV_HELM_ONLY_SKIPS = {"CKV_K8S_21": "checkov renders the chart into the default namespace"}


def _values_args(values_file: Path | None) -> list[str]:
    return ["--values", str(values_file)] if values_file else []


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)


class TestHelmLint:
    @pytest.mark.parametrize("values_file", VALUES_SETS, ids=VALUES_IDS)
    def test_should_pass_helm_lint_strict(self, values_file: Path | None) -> None:
        result = run_helm("lint", "--strict", str(CHART_DIR), *_values_args(values_file), check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "0 chart(s) failed" in output
        # helm lint only logs a template's `fail` (lint mode), so look for it in the output.
        assert "funcMap fail" not in output, output

    def test_should_fail_lint_on_values_the_schema_rejects(self) -> None:
        result = run_helm("lint", "--strict", str(CHART_DIR), "--set", "replicaCount=many", check=False)
        assert result.returncode != 0
        assert "replicaCount" in result.stdout + result.stderr


class TestYamllint:
    def _yamllint(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([tool("yamllint"), "--strict", "-f", "parsable", "-c", str(REPO_ROOT / ".yamllint"), *args])

    def test_should_pass_yamllint_on_values_ci_and_rule_files(self) -> None:
        files = [CHART_DIR / "values.yaml", CHART_DIR / "Chart.yaml", *CI_VALUES,
                 *sorted((CHART_DIR / "files").glob("*.yaml"))]
        result = self._yamllint(*map(str, files))
        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.parametrize("values_file", VALUES_SETS, ids=VALUES_IDS)
    def test_should_render_yaml_that_passes_yamllint(self, values_file: Path | None, tmp_path: Path) -> None:
        rendered = tmp_path / "rendered.yaml"
        rendered.write_text(render_chart_text(values_files=[values_file] if values_file else []))
        # Long lines are expected in rendered output (dashboard JSON, shell one-liners).
        config = f"{{extends: {REPO_ROOT / '.yamllint'}, rules: {{line-length: disable}}}}"
        result = _run([tool("yamllint"), "--strict", "-f", "parsable", "-d", config, str(rendered)])
        assert result.returncode == 0, result.stdout + result.stderr

    def test_should_report_a_yaml_problem(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad-values.yaml"
        bad.write_text("replicaCount: 2   \nreplicaCount: 3\n")
        result = self._yamllint(str(bad))
        assert result.returncode != 0
        assert "key-duplicates" in result.stdout
        assert "trailing-spaces" in result.stdout


class TestHadolint:
    # DL3013 ("pin versions in pip install"): the runtime stage installs the project's own wheel
    # with --no-index from /wheels, built in the build stage from requirements.lock, so every
    # version is already pinned. A `# hadolint ignore=DL3013` line in the Dockerfile would make
    # this ignore unnecessary.
    IGNORED: ClassVar[list[str]] = ["DL3013"]

    def test_should_pass_hadolint_on_the_dockerfile(self) -> None:
        args = [tool("hadolint"), "--no-color"]
        for rule in self.IGNORED:
            args += ["--ignore", rule]
        result = _run([*args, str(REPO_ROOT / "Dockerfile")])
        assert result.returncode == 0, result.stdout + result.stderr

    def test_should_report_a_dockerfile_problem(self, tmp_path: Path) -> None:
        bad = tmp_path / "Dockerfile"
        bad.write_text("FROM python:latest\nRUN cd /tmp && apt-get install curl\n")
        result = _run([tool("hadolint"), "--no-color", str(bad)])
        assert result.returncode != 0
        assert "DL3007" in result.stdout  # the latest tag


def _checkov(args: list[str], skips: dict[str, str]) -> dict[str, Any]:
    env = {**os.environ, "PATH": f"{Path(helm_binary()).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [tool("checkov"), "--quiet", "--compact", "--output", "json", "--skip-download", *args]
    if skips:
        command += ["--skip-check", ",".join(skips)]
    result = _run(command, env=env)
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [check for r in reports for check in r.get("results", {}).get("failed_checks", [])]
    summary = {key: sum(r["summary"][key] for r in reports) for key in ("passed", "failed", "resource_count")}
    return {"failed": failed, "summary": summary, "returncode": result.returncode}


def _describe(failed: list[dict[str, Any]]) -> str:
    return "\n".join(f"{c['check_id']} {c['check_name']}: {c['resource']}" for c in failed)


class TestCheckov:
    def test_should_pass_checkov_on_the_chart(self) -> None:
        result = _checkov(["--framework", "helm", "--directory", str(CHART_DIR)],
                          {**CHECKOV_SKIPS, **CHECKOV_HELM_ONLY_SKIPS})
        assert result["failed"] == [], _describe(result["failed"])
        assert result["summary"]["resource_count"] >= 10
        assert result["returncode"] == 0

    def test_should_pass_checkov_on_every_ci_render(self, tmp_path: Path) -> None:
        for values_file in CI_VALUES:
            (tmp_path / f"{values_file.stem}.yaml").write_text(render_chart_text(values_files=[values_file]))
        result = _checkov(["--framework", "kubernetes", "--directory", str(tmp_path)], CHECKOV_SKIPS)
        assert result["failed"] == [], _describe(result["failed"])
        assert result["summary"]["passed"] > 200

    def test_should_fail_checkov_on_a_weakened_security_context(self, tmp_path: Path) -> None:
        (tmp_path / "weak.yaml").write_text(render_chart_text(values={
            "securityContext": {"privileged": True, "allowPrivilegeEscalation": True, "readOnlyRootFilesystem": False},
        }))
        result = _checkov(["--framework", "kubernetes", "--directory", str(tmp_path)], CHECKOV_SKIPS)
        failed_ids = {check["check_id"] for check in result["failed"]}
        assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_22"} <= failed_ids


def _promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool is not installed (scripts/install-tools.sh installs Debian's prometheus package)")
    return path


class TestPromtool:
    def test_should_pass_promtool_check_on_the_alert_rules(self) -> None:
        result = _run([_promtool(), "check", "rules", str(CHART_DIR / "files" / "alerts.rules.yaml")])
        assert result.returncode == 0, result.stdout + result.stderr

    def test_should_fire_each_alert_only_on_its_condition(self) -> None:
        # tests/chart/alerts.test.yaml feeds series to every alert, with a healthy twin that must not fire.
        result = _run([_promtool(), "test", "rules", "alerts.test.yaml"], cwd=Path(__file__).parent)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_should_have_valid_promql_in_every_dashboard_panel(self, tmp_path: Path) -> None:
        substitutions = {"$__rate_interval": "5m", "$namespace": ".*", "$job": ".*", "$release": ".*"}
        rules = []
        for path in sorted((CHART_DIR / "dashboards").glob("*.json")):
            for i, expr in enumerate(_dashboard_exprs(json.loads(path.read_text()))):
                for variable, value in substitutions.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, f"{path.name}: unknown variable in {expr}"
                rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:{i}", "expr": expr})
        assert len(rules) >= 20
        rules_file = tmp_path / "dashboard-queries.yaml"
        rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        result = _run([_promtool(), "check", "rules", str(rules_file)])
        assert result.returncode == 0, result.stdout + result.stderr


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
        for inner in panel.get("panels", []):
            exprs.extend(t["expr"] for t in inner.get("targets", []))
    return exprs


class TestToolInstallers:
    @pytest.mark.parametrize("script", ["install-helm.sh", "install-chart-tools.sh"])
    def test_should_install_once_and_then_do_nothing(self, script: str) -> None:
        env = {**os.environ, "TOOLS_DIR": str(TOOLS_VENV_BIN.parent.parent)}
        first = _run([str(REPO_ROOT / "scripts" / script)], env=env)
        assert first.returncode == 0, first.stderr
        again = _run([str(REPO_ROOT / "scripts" / script)], env=env)
        assert again.returncode == 0, again.stderr
        assert again.stderr == ""  # nothing fetched or installed the second time
        assert again.stdout == first.stdout
        if script == "install-helm.sh":
            helm = again.stdout.strip()
            assert _run([helm, "version", "--template", "{{.Version}}"]).stdout.startswith("v")
        else:
            for name in ("checkov", "kubernetes-validate", "hadolint", "yamllint"):
                assert os.access(TOOLS_VENV_BIN / name, os.X_OK), name
