"""The optional objects the API server must accept as the chart renders them: ServiceMonitor and
PrometheusRule (with the prometheus-operator CRDs, from that project's module source), the
PodDisruptionBudget and the HorizontalPodAutoscaler; and helm 3 installing and upgrading the chart.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Cluster, Release

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def prometheus_operator_crds(postgres: Cluster) -> Iterator[Path]:
    """The ServiceMonitor and PrometheusRule CRDs, applied (k8s/build/build.sh takes them from the module)."""
    out = subprocess.run([str(REPO_ROOT / "k8s" / "build" / "build.sh")], capture_output=True, text=True,
                         check=True, timeout=3600).stdout
    crds = Path(next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("PROMOP_CRDS=")))
    postgres.kubectl("apply", "--server-side", "-f", str(crds))
    # Poll the condition: `kubectl wait` errors out (not waits) while a new CRD has no conditions yet.
    deadline = time.monotonic() + 120
    pending = ["servicemonitors", "prometheusrules"]
    while pending:
        conditions = postgres.get("crd", f"{pending[0]}.monitoring.coreos.com").get("status", {}).get("conditions")
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions or []):
            pending.pop(0)
            continue
        assert time.monotonic() < deadline, f"CRD {pending[0]} not Established in 120 s: {conditions}"
        time.sleep(0.5)
    yield crds
    postgres.kubectl("delete", "-f", str(crds), "--ignore-not-found", "--wait=false")


def test_monitoring_pdb_and_hpa_should_be_accepted(postgres: Cluster, image: tuple[str, str],
                                                   prometheus_operator_crds: Path) -> None:
    rel = Release("lgpg-mon", "lgpg-mon", "langgraph", postgres)
    try:
        rel.install(image, {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                            "podDisruptionBudget": {"enabled": True},
                            "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 3}})
        monitor = postgres.get("servicemonitor", "-n", rel.namespace, rel.fullname)
        assert monitor["spec"]["endpoints"], monitor["spec"]
        rule = postgres.get("prometheusrule", "-n", rel.namespace, rel.fullname)
        assert all(group["rules"] for group in rule["spec"]["groups"]) and rule["spec"]["groups"]
        pdb = postgres.get("pdb", "-n", rel.namespace, rel.fullname)
        assert pdb["apiVersion"] == "policy/v1"
        hpa = postgres.get("hpa", "-n", rel.namespace, rel.fullname)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 3)
        rel.cluster.wait_ready(rel.namespace, rel.fullname, 2)
        # The PDB sees the two ready server pods (its selector matches them).
        healthy = postgres.kubectl("wait", "-n", rel.namespace, f"pdb/{rel.fullname}",
                                   "--for=jsonpath={.status.currentHealthy}=2", "--timeout=120s", check=False)
        assert healthy.returncode == 0, json.dumps(postgres.get("pdb", "-n", rel.namespace, rel.fullname)["status"])
    finally:
        rel.uninstall()


def test_helm3_should_install_and_upgrade(postgres: Cluster, image: tuple[str, str], helm3: str) -> None:
    version = postgres.helm("version", "--template", "{{.Version}}", helm_path=helm3).stdout.strip()
    assert version.startswith("v3."), version
    rel = Release("lgpg-helm3", "lgpg-helm3", "langgraph", postgres)
    try:
        rel.install(image, {"replicaCount": 1}, helm_path=helm3)
        events = rel.migration_events()
        assert events.get("Completed") == 1, events
        rel.upgrade(image, {"replicaCount": 1, "podAnnotations": {"k8s-tests/revision": "2"}}, helm_path=helm3)
        rel.cluster.wait_ready(rel.namespace, rel.fullname, 1)
        history = json.loads(postgres.helm("history", rel.name, "--namespace", rel.namespace, "-o", "json",
                                           helm_path=helm3).stdout)
        assert [(r["revision"], r["status"]) for r in history] == [(1, "superseded"), (2, "deployed")]
        assert rel.migration_events().get("Completed") == 2
        tested = postgres.helm("test", rel.name, "--namespace", rel.namespace, "--timeout", "5m", helm_path=helm3)
        assert "Succeeded" in tested.stdout, tested.stdout
    finally:
        rel.uninstall(helm3)
