from __future__ import annotations

from tests.chart.conftest import FULLNAME, by_kind, render_chart

SHOW = ["templates/networkpolicy.yaml"]
SELECTOR = {"app.kubernetes.io/name": "langgraph-pg", "app.kubernetes.io/instance": "release-name"}


def policies(values: dict | None = None) -> dict[str, dict]:
    docs = by_kind(render_chart(values=values, show_only=SHOW), "NetworkPolicy")
    return {doc["metadata"]["name"]: doc for doc in docs}


class TestNetworkPolicy:
    def test_should_admit_only_the_http_port_to_the_server(self) -> None:
        server = policies()[FULLNAME]
        assert server["spec"]["podSelector"] == {"matchLabels": {**SELECTOR, "app.kubernetes.io/component": "server"}}
        assert server["spec"]["policyTypes"] == ["Ingress"]
        # One rule, the http port (API and /metrics), from any source.
        assert server["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]

    def test_should_deny_all_ingress_to_the_job_pods(self) -> None:
        jobs = policies()[f"{FULLNAME}-jobs"]
        assert jobs["spec"]["podSelector"] == {
            "matchLabels": SELECTOR,
            "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In",
                                  "values": ["migration", "prune", "smoke-test"]}]}
        assert jobs["spec"]["policyTypes"] == ["Ingress"]
        assert "ingress" not in jobs["spec"]

    def test_should_restrict_sources_to_from_metrics_from_and_the_test_pod(self) -> None:
        gateway = {"podSelector": {"matchLabels": {"app": "gateway"}}}
        prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        rule = policies({"networkPolicy.from": [gateway], "networkPolicy.metricsFrom": [prometheus]})[FULLNAME][
            "spec"]["ingress"]
        assert rule == [{
            "ports": [{"port": "http", "protocol": "TCP"}],
            "from": [gateway, prometheus,
                     {"podSelector": {"matchLabels": {**SELECTOR, "app.kubernetes.io/component": "smoke-test"}}}],
        }]

    def test_should_ignore_metrics_from_when_any_source_is_admitted(self) -> None:
        prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        rule = policies({"networkPolicy.metricsFrom": [prometheus]})[FULLNAME]["spec"]["ingress"]
        assert rule == [{"ports": [{"port": "http", "protocol": "TCP"}]}]

    def test_should_not_render_when_disabled(self) -> None:
        assert render_chart(values={"networkPolicy.enabled": False}, show_only=SHOW) == []
