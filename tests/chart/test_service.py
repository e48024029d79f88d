from __future__ import annotations

from tests.chart.conftest import FULLNAME, one, render_chart

SHOW = ["templates/service.yaml"]


def service(values: dict | None = None) -> dict:
    return one(render_chart(values=values, show_only=SHOW), "Service")


class TestService:
    def test_should_expose_the_http_port_of_the_server_pods(self) -> None:
        svc = service()
        assert svc["metadata"]["name"] == FULLNAME
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
        assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "langgraph-pg",
                                           "app.kubernetes.io/instance": "release-name",
                                           "app.kubernetes.io/component": "server"}

    def test_should_take_type_port_and_annotations(self) -> None:
        svc = service({"service.type": "LoadBalancer", "service.port": 80,
                       "service.annotations": {"example.com/lb": "internal"}})
        assert svc["spec"]["type"] == "LoadBalancer"
        assert svc["spec"]["ports"][0]["port"] == 80
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
        assert svc["metadata"]["annotations"] == {"example.com/lb": "internal"}
