"""The GitHub workflow (not run here): it parses, and runs the commands this repository defines."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from tests.chart.conftest import REPO_ROOT, tool

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yaml"


def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def runs(job: dict[str, Any]) -> list[str]:
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def test_should_pass_yamllint() -> None:
    result = subprocess.run([tool("yamllint"), "--strict", "-c", str(REPO_ROOT / ".yamllint"), str(WORKFLOW)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_should_run_the_test_command_and_the_kind_tests() -> None:
    jobs = workflow()["jobs"]
    assert set(jobs) == {"test", "k8s"}
    assert "make test" in runs(jobs["test"])
    k8s = jobs["k8s"]
    assert "make k8s-test" in runs(k8s)
    assert k8s["env"]["K8S_CLUSTER"] == "kind"  # k8s-tests/conftest.py: target()
    uses = [step.get("uses", "") for step in k8s["steps"]]
    kind = next(step for step in k8s["steps"] if step.get("uses", "").startswith("helm/kind-action@"))
    conftest = (REPO_ROOT / "k8s-tests" / "conftest.py").read_text()
    assert f'DEFAULT_CLUSTER = "{kind["with"]["cluster_name"]}"' in conftest
    # The cluster exists before the tests run, and the checkout before anything else.
    assert uses.index(kind["uses"]) < next(i for i, s in enumerate(k8s["steps"]) if s.get("run") == "make k8s-test")
    assert uses[0].startswith("actions/checkout@")


def test_should_use_the_python_of_the_image() -> None:
    for job in workflow()["jobs"].values():
        setup = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-python@"))
        assert setup["with"]["python-version"] == "3.11"
    assert "python:3.11." in (REPO_ROOT / "Dockerfile").read_text()
