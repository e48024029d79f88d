"""A real Prometheus for tests, and the PromQL the chart ships (dashboard panels, alert rules)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.services import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "langgraph-pg"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
ALERTS_FILE = CHART / "files" / "alerts.rules.yaml"


@dataclass(frozen=True)
class Query:
    source: str  # "<dashboard>: <panel title> [refId]" or "alert <name>"
    expr: str  # as shipped, with Grafana variables
    instant: bool = False
    legend: str = ""


def panel_queries() -> list[Query]:
    out = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for inner in [panel, *panel.get("panels", [])]:
                for target in inner.get("targets", []):
                    out.append(Query(f"{path.stem}: {inner['title']} [{target['refId']}]", target["expr"],
                                     bool(target.get("instant")), target.get("legendFormat", "")))
    return out


def variable_queries() -> list[Query]:
    """The template variables' label_values(metric, label) queries."""
    out = []
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] == "query":
                out.append(Query(f"{path.stem}: variable {variable['name']}", variable["definition"]))
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS_FILE.read_text())["groups"] for rule in group["rules"]]


def alert_queries() -> list[Query]:
    return [Query(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana's variables ($__rate_interval first: it starts like no other)."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("$" + name, variables[name])
    if "$" in expr:
        raise ValueError(f"unknown variable in {expr}")
    return expr


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:  # noqa: S310
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def instant(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        return list(self.api("query", **params)["result"])

    def range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        return list(self.api("query_range", query=expr, start=start, end=end, step=step)["result"])

    def wait_for(self, expr: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns something (bounded in time)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.instant(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus returned nothing for {expr} within {timeout}s")
            time.sleep(0.25)


def finite_points(result: list[dict[str, Any]]) -> int:
    """How many samples of an instant or range result are numbers (not NaN or infinite)."""
    count = 0
    for series in result:
        values = series.get("values") or [series["value"]]
        for _, value in values:
            if value not in ("NaN", "+Inf", "-Inf"):
                count += 1
    return count


@contextmanager
def prometheus(targets: dict[str, dict[str, str]], pushgateway: str | None, rule_files: list[Path],
               interval: str = "1s") -> Iterator[Prometheus]:
    """Start Debian's prometheus on a free loopback port scraping ``targets`` (host:port -> labels)."""
    binary = shutil.which("prometheus")
    if binary is None:
        import pytest

        pytest.skip("LOUD SKIP: prometheus is not installed (scripts/install-tools.sh installs Debian's package)")
    workdir = Path(tempfile.mkdtemp(prefix="prom-"))
    scrape_configs: list[dict[str, Any]] = [{
        "job_name": "langgraph-pg", "metrics_path": "/metrics",
        "static_configs": [{"targets": [target], "labels": labels} for target, labels in targets.items()],
    }]
    if pushgateway is not None:
        scrape_configs.append({"job_name": "pushgateway", "honor_labels": True,
                               "static_configs": [{"targets": [pushgateway.removeprefix("http://")]}]})
    config = {"global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
              "rule_files": [str(p) for p in rule_files], "scrape_configs": scrape_configs}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([binary, f"--config.file={workdir / 'prometheus.yml'}",
                             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/-/ready", timeout=30)
        yield Prometheus(url)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
