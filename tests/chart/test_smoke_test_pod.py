from __future__ import annotations

from tests.chart.conftest import FULLNAME, container, env_of, one, render_chart

SHOW = ["templates/tests/test-smoke.yaml"]


def pod(values: dict | None = None) -> dict:
    return one(render_chart(values=values, show_only=SHOW), "Pod")


class TestSmokeTestPod:
    def test_should_be_a_helm_test_that_checks_ready_and_one_conversation(self) -> None:
        doc = pod()
        assert doc["metadata"]["name"] == f"{FULLNAME}-smoke-test"
        assert doc["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert doc["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        assert container(doc, "smoke")["command"] == ["python", "-m", "service.smoke", "--url",
                                                      f"http://{FULLNAME}:8000"]
        assert doc["spec"]["restartPolicy"] == "Never"
        assert doc["metadata"]["labels"]["app.kubernetes.io/component"] == "smoke-test"

    def test_should_follow_the_service_port(self) -> None:
        assert container(pod({"service.port": 80}), "smoke")["command"][-1] == f"http://{FULLNAME}:80"

    def test_should_send_an_api_key_when_keys_are_enabled(self) -> None:
        assert "API_KEY" not in env_of(container(pod(), "smoke"))
        env = env_of(container(pod({"apiKeys.enabled": True, "apiKeys.keys": ["k"]}), "smoke"))
        assert env["API_KEY"] == {"secretKeyRef": {"name": FULLNAME, "key": "api-keys"}}
        env = env_of(container(pod({"apiKeys.enabled": True, "apiKeys.existingSecret": "keys"}), "smoke"))
        assert env["API_KEY"] == {"secretKeyRef": {"name": "keys", "key": "api-keys"}}

    def test_should_take_deadline_and_resources(self) -> None:
        resources = {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}
        doc = pod({"tests.activeDeadlineSeconds": 60, "tests.resources": resources})
        assert doc["spec"]["activeDeadlineSeconds"] == 60
        assert container(doc, "smoke")["resources"] == resources

    def test_should_skip_probe_checks_with_a_reason(self) -> None:
        annotations = pod()["metadata"]["annotations"]
        assert annotations["checkov.io/skip1"].startswith("CKV_K8S_8=")
        assert annotations["checkov.io/skip2"].startswith("CKV_K8S_9=")

    def test_should_not_render_when_disabled(self) -> None:
        assert render_chart(values={"tests.enabled": False}, show_only=SHOW) == []
