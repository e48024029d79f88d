from __future__ import annotations

from tests.chart.conftest import FULLNAME, one, render_chart, render_error

SHOW = ["templates/hpa.yaml"]
ON = {"autoscaling.enabled": True}


def hpa(values: dict | None = None) -> dict:
    return one(render_chart(values={**ON, **(values or {})}, show_only=SHOW), "HorizontalPodAutoscaler")


def cpu(utilization: int) -> dict:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                        "averageUtilization": utilization}}}


def memory(utilization: int) -> dict:
    return {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization",
                                                                           "averageUtilization": utilization}}}


class TestHorizontalPodAutoscaler:
    def test_should_not_render_by_default(self) -> None:
        assert render_chart(show_only=SHOW) == []

    def test_should_scale_the_deployment_on_cpu(self) -> None:
        doc = hpa()
        assert doc["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
        assert (doc["spec"]["minReplicas"], doc["spec"]["maxReplicas"]) == (2, 10)
        assert doc["spec"]["metrics"] == [cpu(70)]
        assert "behavior" not in doc["spec"]

    def test_should_take_bounds_targets_and_behavior(self) -> None:
        behavior = {"scaleDown": {"stabilizationWindowSeconds": 600}}
        spec = hpa({"autoscaling.minReplicas": 3, "autoscaling.maxReplicas": 30,
                    "autoscaling.targetCPUUtilizationPercentage": 50,
                    "autoscaling.targetMemoryUtilizationPercentage": 80, "autoscaling.behavior": behavior})["spec"]
        assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 30)
        assert spec["metrics"] == [cpu(50), memory(80)]
        assert spec["behavior"] == behavior

    def test_should_scale_on_memory_alone(self) -> None:
        spec = hpa({"autoscaling.targetCPUUtilizationPercentage": None,
                    "autoscaling.targetMemoryUtilizationPercentage": 75})["spec"]
        assert spec["metrics"] == [memory(75)]

    def test_should_refuse_no_target(self) -> None:
        error = render_error({**ON, "autoscaling.targetCPUUtilizationPercentage": None}, show_only=SHOW)
        assert "neither targetCPUUtilizationPercentage nor targetMemoryUtilizationPercentage" in error

    def test_should_refuse_min_above_max(self) -> None:
        error = render_error({**ON, "autoscaling.minReplicas": 5, "autoscaling.maxReplicas": 4}, show_only=SHOW)
        assert "minReplicas must not exceed" in error
