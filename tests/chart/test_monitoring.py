"""ServiceMonitor, PrometheusRule and the Grafana dashboards ConfigMap."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import yaml

from tests.chart.conftest import CHART_DIR, FULLNAME, NAMESPACE, one, render_chart

# The metric names of the service contract; the dashboard and alerts may use no others.
SERVICE_METRICS = {
    "langgraph_checkpoint_operation_duration_seconds", "langgraph_checkpoint_errors_total",
    "langgraph_db_lock_timeouts_total", "langgraph_db_deadlocks_total", "langgraph_db_pool_connections",
    "langgraph_db_pool_wait_seconds", "langgraph_runs_total", "langgraph_run_duration_seconds",
    "langgraph_runs_in_progress", "langgraph_thread_lock_wait_seconds", "langgraph_schema_version",
    "langgraph_schema_required_version", "langgraph_ready", "langgraph_build_info",
    "litestar_requests_total", "litestar_request_duration_seconds",
    # the run queue (issue 10)
    "langgraph_run_queue_runs", "langgraph_run_queue_wait_seconds", "langgraph_runs_taken_over_total",
    "langgraph_runs_abandoned_total", "langgraph_runs_cancelled_total",
    "langgraph_cron_firings_total", "langgraph_cron_firing_delay_seconds", "langgraph_webhooks_total",
    # connection refusals (issue 14)
    "langgraph_db_connections_refused_total",
}
MIGRATION_METRICS = {
    "langgraph_migration_duration_seconds", "langgraph_migration_lock_wait_seconds",
    "langgraph_migration_lock_timeouts_total", "langgraph_migration_last_success_timestamp_seconds",
}
HISTOGRAMS = {"langgraph_checkpoint_operation_duration_seconds", "langgraph_db_pool_wait_seconds",
              "langgraph_run_duration_seconds", "langgraph_thread_lock_wait_seconds",
              "litestar_request_duration_seconds", "langgraph_run_queue_wait_seconds",
              "langgraph_cron_firing_delay_seconds"}
ALERTS_FILE = CHART_DIR / "files" / "alerts.rules.yaml"


def metric_names(expr: str) -> set[str]:
    """langgraph_*/litestar_* names in a PromQL expression, with histogram series suffixes removed."""
    names = set(re.findall(r"\b((?:langgraph|litestar)_[a-z0-9_]+)", expr))
    return {re.sub(r"_(bucket|count|sum)$", "", n) if re.sub(r"_(bucket|count|sum)$", "", n) in HISTOGRAMS else n
            for n in names}


class TestServiceMonitor:
    SHOW: ClassVar[list[str]] = ["templates/servicemonitor.yaml"]
    ON: ClassVar[dict[str, Any]] = {"serviceMonitor.enabled": True}

    def monitor(self, values: dict | None = None) -> dict:
        return one(render_chart(values={**self.ON, **(values or {})}, show_only=self.SHOW), "ServiceMonitor")

    def test_should_not_render_by_default(self) -> None:
        assert render_chart(show_only=self.SHOW) == []

    def test_should_scrape_metrics_on_the_http_port_of_this_release(self) -> None:
        doc = self.monitor()
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert doc["metadata"]["name"] == FULLNAME
        assert doc["spec"]["selector"] == {"matchLabels": {
            "app.kubernetes.io/name": "langgraph-pg", "app.kubernetes.io/instance": "release-name",
            "app.kubernetes.io/component": "server"}}
        assert doc["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        assert doc["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "scheme": "http",
                                             "interval": "30s", "scrapeTimeout": "10s"}]

    def test_should_select_the_service(self) -> None:
        monitor = self.monitor()
        service = one(render_chart(show_only=["templates/service.yaml"]))
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        assert service["spec"]["ports"][0]["name"] == monitor["spec"]["endpoints"][0]["port"]

    def test_should_carry_labels_for_the_prometheus_selector(self) -> None:
        labels = self.monitor({"serviceMonitor.additionalLabels": {"release": "kube-prometheus-stack"}})[
            "metadata"]["labels"]
        assert labels["release"] == "kube-prometheus-stack"
        assert labels["app.kubernetes.io/instance"] == "release-name"

    def test_should_take_interval_timeout_and_relabelings(self) -> None:
        relabel = [{"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}]
        drop = [{"action": "drop", "sourceLabels": ["__name__"], "regex": "python_gc_.*"}]
        endpoint = self.monitor({"serviceMonitor.interval": "15s", "serviceMonitor.scrapeTimeout": "5s",
                                 "serviceMonitor.relabelings": relabel,
                                 "serviceMonitor.metricRelabelings": drop})["spec"]["endpoints"][0]
        assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")
        assert endpoint["relabelings"] == relabel
        assert endpoint["metricRelabelings"] == drop


class TestPrometheusRule:
    SHOW: ClassVar[list[str]] = ["templates/prometheusrule.yaml"]
    ON: ClassVar[dict[str, Any]] = {"prometheusRule.enabled": True}

    def rule(self, values: dict | None = None) -> dict:
        return one(render_chart(values={**self.ON, **(values or {})}, show_only=self.SHOW), "PrometheusRule")

    def test_should_not_render_by_default(self) -> None:
        assert render_chart(show_only=self.SHOW) == []

    def test_should_embed_the_rules_file_unchanged(self) -> None:
        assert self.rule()["spec"]["groups"] == yaml.safe_load(ALERTS_FILE.read_text())["groups"]

    def test_should_carry_labels_for_the_rule_selector(self) -> None:
        labels = self.rule({"prometheusRule.additionalLabels": {"release": "kube-prometheus-stack"}})[
            "metadata"]["labels"]
        assert labels["release"] == "kube-prometheus-stack"

    def test_should_add_rule_labels_to_every_alert_without_overriding_its_own(self) -> None:
        groups = self.rule({"prometheusRule.ruleLabels": {"team": "agents", "severity": "page"}})["spec"]["groups"]
        original = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
        for group, source in zip(groups, original, strict=True):
            for rendered, rule in zip(group["rules"], source["rules"], strict=True):
                assert rendered["labels"] == {"team": "agents", **rule["labels"]}
                assert rendered["expr"] == rule["expr"]

    def test_should_alert_on_each_condition_of_the_issue(self) -> None:
        alerts = {r["alert"]: r for g in self.rule()["spec"]["groups"] for r in g["rules"]}
        assert {"LangGraphMigrationLockTimeout", "LangGraphCheckpointLatencyHigh", "LangGraphDeadlocks",
                "LangGraphPoolWaiting", "LangGraphPodsNotReadySchemaBehind",
                "LangGraphRunQueueBacklog", "LangGraphDatabaseConnectionsRefused"} <= alerts.keys()
        for alert in alerts.values():
            assert alert["labels"]["severity"] in {"warning", "critical"}
            assert alert["annotations"]["summary"].endswith(".")
            assert metric_names(alert["expr"]) <= SERVICE_METRICS | MIGRATION_METRICS, alert["alert"]


class TestDashboards:
    SHOW: ClassVar[list[str]] = ["templates/dashboards-configmap.yaml"]
    ON: ClassVar[dict[str, Any]] = {"dashboards.enabled": True}

    def configmap(self, values: dict | None = None) -> dict:
        return one(render_chart(values={**self.ON, **(values or {})}, show_only=self.SHOW), "ConfigMap")

    def dashboards(self) -> dict[str, dict[str, Any]]:
        return {key: json.loads(text) for key, text in self.configmap()["data"].items()}

    def test_should_not_render_by_default(self) -> None:
        assert render_chart(show_only=self.SHOW) == []

    def test_should_load_every_dashboard_file_for_the_grafana_sidecar(self) -> None:
        cm = self.configmap()
        assert cm["metadata"]["name"] == f"{FULLNAME}-dashboards"
        assert cm["metadata"]["namespace"] == NAMESPACE
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        files = sorted(p.name for p in (CHART_DIR / "dashboards").glob("*.json"))
        assert sorted(cm["data"]) == files
        for name in files:
            assert cm["data"][name] == (CHART_DIR / "dashboards" / name).read_text()

    def test_should_take_label_annotations_and_namespace(self) -> None:
        cm = self.configmap({"dashboards.label": "example.com/dashboard", "dashboards.namespace": "monitoring",
                             "dashboards.annotations": {"grafana_folder": "LangGraph"}})
        assert cm["metadata"]["labels"]["example.com/dashboard"] == "1"
        assert "grafana_dashboard" not in cm["metadata"]["labels"]
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "LangGraph"}

    def test_should_choose_the_datasource_with_a_template_variable(self) -> None:
        for name, dashboard in self.dashboards().items():
            variables = {v["name"]: v for v in dashboard["templating"]["list"]}
            assert variables["datasource"]["type"] == "datasource"
            assert variables["datasource"]["query"] == "prometheus"
            panels = [p for p in dashboard["panels"] if p["type"] != "row"]
            assert len(panels) >= 20, name
            for panel in panels:
                assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
                for target in panel["targets"]:
                    assert target["datasource"]["uid"] == "${datasource}", panel["title"]

    def test_should_query_only_contract_metrics_and_show_every_one(self) -> None:
        for name, dashboard in self.dashboards().items():
            used: set[str] = set()
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    used |= metric_names(target["expr"])
            assert used <= SERVICE_METRICS | MIGRATION_METRICS, name
            missing = (SERVICE_METRICS | MIGRATION_METRICS) - used
            assert not missing, f"{name} does not show {missing}"

    def test_should_lay_panels_out_without_overlap(self) -> None:
        for name, dashboard in self.dashboards().items():
            cells: set[tuple[int, int]] = set()
            ids = [p["id"] for p in dashboard["panels"]]
            assert len(ids) == len(set(ids)), name
            for panel in dashboard["panels"]:
                pos = panel["gridPos"]
                assert pos["x"] + pos["w"] <= 24, panel["title"]
                area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                        for y in range(pos["y"], pos["y"] + pos["h"])}
                assert not cells & area, f"{name}: {panel['title']} overlaps another panel"
                cells |= area
