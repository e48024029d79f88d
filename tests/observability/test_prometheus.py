"""Every dashboard panel and every alert of the chart returns data from a real Prometheus.

One scenario per module, on real processes: Debian's Prometheus scrapes two service pods (one
with ``PROMETHEUS_MULTIPROC_DIR``, as with several uvicorn workers) and a Pushgateway every
second. The pods start before the schema exists (not ready: schema behind); a migration job times
out on a held migration lock, then a second one migrates (both push to the Pushgateway). Then
traffic: successful, interrupted and failing runs, two runs queued on one thread, a rejected run,
history and state reads, and a backlog of 110 background runs queued behind a long one (the
queue-backlog alert's condition), cancelled together, the long one rolled back; a cron firing
every second and a run with a webhook to a local receiver. Then three incidents, caused the way
they happen in production:

* a plain ``CREATE INDEX`` on ``checkpoints`` left in an open transaction: its SHARE lock blocks
  checkpoint writes, which hit the database's ``lock_timeout``, while the runs queued behind them
  exhaust one pod's two-connection pool;
* a maintenance session deleting a thread's checkpoint writes and then touching its thread row,
  while the pod deletes the same thread (thread row first, then the checkpoint tables): the
  opposite order, so PostgreSQL aborts the pod's transaction as a deadlock.
* the server out of connection slots (another client holds them all) while the pods' backends
  are terminated: the pools' reconnects are refused (``too many clients``) until the slots are
  given back.

Then each panel query and alert expression is evaluated over the run through the HTTP API and
must return at least one finite sample.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from service.db import to_url
from tests.observability.dashboard_png import render
from tests.observability.prom import (
    ALERTS_FILE,
    ROOT,
    Prometheus,
    alert_queries,
    finite_points,
    panel_queries,
    prometheus,
    substitute,
    variable_queries,
)
from tests.support.pg import PgServer
from tests.support.race import python_env
from tests.support.receiver import webhook_receiver
from tests.support.service import ServiceProcess
from tests.support.services import pushgateway

NAMESPACE, JOB, RELEASE = "langgraph-test", "langgraph-pg", "release-a"
VARIABLES = {"namespace": NAMESPACE, "job": JOB, "release": RELEASE, "__rate_interval": "15s"}
MIGRATION_LOCK_KEY = 5496446847353504084
BILLING = {"messages": [{"role": "user", "content": "My invoice shows the wrong amount"}]}
REGULATED = {"messages": [{"role": "user", "content": "Which fund guarantees the best returns?"}]}


def _require_tools() -> None:
    """Install Prometheus, promtool and the Pushgateway when missing; skip loudly if that cannot be done."""
    tools = ("prometheus", "promtool", "prometheus-pushgateway")
    if all(shutil.which(t) for t in tools):
        return
    subprocess.run([str(ROOT / "scripts" / "install-tools.sh")], check=False, timeout=600)
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"LOUD SKIP: {', '.join(missing)} missing and not installable here (needs root and apt-get)")


@dataclass
class Observed:
    prom: Prometheus
    start: float
    end: float
    pods: dict[str, ServiceProcess]
    scrapes: dict[str, str] = field(default_factory=dict)
    deadlock_status: int = 0
    lock_timeout_statuses: list[int] = field(default_factory=list)


def _migrate(conninfo: str, gateway: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = python_env(MIGRATE_DATABASE_URL=to_url(conninfo), PUSHGATEWAY_URL=gateway, MIGRATE_INSTANCE=RELEASE)
    return subprocess.run([sys.executable, "-m", "migrate", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def _run(client: httpx.Client, url: str, body: dict[str, Any], thread: str | None = None) -> int:
    path = f"/threads/{thread}/runs/wait" if thread else "/runs/wait"
    return client.post(url + path, json=body, timeout=30).status_code


def _traffic(pods: dict[str, ServiceProcess]) -> None:
    a, b = pods["pod-a"].url, pods["pod-b"].url
    with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
        jobs = []
        for i in range(24):
            url = a if i % 2 else b
            jobs.append(pool.submit(_run, client, url, {"assistant_id": "support", "input": BILLING}))
        for url in (a, b):
            jobs.append(pool.submit(_run, client, url, {"assistant_id": "support", "input": REGULATED}))  # interrupted
            jobs.append(pool.submit(_run, client, url, {"assistant_id": "failing", "input": BILLING}))  # error
        assert all(j.result() == 200 for j in jobs)
        # Two runs on one thread: the second waits for the first (thread lock wait); a third is rejected.
        thread = client.post(a + "/threads", json={}).json()["thread_id"]
        slow = {"assistant_id": "slow", "input": {"delay": 1.0}}
        first = pool.submit(_run, client, a, slow, thread)
        deadline = time.monotonic() + 60
        while client.get(f"{a}/threads/{thread}").json()["status"] != "busy":  # the first run holds it
            assert time.monotonic() < deadline, "the first run never took its thread"
            time.sleep(0.02)
        second = pool.submit(_run, client, b, {**slow, "input": {"delay": 0.1}}, thread)
        assert _run(client, a, {**slow, "multitask_strategy": "reject"}, thread) == 409
        assert (first.result(), second.result()) == (200, 200)
        assert client.get(f"{b}/threads/{thread}/history").status_code == 200
        assert client.get(f"{a}/threads/{thread}/state").status_code == 200


def _queue_backlog(pods: dict[str, ServiceProcess], prom: Prometheus) -> None:
    """A backlog: 110 background runs queued behind a long one on one thread, then all cancelled."""
    a, b = pods["pod-a"].url, pods["pod-b"].url
    with httpx.Client(timeout=30) as client:
        thread = client.post(a + "/threads", json={}).json()["thread_id"]
        holder = client.post(f"{a}/threads/{thread}/runs", json={"assistant_id": "slow", "input": {"delay": 60}})
        assert holder.status_code == 200, holder.text
        queued = [client.post(f"{b}/threads/{thread}/runs", json={"assistant_id": "slow", "input": {"delay": 0}})
                  for _ in range(110)]
        assert all(r.status_code == 200 and r.json()["status"] == "pending" for r in queued)
        prom.wait_for('max(langgraph_run_queue_runs{job="langgraph-pg", status="pending"}) > 100', timeout=20)
        ids = [r.json()["run_id"] for r in queued]
        assert client.post(f"{b}/runs/cancel", json={"thread_id": thread, "run_ids": ids}).status_code == 204
        cancel = client.post(f"{b}/threads/{thread}/runs/{holder.json()['run_id']}/cancel",
                             params={"action": "rollback", "wait": "true"})
        assert cancel.status_code in (200, 202), cancel.text
        prom.wait_for('sum(langgraph_runs_cancelled_total{job="langgraph-pg", action="rollback"}) > 0', timeout=20)


def _cron_and_webhook(pods: dict[str, ServiceProcess], prom: Prometheus) -> None:
    """A cron firing every second on the pods' schedulers, and a background run with a webhook."""
    a, b = pods["pod-a"].url, pods["pod-b"].url
    with webhook_receiver() as (hook_url, _), httpx.Client(timeout=30) as client:
        cron = client.post(f"{a}/runs/crons", json={"assistant_id": "support", "schedule": "* * * * * *",
                                                     "input": BILLING, "on_run_completed": "delete"})
        assert cron.status_code == 200, cron.text
        thread = client.post(b + "/threads", json={}).json()["thread_id"]
        hooked = client.post(f"{b}/threads/{thread}/runs",
                             json={"assistant_id": "support", "input": BILLING, "webhook": hook_url})
        assert hooked.status_code == 200, hooked.text
        prom.wait_for('sum(langgraph_cron_firings_total{job="langgraph-pg", outcome="fired"}) > 1', timeout=30)
        prom.wait_for('sum(langgraph_webhooks_total{job="langgraph-pg", outcome="delivered"}) > 0', timeout=30)
        assert client.delete(f"{a}/runs/crons/{cron.json()['cron_id']}").status_code == 204


def _blocking_index_build(conninfo: str, pods: dict[str, ServiceProcess], prom: Prometheus) -> list[int]:
    """A plain CREATE INDEX on checkpoints, left open for 4 s, while both pods take runs."""
    a, b = pods["pod-a"].url, pods["pod-b"].url
    with psycopg.connect(conninfo) as maintenance, httpx.Client() as client, ThreadPoolExecutor(9) as pool:
        maintenance.execute("SET lock_timeout = 0")
        maintenance.execute("CREATE INDEX checkpoints_maintenance_idx ON checkpoints (checkpoint_ns)")
        held = time.monotonic()
        jobs = [pool.submit(_run, client, b if i < 6 else a, {"assistant_id": "support", "input": BILLING})
                for i in range(9)]
        # pod-b has two connections: the other runs queue for one while the writes wait for the lock.
        prom.wait_for('langgraph_db_pool_connections{pod="pod-b", state="waiting"} > 0', timeout=8)
        time.sleep(max(0.0, 4.0 - (time.monotonic() - held)))
        maintenance.rollback()
        return [j.result() for j in jobs]


def _deadlock(conninfo: str, pod: ServiceProcess) -> int:
    """Delete a thread on the pod while a maintenance session locks its rows in the opposite order."""
    with httpx.Client() as client:
        thread = client.post(pod.url + "/threads", json={}).json()["thread_id"]
        assert _run(client, pod.url, {"assistant_id": "support", "input": BILLING}, thread) == 200
        with psycopg.connect(conninfo) as maintenance, psycopg.connect(conninfo, autocommit=True) as watcher, \
                ThreadPoolExecutor(1) as pool:
            # This session waits longer before checking for a deadlock, so the pod's check finds it.
            maintenance.execute("SET deadlock_timeout = '10s'")
            maintenance.execute("SET lock_timeout = 0")
            cur = maintenance.execute("DELETE FROM checkpoint_writes WHERE thread_id = %s", (thread,))
            assert cur.rowcount > 0
            deleting = pool.submit(client.delete, f"{pod.url}/threads/{thread}", timeout=30)
            deadline = time.monotonic() + 10
            # (Polled from another session: pg_stat_activity is a snapshot per transaction.)
            while not watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND query LIKE 'DELETE FROM checkpoint_writes%'").fetchone():
                assert time.monotonic() < deadline, "the pod's delete never waited for the maintenance session"
                time.sleep(0.02)
            # The pod holds the thread row (FOR UPDATE) and waits for the writes; now the other way round.
            maintenance.execute("UPDATE threads SET updated_at = now() WHERE thread_id = %s", (thread,))
            maintenance.rollback()
            status = deleting.result().status_code
        assert client.delete(f"{pod.url}/threads/{thread}").status_code == 204  # the client's retry succeeds
    return status


def _refused_connections(conninfo: str, pods: dict[str, ServiceProcess], prom: Prometheus) -> None:
    """The server out of connection slots while the pods' connections are terminated: the pools'
    reconnects are refused (too many clients) until the slots are given back."""
    held: list[psycopg.Connection[Any]] = []

    def fill() -> None:  # take every free slot (the test's role is a superuser: reserved ones too)
        while len(held) < 1000:
            try:
                held.append(psycopg.connect(conninfo, autocommit=True))
            except psycopg.OperationalError as exc:
                if "too many clients" not in str(exc):
                    raise
                return

    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(2) as pool:
        try:
            fill()
            deadline = time.monotonic() + 60
            while True:
                # The pods' backends go; their pools reconnect at once and the filler takes each slot back.
                held[0].execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND application_name LIKE 'langgraph-service%'")
                fill()
                for pod in pods.values():  # a request makes the pool notice the broken connections
                    pool.submit(client.get, f"{pod.url}/threads/{uuid.uuid4()}")
                if prom.instant('sum(langgraph_db_connections_refused_total{job="langgraph-pg", '
                                'reason="too_many_connections"}) > 0'):
                    break
                assert time.monotonic() < deadline, "the pods' pools were never refused a connection"
                time.sleep(0.5)
        finally:
            for conn in held:  # before the requests are awaited: they wait for these slots
                conn.close()
    for pod in pods.values():
        pod.wait_for("/ready")  # the pools are back


@pytest.fixture(scope="module")
def observed(pg_server: PgServer) -> Iterator[Observed]:
    _require_tools()
    conninfo = pg_server.create_database("obs")
    name = str(conninfo_to_dict(conninfo)["dbname"])
    with psycopg.connect(pg_server.admin, autocommit=True) as admin:
        # What a DBA sets for an application database: bounded lock waits, the default deadlock check.
        admin.execute(sql.SQL("ALTER DATABASE {} SET lock_timeout = '1500ms'").format(sql.Identifier(name)))
        admin.execute(sql.SQL("ALTER DATABASE {} SET deadlock_timeout = '1s'").format(sql.Identifier(name)))
    multiproc = tempfile.mkdtemp(prefix="prom-multiproc-")
    pods = {"pod-a": ServiceProcess(conninfo, LOG_LEVEL="WARNING", RUN_QUEUE_SAMPLE_SECONDS="0.5",
                                    WEBHOOK_ALLOW_LOOPBACK="true"),
            "pod-b": ServiceProcess(conninfo, LOG_LEVEL="WARNING", PROMETHEUS_MULTIPROC_DIR=multiproc,
                                    DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="2", DB_POOL_TIMEOUT="10",
                                    RUN_QUEUE_SAMPLE_SECONDS="0.5", WEBHOOK_ALLOW_LOOPBACK="true")}
    try:
        with pushgateway() as gateway:
            for pod in pods.values():
                pod.start(wait=None)
            for pod in pods.values():
                pod.wait_for("/ready", status=503)  # no schema yet
            targets = {f"127.0.0.1:{pod.port}": {"namespace": NAMESPACE, "pod": name} for name, pod in pods.items()}
            with prometheus(targets, gateway, [ALERTS_FILE]) as prom:
                start = time.time()
                prom.wait_for('count(langgraph_ready{job="langgraph-pg"} == 0) == 2')
                prom.wait_for('langgraph_schema_version{pod="pod-b", component="app"} == -1')

                with psycopg.connect(conninfo, autocommit=True) as holder:
                    holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
                    timed_out = _migrate(conninfo, gateway, "--lock-timeout", "1")
                    assert timed_out.returncode == 8, timed_out.stderr
                    prom.wait_for(f'langgraph_migration_lock_timeouts_total{{instance="{RELEASE}"}} == 1')
                migrated = _migrate(conninfo, gateway)
                assert migrated.returncode == 0, migrated.stderr
                for pod in pods.values():
                    pod.wait_for("/ready")  # what the kubelet's readiness probe does
                prom.wait_for('count(langgraph_ready{job="langgraph-pg"} == 1) == 2')
                prom.wait_for(f'langgraph_migration_last_success_timestamp_seconds{{instance="{RELEASE}"}}')

                _traffic(pods)
                _queue_backlog(pods, prom)
                _cron_and_webhook(pods, prom)
                lock_statuses = _blocking_index_build(conninfo, pods, prom)
                deadlock_status = _deadlock(conninfo, pods["pod-a"])
                _refused_connections(conninfo, pods, prom)
                _traffic(pods)
                time.sleep(3)  # a few more scrapes and rule evaluations
                observed = Observed(prom, start, time.time(), pods, deadlock_status=deadlock_status,
                                    lock_timeout_statuses=lock_statuses)
                for name, pod in pods.items():
                    observed.scrapes[name] = httpx.get(pod.url + "/metrics").text
                yield observed
    finally:
        for pod in pods.values():
            pod.stop()
        shutil.rmtree(multiproc, ignore_errors=True)
        pg_server.drop_database(conninfo)


def _sample(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _evaluate(observed: Observed, query: Any) -> int:
    expr = substitute(query.expr, VARIABLES)
    if query.instant:
        return finite_points(observed.prom.instant(expr, at=observed.end))
    return finite_points(observed.prom.range(expr, observed.start, observed.end))


class TestDashboardAndAlerts:
    def test_should_return_data_for_every_dashboard_panel_query(self, observed: Observed) -> None:
        queries = panel_queries()
        assert len(queries) >= 30
        empty = [q.source for q in queries if _evaluate(observed, q) == 0]
        assert not empty, f"{len(empty)} of {len(queries)} panel queries returned no data: {empty}"

    def test_should_return_data_for_every_alert_expression(self, observed: Observed) -> None:
        queries = alert_queries()
        assert len(queries) >= 7
        empty = [q.source for q in queries if _evaluate(observed, q) == 0]
        assert not empty, f"{len(empty)} of {len(queries)} alert expressions were never true: {empty}"

    def test_should_resolve_every_dashboard_variable(self, observed: Observed) -> None:
        for query in variable_queries():
            inner = query.expr.removeprefix("label_values(").removesuffix(")")
            selector, label = (part.strip() for part in inner.rsplit(",", 1))
            values = observed.prom.api(f"label/{label}/values", **{"match[]": substitute(selector, VARIABLES)})
            assert values, query.source

    def test_should_evaluate_every_alert_rule_without_error(self, observed: Observed) -> None:
        rules = [r for g in observed.prom.api("rules")["groups"] for r in g["rules"]]
        assert len(rules) == len(alert_queries())
        assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]


class TestForcedIncidents:
    def test_should_count_the_deadlock_on_the_pod_that_lost(self, observed: Observed) -> None:
        assert observed.deadlock_status == 503
        text = observed.scrapes["pod-a"]
        assert _sample(text, "langgraph_db_deadlocks_total") == 1
        assert _sample(text, "langgraph_checkpoint_errors_total", operation="delete_thread", error="deadlock") == 1
        assert _sample(observed.scrapes["pod-b"], "langgraph_db_deadlocks_total") == 0

    def test_should_count_lock_timeouts_and_pool_waits(self, observed: Observed) -> None:
        for name in ("pod-a", "pod-b"):
            text = observed.scrapes[name]
            lock_timeouts = _sample(text, "langgraph_db_lock_timeouts_total")
            by_operation = _sample(text, "langgraph_checkpoint_errors_total", error="lock_timeout")
            assert lock_timeouts >= 1 and by_operation >= 1, name
            assert lock_timeouts >= by_operation  # every checkpoint lock timeout is a database one
        slow_waits = _sample(observed.scrapes["pod-b"], "langgraph_db_pool_wait_seconds_count") - _sample(
            observed.scrapes["pod-b"], "langgraph_db_pool_wait_seconds_bucket", le="0.1")
        assert slow_waits >= 1  # runs queued for one of pod-b's two connections

    def test_should_count_runs_by_status(self, observed: Observed) -> None:
        texts = observed.scrapes.values()
        for status in ("success", "interrupted", "error", "rejected"):
            assert sum(_sample(t, "langgraph_runs_total", status=status) for t in texts) >= 1, status


class TestExposition:
    @pytest.mark.parametrize("pod", ["pod-a", "pod-b"])
    def test_should_pass_promtool_check_metrics(self, observed: Observed, pod: str) -> None:
        result = subprocess.run(["promtool", "check", "metrics"], input=observed.scrapes[pod], text=True,
                                capture_output=True, timeout=30, check=False)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_should_pass_promtool_check_rules(self, observed: Observed) -> None:
        result = subprocess.run(["promtool", "check", "rules", str(ALERTS_FILE)], text=True, capture_output=True,
                                timeout=30, check=False)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_should_label_http_metrics_with_route_templates_only(self, observed: Observed) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        paths = {s.labels["path"] for t in observed.scrapes.values() for f in text_string_to_metric_families(t)
                 for s in f.samples if s.name == "litestar_requests_total"}
        assert {"/threads/{thread_id}/runs/wait", "/threads/{thread_id}", "/runs/wait"} <= paths
        assert all("{" in p or p.count("/") == 1 or p.startswith("/runs/") for p in paths), paths


class TestDocumentation:
    def test_should_render_the_key_panels_from_range_queries(self, observed: Observed, tmp_path: Path) -> None:
        pytest.importorskip("matplotlib", reason="LOUD SKIP: matplotlib is not installed (dev extra)")
        out = tmp_path / "dashboard.png"
        lines = render(observed.prom, observed.start, observed.end, VARIABLES, out)
        assert lines >= 9 and out.stat().st_size > 20_000
        target = os.environ.get("OBSERVABILITY_PNG")
        if target:
            shutil.copyfile(out, ROOT / target)


def test_thread_ids_never_become_label_values(observed: Observed) -> None:
    """No label value of any exported series looks like a thread or run id (a UUID)."""
    from prometheus_client.parser import text_string_to_metric_families

    for text in observed.scrapes.values():
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                for value in sample.labels.values():
                    try:
                        uuid.UUID(value.strip("/").split("/")[-1])
                    except ValueError:
                        continue
                    raise AssertionError(f"{sample.name} carries an id: {sample.labels}")
