"""Every metric name the chart's PromQL uses is exported by a real pod or the migration job.

The expressions (dashboard panels, dashboard variables, alert rules) are parsed with a PromQL
parser (``promql-parser``); each vector selector's name must be a sample name of a real
``/metrics`` scrape of the service or of the Pushgateway after ``python -m migrate`` pushed to it.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import httpx
import pytest

from service.db import to_url
from tests.observability.prom import Query, alert_queries, panel_queries, substitute, variable_queries
from tests.support.pg import PgServer
from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess
from tests.support.services import pushgateway

promql_parser = pytest.importorskip("promql_parser", reason="LOUD SKIP: promql-parser is not installed (dev extra)")

VARIABLES = {"namespace": ".*", "job": ".*", "release": ".*", "__rate_interval": "1m"}


def selector_names(expr: str) -> set[str]:
    """The metric names of every vector selector of ``expr`` (``__name__`` matchers included)."""
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            names.update(m.value for m in node.matchers.matchers if m.name == "__name__")

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _exprs() -> list[Query]:
    variables = [Query(q.source, q.expr.removeprefix("label_values(").rsplit(",", 1)[0]) for q in variable_queries()]
    return [*panel_queries(), *alert_queries(), *variables]


def _sample_names(text: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture(scope="module")
def exported(pg_server: PgServer) -> Iterator[set[str]]:
    conninfo = pg_server.create_database("names")
    try:
        with pushgateway() as gateway:
            env = python_env(MIGRATE_DATABASE_URL=to_url(conninfo), PUSHGATEWAY_URL=gateway)
            done = subprocess.run([sys.executable, "-m", "migrate"], env=env, cwd=ROOT, capture_output=True,
                                  text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stderr
            with urllib.request.urlopen(gateway + "/metrics", timeout=5) as resp:  # noqa: S310 - loopback
                names = _sample_names(resp.read().decode())
        with ServiceProcess(conninfo) as pod:
            assert httpx.post(pod.url + "/threads", json={}).status_code == 200  # HTTP metrics appear lazily
            names |= _sample_names(httpx.get(pod.url + "/metrics").text)
        yield names
    finally:
        pg_server.drop_database(conninfo)


def test_should_find_the_names_of_a_known_expression() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{x="1"}[5m]))) / on (x) b '
            'or count({__name__="c_total"} == 0) and time() - max(d)')
    assert selector_names(expr) == {"a_seconds_bucket", "b", "c_total", "d"}


def test_should_use_only_exported_metric_names(exported: set[str]) -> None:
    queries = _exprs()
    assert len(queries) >= 40
    unknown = {}
    for query in queries:
        names = selector_names(substitute(query.expr, VARIABLES))
        assert names, query.source
        if names - exported:
            unknown[query.source] = sorted(names - exported)
    assert not unknown, unknown


def test_should_export_every_metric_of_the_issue(exported: set[str]) -> None:
    for name in ("langgraph_checkpoint_operation_duration_seconds_bucket", "langgraph_checkpoint_errors_total",
                 "langgraph_db_lock_timeouts_total", "langgraph_db_deadlocks_total", "langgraph_db_pool_connections",
                 "langgraph_db_pool_wait_seconds_bucket", "langgraph_db_connections_refused_total",
                 "langgraph_runs_total",
                 "langgraph_run_duration_seconds_bucket",
                 "langgraph_runs_in_progress", "langgraph_thread_lock_wait_seconds_bucket", "langgraph_schema_version",
                 "langgraph_schema_required_version", "langgraph_ready", "langgraph_build_info",
                 "litestar_requests_total", "litestar_request_duration_seconds_bucket",
                 "langgraph_migration_duration_seconds", "langgraph_migration_lock_timeouts_total"):
        assert name in exported, name
