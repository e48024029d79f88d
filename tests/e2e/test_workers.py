"""Several worker processes in one pod (WEB_CONCURRENCY): one port, metrics summed over the workers.

Each worker is its own process with its own pool, run workers and metrics; its runs carry its own
``pod`` (host/pid) in the runs table, which is how the test knows both served. With
``PROMETHEUS_MULTIPROC_DIR`` every worker's ``/metrics`` reads all workers' files: whichever
worker answers the scrape, the counters are the pod's totals. Each worker ran fewer runs than the
pod, so a per-process registry (the naive setup) could not show the total. A real Prometheus
scraping the pod's port reads the total too.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
import psycopg

from tests.observability.prom import prometheus
from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess
from tests.support.services import free_port

QUESTION = {"messages": [{"role": "user", "content": "My invoice shows the wrong amount"}]}
RUNS_SUCCESS = re.compile(r'^langgraph_runs_total\{graph="support",status="success"\} ([0-9.e+]+)$', re.M)


async def runs_batch(url: str, count: int) -> list[int]:
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(*(client.post(
            f"{url}/threads/{uuid.uuid4()}/runs/wait",
            json={"assistant_id": "support", "input": QUESTION, "if_not_exists": "create"},
            headers={"Connection": "close"},  # a new connection each: the kernel spreads them over the workers
        ) for _ in range(count)))
    return [r.status_code for r in responses]


def runs_by_pod(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT pod, count(*) FROM runs WHERE status = 'success' GROUP BY pod").fetchall()
    return {str(pod): int(n) for pod, n in rows}


class TestWorkers:
    def test_should_serve_from_two_workers_and_sum_their_metrics(self, migrated_db: str) -> None:
        pod = ServiceProcess(migrated_db, WEB_CONCURRENCY="2").start()
        try:
            deadline = time.monotonic() + 90
            while True:
                assert set(asyncio.run(runs_batch(pod.url, 8))) == {200}
                by_pod = runs_by_pod(migrated_db)
                if len(by_pod) >= 2:
                    break
                assert time.monotonic() < deadline, f"one worker served every run: {by_pod}"
            assert len(by_pod) == 2, by_pod
            total = sum(by_pod.values())
            assert all(n < total for n in by_pod.values())  # no single worker's own counter reads the total
            for _ in range(8):  # new connections: both workers answer scrapes
                text = httpx.get(pod.url + "/metrics", headers={"Connection": "close"}, timeout=10).text
                match = RUNS_SUCCESS.search(text)
                assert match is not None, text[:2000]
                assert float(match.group(1)) == total
            # A real Prometheus scraping the pod's one port reads the same total.
            with prometheus({pod.url.removeprefix("http://"): {"pod": "p"}}, None, []) as prom:
                result = prom.wait_for('langgraph_runs_total{graph="support",status="success"}', timeout=30)
                assert [float(r["value"][1]) for r in result] == [total]
        finally:
            pod.stop()

    def test_should_serve_the_summed_metrics_on_the_metrics_port(self, migrated_db: str) -> None:
        """METRICS_PORT with two workers: the supervisor serves the pod's sums there, the API port none."""
        metrics_port = free_port()
        pod = ServiceProcess(migrated_db, WEB_CONCURRENCY="2", METRICS_PORT=str(metrics_port)).start()
        try:
            deadline = time.monotonic() + 90
            while len(by_pod := runs_by_pod(migrated_db)) < 2:
                assert set(asyncio.run(runs_batch(pod.url, 8))) == {200}
                assert time.monotonic() < deadline, f"one worker served every run: {by_pod}"
            total = sum(by_pod.values())
            assert httpx.get(pod.url + "/metrics", timeout=10).status_code == 404
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            match = RUNS_SUCCESS.search(text)
            assert match is not None, text[:2000]
            assert float(match.group(1)) == total
        finally:
            pod.stop()

    def test_should_drain_a_run_in_flight_on_sigterm(self, migrated_db: str) -> None:
        pod = ServiceProcess(migrated_db, WEB_CONCURRENCY="2").start()
        result: dict[str, Any] = {}
        thread_id = str(uuid.uuid4())

        def run() -> None:
            response = httpx.post(f"{pod.url}/threads/{thread_id}/runs/wait", timeout=30, json={
                "assistant_id": "slow", "if_not_exists": "create",
                "input": {"messages": [{"role": "user", "content": "hi"}], "delay": 2}})
            result["status"], result["body"] = response.status_code, response.json()

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 60
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            while not conn.execute("SELECT 1 FROM runs WHERE thread_id = %s AND status = 'running'",
                                   (thread_id,)).fetchone():
                assert time.monotonic() < deadline, "the run never started"
                time.sleep(0.05)
        pod.signal(signal.SIGTERM)
        t.join()
        code = pod.stop()
        assert result["status"] == 200, result
        assert result["body"]["messages"][-1]["content"] == "done: hi"
        assert code in (0, -signal.SIGTERM)
        logs = pod.logs()
        assert logs.count("database_pool_closed") == 2  # both workers shut down cleanly
        assert "draining" in logs
        assert logs.index("run_finished") < logs.rindex("database_pool_closed")

    def test_should_refuse_a_bad_worker_count_in_one_line(self) -> None:
        for value in ("two", "0", "65"):
            done = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True,
                                  timeout=60, env=python_env(WEB_CONCURRENCY=value, CHECKPOINTER="memory"))
            assert done.returncode == 2
            assert done.stderr.strip().splitlines() == [
                f"service: error: WEB_CONCURRENCY must be a whole number from 1 to 64, got {value!r}"]
            assert "Traceback" not in done.stdout + done.stderr
