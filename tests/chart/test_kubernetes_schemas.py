"""Rendered manifests against the Kubernetes OpenAPI schemas (kubernetes-validate, offline, strict).

Every values set (the defaults, every ci/ file and the extra sets below, which reach template
branches the ci files do not) is rendered once, and all objects are validated in one process per
run against Kubernetes 1.29 (the chart's kubeVersion floor) and the newest release
kubernetes-validate knows. The Prometheus Operator CRDs (ServiceMonitor, PrometheusRule) are not in
those schemas; they are validated against hand-written strict JSON Schemas in schemas/.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import CI_VALUES, render_chart, render_error, tool

OLDEST = "1.29"
VERSIONS = [OLDEST, "latest"]
SCHEMAS = Path(__file__).parent / "schemas"
CUSTOM_SCHEMAS = {
    "monitoring.coreos.com/v1/ServiceMonitor": str(SCHEMAS / "servicemonitor.schema.json"),
    "monitoring.coreos.com/v1/PrometheusRule": str(SCHEMAS / "prometheusrule.schema.json"),
}
EXTRA_VALUE_SETS: dict[str, dict[str, Any]] = {
    "hooks-off-waiting-disabled": {"migration.useHelmHooks": False, "migration.waitForSchema.enabled": False},
    "no-topology-spread-extra-constraint": {
        "topologySpread.enabled": False,
        "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "DoNotSchedule",
                                       "labelSelector": {"matchLabels": {"app": "x"}}}],
    },
    "memory-hpa-pdb-percent": {"autoscaling.enabled": True, "autoscaling.targetCPUUtilizationPercentage": None,
                               "autoscaling.targetMemoryUtilizationPercentage": 75,
                               "podDisruptionBudget.maxUnavailable": "25%"},
    "service-nodeport-tmpfs": {"service.type": "NodePort", "tmpVolume.medium": "Memory",
                               "networkPolicy.enabled": False, "serviceAccount.create": False},
}


def _validate(documents: list[dict[str, Any]], versions: list[str]) -> dict[str, Any]:
    request = {"kubernetes_versions": versions, "documents": documents, "custom_schemas": CUSTOM_SCHEMAS}
    result = subprocess.run([tool("python"), str(Path(__file__).parent / "validate_manifests.py")],
                            input=json.dumps(request), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@functools.cache
def _all_documents() -> tuple[dict[str, Any], ...]:
    docs = []
    sets: list[tuple[str, dict[str, Any], list[Path]]] = [("default", {}, [])]
    sets += [(p.stem, {}, [p]) for p in CI_VALUES]
    sets += [(name, values, []) for name, values in EXTRA_VALUE_SETS.items()]
    for set_name, values, files in sets:
        for doc in render_chart(values=values, values_files=files):
            docs.append({"id": f"{set_name}: {doc['kind']}/{doc['metadata']['name']}", "doc": doc})
    return tuple(docs)


def _first(kind: str) -> dict[str, Any]:
    """A copy of the first rendered object of a kind, safe to break."""
    return copy.deepcopy(next(d["doc"] for d in _all_documents() if d["doc"]["kind"] == kind))


@functools.cache
def _report() -> dict[str, Any]:
    return _validate(list(_all_documents()), VERSIONS)


class TestKubernetesSchemas:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_should_match_the_kubernetes_openapi_schemas(self, version: str) -> None:
        report = _report()
        resolved = report["latest"] if version == "latest" else version
        errors = [e for e in report["errors"] if e["version"] == resolved]
        assert errors == [], "\n".join(f"{e['id']} ({e['kind']}): {e['error']}" for e in errors)
        built_in = [d for d in _all_documents() if not d["doc"]["apiVersion"].startswith("monitoring.coreos.com/")]
        assert report["validated"][resolved] == len(built_in)

    def test_should_validate_against_a_recent_kubernetes_release(self) -> None:
        major, minor = (int(part) for part in _report()["latest"].split(".")[:2])
        assert (major, minor) >= (1, 35)

    def test_should_cover_every_kind_the_chart_renders(self) -> None:
        kinds = {d["doc"]["kind"] for d in _all_documents()}
        assert kinds == {"ConfigMap", "CronJob", "Deployment", "HorizontalPodAutoscaler", "Job", "NetworkPolicy",
                         "Pod", "PodDisruptionBudget", "PrometheusRule", "Secret", "Service", "ServiceAccount",
                         "ServiceMonitor"}

    def test_should_report_an_unknown_field(self) -> None:
        deployment = _first("Deployment")
        deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
        report = _validate([{"id": "typo", "doc": deployment}], [OLDEST])
        assert [e["id"] for e in report["errors"]] == ["typo"]
        assert "readinesProbe" in report["errors"][0]["error"]

    def test_should_report_a_field_that_1_29_requires(self) -> None:
        # Kubernetes 1.29 requires status on a podFailurePolicy onPodConditions pattern.
        job = _first("Job")
        del job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"]
        report = _validate([{"id": "job", "doc": job}], [OLDEST])
        assert [e["version"] for e in report["errors"]] == [OLDEST]


class TestCustomResources:
    def test_should_match_the_structural_schemas_of_the_prometheus_operator_kinds(self) -> None:
        report = _report()
        errors = [e for e in report["errors"] if e["version"] == "custom"]
        assert errors == [], "\n".join(f"{e['id']}: {e['error']}" for e in errors)
        custom = [d for d in _all_documents() if d["doc"]["apiVersion"].startswith("monitoring.coreos.com/")]
        assert report["validated"]["custom"] == len(custom) >= 2

    @pytest.mark.parametrize(("kind", "mutate", "expected"), [
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(intervall="30s"), "intervall"),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(interval="30 seconds"), "does not match"),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].update(severity="page"), "severity"),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].pop("expr"), "expr"),
    ], ids=["unknown-endpoint-field", "bad-duration", "unknown-rule-field", "missing-expr"])
    def test_should_report_a_malformed_custom_resource(self, kind: str, mutate: Any, expected: str) -> None:
        doc = _first(kind)
        mutate(doc)
        report = _validate([{"id": kind, "doc": doc}], [OLDEST])
        assert len(report["errors"]) >= 1
        assert expected in " ".join(e["error"] for e in report["errors"])


class TestKubeVersion:
    def test_should_render_on_the_oldest_supported_kubernetes(self) -> None:
        assert render_chart(kube_version=f"{OLDEST}.0")

    def test_should_refuse_kubernetes_older_than_1_29(self) -> None:
        assert "kubeVersion" in render_error(kube_version="1.28.9")
