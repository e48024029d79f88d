"""The chart's rendered manifests, run as Kubernetes would run them, through an install, a rolling
upgrade and a rollback under continuous traffic (tests/support/localkube.py plays the cluster)."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from service import schema
from service.db import to_url
from tests.support.localkube import Deployment, Manifests, Service, render, run_job

APPROVED = "Approved: past performance does not promise future returns."


def chart_values(conninfo: str, revision: int, pre_stop: int = 2) -> dict[str, Any]:
    url = to_url(conninfo)
    return {
        "database": {"url": url, "migrateUrl": url},
        "replicaCount": 2,
        # Shorter than the defaults so the test is quick; the mechanics are the same.
        "shutdown": {"preStopSleepSeconds": pre_stop, "drainTimeoutSeconds": 10},
        "probes": {"readiness": {"periodSeconds": 1, "failureThreshold": 1}, "startup": {"periodSeconds": 1}},
        "image": {"tag": f"rev{revision}"},
        "podAnnotations": {"example.com/revision": str(revision)},
    }


def summary(output: str) -> dict[str, Any]:
    lines = [json.loads(x) for x in output.splitlines() if '"migration_finished"' in x]
    assert len(lines) == 1, output
    return lines[0]  # type: ignore[no-any-return]


@dataclass
class Traffic:
    """Conversations with an interrupt and a resume, each request to a ready endpoint."""

    service: Service
    workers: int = 3
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    threads: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_sent(self, count: int, timeout: float = 120) -> None:
        """Until ``count`` requests have been sent (and none failed: a failure ends the wait)."""
        deadline = time.monotonic() + timeout
        while self.sent < count and not self.failures:
            assert time.monotonic() < deadline, f"{self.sent} of {count} requests sent in {timeout} s"
            time.sleep(0.05)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        url = self.service.endpoint()
        with self._lock:
            self.sent += 1
        try:
            # A new connection per request: the Service balances connections, as kube-proxy does.
            response = httpx.request(method, url + path, json=body, timeout=30, headers={"connection": "close"})
        except httpx.HTTPError as exc:
            raise AssertionError(f"{method} {path} via {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path} via {url}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def conversation(self, n: int) -> None:
        thread_id = self.request("POST", "/threads", {"graph_id": "support", "metadata": {"load": n}})["thread_id"]
        ask = "Can you guarantee returns on my investment?"
        paused = self.request("POST", f"/threads/{thread_id}/runs/wait",
                              {"assistant_id": "support", "input": {"messages": [{"role": "user", "content": ask}]}})
        assert len(paused["messages"]) == 1, paused
        assert self.request("GET", f"/threads/{thread_id}")["status"] == "interrupted"
        self.request("POST", f"/threads/{thread_id}/state", {"values": {"approved_reply": APPROVED}})
        resumed = self.request("POST", f"/threads/{thread_id}/runs/wait", {"assistant_id": "support", "input": None})
        assert resumed["messages"][-1]["content"] == APPROVED, resumed
        follow_up = "My invoice is wrong"
        final = self.request("POST", f"/threads/{thread_id}/runs/wait", {
            "assistant_id": "support", "input": {"messages": [{"role": "user", "content": follow_up}]}})
        assert "billing" in final["messages"][-1]["content"], final
        with self._lock:
            self.threads[thread_id] = [("human", ask), ("ai", APPROVED), ("human", follow_up),
                                       ("ai", final["messages"][-1]["content"])]

    def _worker(self, w: int) -> None:
        n = 0
        while not self._stop.is_set() and n < 500:
            n += 1
            try:
                self.conversation(w * 1000 + n)
            except AssertionError as exc:
                with self._lock:
                    self.failures.append(str(exc))

    @classmethod
    @contextmanager
    def running(cls, service: Service) -> Iterator[Traffic]:
        traffic = cls(service)
        pool = [threading.Thread(target=traffic._worker, args=(w,)) for w in range(traffic.workers)]
        for t in pool:
            t.start()
        try:
            yield traffic
        finally:
            traffic._stop.set()
            for t in pool:
                t.join(60)


def assert_histories(conninfo: str, service: Service, expected: dict[str, list[tuple[str, str]]]) -> None:
    url = service.endpoint()
    for thread_id, messages in expected.items():
        state = httpx.get(f"{url}/threads/{thread_id}/state", timeout=10).json()
        assert [(m["type"], m["content"]) for m in state["values"]["messages"]] == messages, thread_id
    with psycopg.connect(conninfo) as conn:
        busy = conn.execute("SELECT count(*) FROM threads WHERE status = 'busy'").fetchone()
    assert busy == (0,)


def install(conninfo: str, pre_stop: int = 2) -> tuple[Manifests, Service, Deployment]:
    manifests = render(chart_values(conninfo, 1, pre_stop))
    hooks = manifests.hook_jobs("pre-install")
    assert [j["metadata"]["name"] for j in hooks] == ["rel-langgraph-pg-migrate"]
    result = run_job(hooks[0], manifests)
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout)["outcome"] == "applied"
    service = Service()
    deployment = Deployment(service)
    deployment.create(manifests, 1)
    return manifests, service, deployment


class TestRollout:
    def test_should_upgrade_and_roll_back_under_traffic_without_failing_a_request(self, fresh_db: str) -> None:
        first, service, deployment = install(fresh_db)
        try:
            with Traffic.running(service) as traffic:
                traffic.wait_sent(30)
                # helm upgrade: the pre-upgrade hook runs the migration before the Deployment changes.
                second = render(chart_values(fresh_db, 2), upgrade=True)
                (hook,) = second.hook_jobs("pre-upgrade")
                result = run_job(hook, second)
                assert result.returncode == 0, result.stderr
                assert summary(result.stdout)["outcome"] == "current"
                codes = deployment.rolling_update(second, 2)
                assert all(c in (0, -15) for c in codes), codes
                traffic.wait_sent(traffic.sent + 20)  # traffic on the new pods

                # A later release migrated the schema further; then the operator rolls back to
                # revision 1, whose pods must serve against the newer schema (no hook runs).
                with psycopg.connect(fresh_db, autocommit=True) as conn:
                    for component in schema.COMPONENTS:
                        conn.execute(f"INSERT INTO {component.table} (v) VALUES ({component.required_version + 1})")
                assert not first.hook_jobs("pre-rollback")
                codes = deployment.rolling_update(first, 3)
                assert all(c in (0, -15) for c in codes), codes
                traffic.wait_sent(traffic.sent + 20)

            assert traffic.failures == [], traffic.failures[:5]
            assert traffic.sent > 50, traffic.sent
            assert len(traffic.threads) > 10
            assert_histories(fresh_db, service, traffic.threads)
            live = [p for p in deployment.pods if not p.terminating]
            assert len(live) == 2 and all(p.name.startswith("rev3-") for p in live)
            for pod in deployment.pods:
                assert "Traceback" not in pod.logs()
                assert "killed after the grace period" not in pod.events
            print(f"\nrollout: {traffic.sent} requests, {len(traffic.failures)} failed, "
                  f"{len(traffic.threads)} threads checked, pods {[p.name for p in deployment.pods]}")
        finally:
            deployment.stop()

    def test_should_see_failed_requests_when_prestop_is_shorter_than_endpoint_propagation(
        self, fresh_db: str
    ) -> None:
        # The same rollout with preStopSleepSeconds 0: SIGTERM closes the listener while the
        # Service still sends new connections there. Proves the zero-failure test can fail.
        _, service, deployment = install(fresh_db, pre_stop=0)
        try:
            with Traffic.running(service) as traffic:
                traffic.wait_sent(10)
                deployment.rolling_update(render(chart_values(fresh_db, 2, pre_stop=0), upgrade=True), 2)
            assert traffic.failures, f"{traffic.sent} requests and none failed without a preStop sleep"
            assert any("ConnectError" in f for f in traffic.failures), traffic.failures[:3]
        finally:
            deployment.stop()

    def test_should_let_two_upgrade_hooks_race_on_an_empty_database(self, fresh_db: str) -> None:
        manifests = render(chart_values(fresh_db, 2), upgrade=True)
        (hook,) = manifests.hook_jobs("pre-upgrade")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: run_job(hook, manifests), range(2)))
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
        outcomes = sorted(summary(r.stdout)["outcome"] for r in results)
        assert outcomes == ["applied", "current"]

    def test_should_never_run_ddl_from_the_pods(self, fresh_db: str) -> None:
        manifests = render(chart_values(fresh_db, 1))
        service = Service()
        deployment = Deployment(service)
        pod = deployment._new_pod(manifests, 1)  # no hook has run: the schema is missing
        try:
            pod.wait_started(120)  # the startup probe (/ok) passed ...
            assert httpx.get(pod.url + "/ready", timeout=10).status_code == 503  # ... readiness cannot
            assert not pod.ready
            with psycopg.connect(fresh_db) as conn:
                tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
            assert tables == (0,)
            (hook,) = manifests.hook_jobs("pre-install")
            assert run_job(hook, manifests).returncode == 0
            pod.wait_ready(30)  # the same pod becomes ready once the job has migrated
        finally:
            deployment.stop()


@pytest.fixture(autouse=True)
def _needs_helm() -> None:
    from tests.chart.conftest import helm_binary

    helm_binary()
