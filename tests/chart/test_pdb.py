from __future__ import annotations

from tests.chart.conftest import FULLNAME, one, render_chart

SHOW = ["templates/pdb.yaml"]
SERVER_SELECTOR = {"app.kubernetes.io/name": "langgraph-pg", "app.kubernetes.io/instance": "release-name",
                   "app.kubernetes.io/component": "server"}


def pdb(values: dict | None = None) -> dict:
    return one(render_chart(values=values, show_only=SHOW), "PodDisruptionBudget")


class TestPodDisruptionBudget:
    def test_should_allow_one_pod_at_a_time_by_default(self) -> None:
        doc = pdb()
        assert doc["metadata"]["name"] == FULLNAME
        assert doc["spec"] == {"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow",
                               "selector": {"matchLabels": SERVER_SELECTOR}}

    def test_should_take_max_unavailable_as_a_percentage(self) -> None:
        assert pdb({"podDisruptionBudget.maxUnavailable": "50%"})["spec"]["maxUnavailable"] == "50%"

    def test_should_prefer_min_available_when_set(self) -> None:
        spec = pdb({"podDisruptionBudget.minAvailable": 2})["spec"]
        assert spec["minAvailable"] == 2
        assert "maxUnavailable" not in spec

    def test_should_take_the_unhealthy_pod_eviction_policy(self) -> None:
        spec = pdb({"podDisruptionBudget.unhealthyPodEvictionPolicy": "IfHealthyBudget"})["spec"]
        assert spec["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"

    def test_should_not_render_when_disabled(self) -> None:
        assert render_chart(values={"podDisruptionBudget.enabled": False}, show_only=SHOW) == []
