"""Faults under continuous load on two pods: nothing acknowledged is lost, nothing hangs, no 500."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from migrate.runner import Options, run
from service import schema
from tests.support.load import Load
from tests.support.pg import PgServer
from tests.support.service import ServiceProcess
from tests.support.services import scrape
from tests.support.tcpproxy import proxy_for

FAULT_ENV = {"DB_POOL_TIMEOUT": "2", "DB_STATEMENT_TIMEOUT": "5", "DB_IO_TIMEOUT": "3", "DB_CONNECT_TIMEOUT": "2",
             "RUN_LEASE_SECONDS": "3"}


@pytest.fixture
def pods(migrated_db: str) -> Iterator[list[ServiceProcess]]:
    started = [ServiceProcess(migrated_db, **FAULT_ENV) for _ in range(2)]
    for p in started:
        p.start(wait=None)
    try:
        for p in started:
            p.wait_for("/ready")
        yield started
    finally:
        for p in started:
            p.stop()


def assert_only_unavailable(load: Load, bound: float) -> None:
    """Failures are 503 with Retry-After, answered within ``bound`` seconds; never a 500."""
    for call in load.failed():
        assert call.status == 503, call
        assert call.retry_after, call
        assert "application/problem" in call.problem or call.problem.startswith("{"), call
        assert call.seconds < bound, call


def report(fault: str, load: Load, lost: list[str], detail: str) -> None:
    print(f"\nfault {fault}: {len(load.calls)} requests, {len(load.failed())} failed "
          f"(statuses {sorted({c.status for c in load.failed()})}), runs acknowledged "
          f"{sum(len(v) for v in load.acknowledged.values())}, lost {len(lost)}; {detail}")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)


def ready_status(pod: ServiceProcess) -> int:
    try:
        return httpx.get(pod.url + "/ready", timeout=10).status_code
    except httpx.HTTPError:
        return 0


def wait_ready(pods: list[ServiceProcess], timeout: float) -> float:
    started = time.monotonic()
    for p in pods:
        p.wait_for("/ready", timeout=timeout)
    return time.monotonic() - started


class TestDatabaseRestart:
    def test_should_answer_503_during_a_restart_and_serve_again_without_a_pod_restart(
        self, pg_server: PgServer, pods: list[ServiceProcess]
    ) -> None:
        if pg_server.embedded is None:
            pytest.skip("needs the embedded server, which the test restarts")
        load = Load([p.url for p in pods]).start()
        try:
            wait_until(lambda: load.ok_count() > 5, "load warmed up")
            before = load.ok_count()
            pg_server.embedded.stop("fast")
            stopped_at = len(load.calls)
            # Down until both pods say so and the load has met the outage.
            wait_until(lambda: all(ready_status(p) == 503 for p in pods), "pods notice the database is down")
            wait_until(lambda: any(c.status >= 400 or c.status == 0 for c in load.calls[stopped_at:]),
                       "a request meets the outage")
            pg_server.embedded.start()
            recovered_in = wait_ready(pods, timeout=60)
            after_restart = len(load.calls)
            wait_until(lambda: sum(1 for c in load.calls[after_restart:] if 0 < c.status < 400) > 5,
                       "serving again after the restart")
        finally:
            load.stop()
        assert before > 5
        assert load.failed(), "the outage was not noticed at all"
        assert_only_unavailable(load, bound=2 + 3 + 5)
        assert load.ok_count() > before + 5 and any(0 < c.status < 400 for c in load.calls[after_restart:])
        assert recovered_in < 15
        lost = load.lost(pods[0].url)
        report("database restart", load, lost, f"ready again {recovered_in:.1f} s after the restart")
        assert lost == []
        assert all(p.proc is not None and p.proc.poll() is None for p in pods)  # no pod restarted


class TestKilledConnections:
    def test_should_recover_when_every_pool_connection_is_terminated(
        self, migrated_db: str, pods: list[ServiceProcess]
    ) -> None:
        load = Load([p.url for p in pods]).start()
        try:
            wait_until(lambda: load.ok_count() > 5, "load warmed up")
            with psycopg.connect(migrated_db, autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'langgraph-service:%'"
                ).fetchone()
            mark = len(load.calls)
            wait_until(lambda: sum(1 for c in load.calls[mark:] if 0 < c.status < 400) > 5,
                       "serving on new connections")
        finally:
            load.stop()
        assert killed is not None and killed[0] >= 2
        assert_only_unavailable(load, bound=10)
        # Only requests in flight at that moment may fail: at most one per worker.
        assert len(load.failed()) <= load.workers, load.failed()
        assert sum(1 for c in load.calls[mark:] if 0 < c.status < 400) > 5
        lost = load.lost(pods[0].url)
        report("all pool connections terminated", load, lost, f"{killed[0]} backends killed")
        assert lost == []


class TestStalledNetwork:
    def test_should_bound_latency_and_count_failures_when_the_network_stalls(self, migrated_db: str) -> None:
        with proxy_for(migrated_db) as proxy:
            pods = [ServiceProcess(proxy.conninfo(migrated_db), **FAULT_ENV) for _ in range(2)]
            for p in pods:
                p.start(wait=None)
            try:
                for p in pods:
                    p.wait_for("/ready")
                load = Load([p.url for p in pods]).start()
                try:
                    wait_until(lambda: load.ok_count() > 5, "load warmed up")
                    before = load.ok_count()
                    proxy.stall()  # packets stop flowing; no connection is closed
                    stalled_at = len(load.calls)
                    time.sleep(6)
                    ready = [httpx.get(p.url + "/ready", timeout=30).status_code for p in pods]
                    proxy.resume()
                    recovered_in = wait_ready(pods, timeout=60)
                    resumed = len(load.calls)
                    wait_until(lambda: sum(1 for c in load.calls[resumed:] if 0 < c.status < 400) >= 10,
                               "serving after the stall")
                finally:
                    load.stop()
                during = load.calls[stalled_at:]
                metrics = [scrape(p.url + "/metrics") for p in pods]
                lost = load.lost(pods[0].url)
            finally:
                for p in pods:
                    p.stop()
        assert before > 5 and ready == [503, 503]
        assert load.failed(), "the stall was not noticed"
        # DB_IO_TIMEOUT 3 s, DB_POOL_TIMEOUT 2 s: no call waits on a stalled network for long.
        assert_only_unavailable(load, bound=3 + 2 + 2)
        assert max(c.seconds for c in during) < 3 + 2 + 2
        answered_503 = sum(v for m in metrics for labels, v in m.get("litestar_requests_total", [])
                           if labels.get("status_code") == "503")
        assert answered_503 >= len(load.failed())  # every failure is counted in the metrics
        assert any(0 < c.status < 400 for c in load.calls[-10:])
        report("stalled network", load, lost,
               f"slowest call {max(c.seconds for c in during):.2f} s during the 6 s stall; "
               f"ready again {recovered_in:.1f} s after it ended")
        assert lost == []


class TestMigrationUnderTraffic:
    @staticmethod
    def _with_extra_step(monkeypatch: pytest.MonkeyPatch) -> str:
        """A next release's migration: a step that needs ACCESS EXCLUSIVE on a hot table."""
        step = "ALTER TABLE threads ADD COLUMN IF NOT EXISTS archived_at timestamptz"
        components = tuple(
            schema.Component(c.name, c.table, (*c.steps, step), c.creates_own_table) if c.name == "app" else c
            for c in schema.COMPONENTS
        )
        monkeypatch.setattr(schema, "COMPONENTS", components)
        return step

    @staticmethod
    def _long_reader(conninfo: str, seconds: float, started: threading.Event) -> None:
        # A long report query holds ACCESS SHARE on threads: the ALTER must wait for it.
        with psycopg.connect(conninfo) as conn:
            conn.execute("SELECT count(*) FROM threads")
            started.set()
            time.sleep(seconds)

    def _migrate_under_traffic(self, migrated_db: str, pods: list[ServiceProcess],
                               ddl_lock_timeout: float) -> tuple[Load, Any, float]:
        started = threading.Event()
        reader = threading.Thread(target=self._long_reader, args=(migrated_db, 6, started))
        load = Load([p.url for p in pods]).start()
        try:
            wait_until(lambda: load.ok_count() >= 3, "load warmed up")
            reader.start()
            started.wait(10)
            t0 = time.monotonic()
            report = run(Options(conninfo=migrated_db, ddl_lock_timeout=ddl_lock_timeout, ddl_retries=30,
                                 components=schema.COMPONENTS))  # as patched by _with_extra_step
            took = time.monotonic() - t0
            landed = load.ok_count()
            wait_until(lambda: load.ok_count() >= landed + 3, "serving after the migration")
        finally:
            load.stop()
            reader.join()
        return load, report, took

    def test_should_never_block_requests_longer_than_the_jobs_lock_timeout(
        self, migrated_db: str, pods: list[ServiceProcess], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self._with_extra_step(monkeypatch)
        load, report_, took = self._migrate_under_traffic(migrated_db, pods, ddl_lock_timeout=0.5)
        assert report_.steps_applied == [f"app:v{len(schema.APP_MIGRATIONS)}"] and report_.ddl_retries >= 1
        assert took > 4  # it waited out the long reader, retrying
        assert load.failed() == []
        slowest = max(c.seconds for c in load.calls)
        report("ACCESS EXCLUSIVE migration under traffic", load, [],
               f"{report_.ddl_retries} DDL retries over {took:.1f} s, slowest request {slowest:.2f} s")
        assert slowest < 0.5 + 1.5, slowest  # queued behind the ALTER for at most its lock_timeout

    def test_should_block_requests_without_a_lock_timeout(
        self, migrated_db: str, pods: list[ServiceProcess], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The control: the same migration with a lock_timeout far above the reader's 6 s queues
        # every request behind the ALTER, which is what the job's default prevents.
        self._with_extra_step(monkeypatch)
        load, report, _ = self._migrate_under_traffic(migrated_db, pods, ddl_lock_timeout=60)
        assert report.ddl_retries == 0
        assert max(c.seconds for c in load.calls) > 3
