"""Durable runs on the PostgreSQL queue, across separate service processes, with the official SDK.

Background runs created on one pod are joined and streamed from others while they run; streams
resume after a cut with Last-Event-ID; cancels reach the executing pod; a killed pod's run is taken
over; runs of one thread execute one at a time in creation order. Directly and through PgBouncer
in transaction mode (no LISTEN there: the pods poll).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import ConflictError, NotFoundError

from service.db import to_url
from tests.support.jsclient import run_js
from tests.support.pgbouncer import pgbouncer
from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess

LIMIT = {"recursion_limit": 10_000}
DEADLINE = 60.0


@pytest.fixture(params=["direct", "pgbouncer"])
def three_pods(request: pytest.FixtureRequest, migrated_db: str) -> Iterator[list[ServiceProcess]]:
    with ExitStack() as stack:
        conninfo, env = migrated_db, {}
        if request.param == "pgbouncer":
            conninfo, env = stack.enter_context(pgbouncer(migrated_db, pool_size=20)), {"PGBOUNCER": "true"}
        pods = [ServiceProcess(conninfo, **env) for _ in range(3)]
        for pod in pods:
            stack.callback(pod.stop)
            pod.start(wait=None)
        for pod in pods:
            pod.wait_for("/ready")
        yield pods


def eventually(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {value!r})")
        time.sleep(0.05)


def sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse an SSE response into {event, data, id} dicts (comments skipped)."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(": ")
            event[key] = json.loads(value) if key == "data" else value


def ticks_of(client: Any, thread_id: str) -> int:
    return int(client.threads.get_state(thread_id)["values"].get("ticks", 0))


class TestBackgroundRuns:
    def test_should_join_and_stream_from_other_pods_a_run_executing_on_one(
        self, three_pods: list[ServiceProcess]
    ) -> None:
        a, b, c = (get_sync_client(url=p.url) for p in three_pods)
        thread_id = a.threads.create()["thread_id"]
        run = a.runs.create(thread_id, "ticker", input={"until": 30, "delay": 0.05}, config=LIMIT,
                            stream_mode="values")
        assert run["status"] in ("pending", "running")
        assert b.runs.get(thread_id, run["run_id"])["run_id"] == run["run_id"]

        streamed = [part for part in c.runs.join_stream(thread_id, run["run_id"])]
        joined = b.runs.join(thread_id, run["run_id"])

        assert joined["ticks"] == 30
        values = [p.data["ticks"] for p in streamed if p.event == "values" and "ticks" in p.data]
        assert values == sorted(values) and values[-1] == 30
        assert streamed[0].event == "metadata" and streamed[0].data["run_id"] == run["run_id"]
        assert c.runs.get(thread_id, run["run_id"])["status"] == "success"
        assert a.threads.get(thread_id)["status"] == "idle"
        assert [r["run_id"] for r in b.runs.list(thread_id)] == [run["run_id"]]

    def test_should_resume_a_cut_stream_with_last_event_id_missing_nothing(
        self, three_pods: list[ServiceProcess]
    ) -> None:
        a, b, c = three_pods
        client = get_sync_client(url=a.url)
        thread_id = client.threads.create()["thread_id"]
        run = client.runs.create(thread_id, "ticker", input={"until": 40, "delay": 0.05}, config=LIMIT,
                                 stream_mode=["values", "updates"], stream_resumable=True)
        url = f"/threads/{thread_id}/runs/{run['run_id']}/stream"
        first: list[dict[str, Any]] = []
        with httpx.Client(base_url=c.url, timeout=30) as http, http.stream("GET", url) as response:
            assert response.status_code == 200
            for event in sse(response):
                first.append(event)
                if len(first) == 8:
                    break  # the client goes away mid-run
        with httpx.Client(base_url=b.url, timeout=60) as http, \
                http.stream("GET", url, headers={"Last-Event-ID": first[-1]["id"]}) as response:
            rest = list(sse(response))
        with httpx.Client(base_url=c.url, timeout=60) as http, http.stream("GET", url) as response:
            replay = list(sse(response))  # the whole stream again, after the end

        ids = [int(e["id"]) for e in first + rest]
        assert ids == list(range(1, len(ids) + 1)), "every event exactly once, in order"
        assert [e["id"] for e in replay] == [e["id"] for e in first + rest]
        assert [e["data"] for e in replay] == [e["data"] for e in first + rest]
        assert [e["data"].get("ticks") for e in first + rest if e["event"] == "values"][-1] == 40

    def test_should_cancel_from_one_pod_a_run_executing_on_another(self, three_pods: list[ServiceProcess]) -> None:
        a, b, _ = (get_sync_client(url=p.url) for p in three_pods)
        thread_id = a.threads.create()["thread_id"]
        run = a.runs.create(thread_id, "ticker", input={"until": 10_000, "delay": 0.05}, config=LIMIT)
        eventually(lambda: ticks_of(b, thread_id) >= 3, "the run is under way")

        b.runs.cancel(thread_id, run["run_id"], wait=True)

        assert b.runs.get(thread_id, run["run_id"])["status"] == "interrupted"
        assert a.threads.get(thread_id)["status"] == "idle"
        stopped_at = ticks_of(a, thread_id)
        assert 3 <= stopped_at < 10_000
        after = b.runs.wait(thread_id, "ticker", input={"until": stopped_at + 2, "delay": 0}, config=LIMIT)
        assert after["ticks"] == stopped_at + 2  # the thread moved on from where the run stopped

    def test_should_roll_back_a_cancelled_run_leaving_no_trace(self, three_pods: list[ServiceProcess]) -> None:
        a, b, _ = (get_sync_client(url=p.url) for p in three_pods)
        thread_id = a.threads.create()["thread_id"]
        a.runs.wait(thread_id, "ticker", input={"until": 2, "delay": 0}, config=LIMIT)
        run = a.runs.create(thread_id, "ticker", input={"ticks": 0, "until": 10_000, "delay": 0.05}, config=LIMIT)
        eventually(lambda: b.runs.get(thread_id, run["run_id"])["status"] == "running", "running")
        eventually(lambda: any(h["metadata"].get("run_id") == run["run_id"]
                               for h in b.threads.get_history(thread_id, limit=50)), "a checkpoint of the run")

        b.runs.cancel(thread_id, run["run_id"], wait=True, action="rollback")

        with pytest.raises(NotFoundError):
            b.runs.get(thread_id, run["run_id"])
        history = b.threads.get_history(thread_id, limit=500)
        assert all(h["metadata"].get("run_id") != run["run_id"] for h in history)
        assert b.threads.get_state(thread_id)["values"]["ticks"] == 2
        assert b.threads.get(thread_id)["status"] == "idle"

    @pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
    def test_should_stop_the_running_run_for_a_new_one_by_multitask_strategy(
        self, three_pods: list[ServiceProcess], strategy: str
    ) -> None:
        a, b, _ = (get_sync_client(url=p.url) for p in three_pods)
        thread_id = a.threads.create()["thread_id"]
        first = a.runs.create(thread_id, "ledger", input={"tag": "first", "delay": 600})
        eventually(lambda: a.runs.get(thread_id, first["run_id"])["status"] == "running", "first is running")

        second = b.runs.create(thread_id, "ledger", input={"tag": "second", "delay": 0},
                               multitask_strategy=strategy)
        result = b.runs.join(thread_id, second["run_id"])

        assert result["log"] == ["second"]
        assert b.runs.get(thread_id, second["run_id"])["status"] == "success"
        if strategy == "interrupt":
            assert a.runs.get(thread_id, first["run_id"])["status"] == "interrupted"
        else:
            with pytest.raises(NotFoundError):
                a.runs.get(thread_id, first["run_id"])

    def test_should_reject_a_run_on_a_busy_thread_with_409(self, three_pods: list[ServiceProcess]) -> None:
        a, b, _ = (get_sync_client(url=p.url) for p in three_pods)
        thread_id = a.threads.create()["thread_id"]
        a.runs.create(thread_id, "ledger", input={"tag": "first", "delay": 600})
        with pytest.raises(ConflictError):
            b.runs.create(thread_id, "ledger", input={"tag": "second"}, multitask_strategy="reject")
        b.runs.cancel_many(thread_id=thread_id, run_ids=[r["run_id"] for r in b.runs.list(thread_id)])
        eventually(lambda: b.runs.list(thread_id)[0]["status"] == "interrupted", "cancelled")

    def test_should_run_twenty_runs_of_one_thread_one_at_a_time_in_creation_order(
        self, three_pods: list[ServiceProcess]
    ) -> None:
        clients = [get_sync_client(url=p.url) for p in three_pods]
        thread_id = clients[0].threads.create()["thread_id"]
        tags = [f"r{i:02d}" for i in range(20)]
        runs = [clients[i % 3].runs.create(thread_id, "ledger", input={"tag": tag, "delay": 0.05})
                for i, tag in enumerate(tags)]

        final = clients[1].runs.join(thread_id, runs[-1]["run_id"])

        assert final["log"] == tags
        statuses = {r["run_id"]: r["status"] for r in clients[2].runs.list(thread_id, limit=100)}
        assert all(statuses[r["run_id"]] == "success" for r in runs)
        assert clients[0].threads.get(thread_id)["status"] == "idle"

    def test_should_finish_on_another_pod_a_run_whose_pod_was_killed(
        self, three_pods: list[ServiceProcess]
    ) -> None:
        a, b, c = three_pods
        ca, cb = get_sync_client(url=a.url), get_sync_client(url=b.url)
        thread_id = ca.threads.create()["thread_id"]
        run = ca.runs.create(thread_id, "ticker", input={"until": 60, "delay": 0.05}, config=LIMIT)
        eventually(lambda: cb.runs.get(thread_id, run["run_id"])["status"] == "running", "running")
        eventually(lambda: ticks_of(cb, thread_id) >= 5, "the run is under way on pod A")

        a.signal(signal.SIGKILL)
        result = cb.runs.join(thread_id, run["run_id"])

        assert result["ticks"] == 60
        assert cb.runs.get(thread_id, run["run_id"])["status"] == "success"
        assert get_sync_client(url=c.url).threads.get(thread_id)["status"] == "idle"
        history = cb.threads.get_history(thread_id, limit=500)
        assert max(h["values"].get("ticks", 0) for h in history) == 60
        assert sorted({h["values"].get("ticks", 0) for h in history}) == list(range(61))  # continued, not restarted


class TestIdleLoad:
    def test_should_not_poll_busily_while_runs_wait_for_a_busy_thread(self, migrated_db: str) -> None:
        """Queued runs that cannot start (their thread is held) wait for the holder's NOTIFY, not a loop."""
        with ServiceProcess(migrated_db) as pod, psycopg.connect(migrated_db, autocommit=True) as conn:
            client = get_sync_client(url=pod.url)
            thread_id = client.threads.create()["thread_id"]
            client.runs.create(thread_id, "ledger", input={"tag": "holder", "delay": 600})
            queued = [client.runs.create(thread_id, "ledger", input={"tag": f"q{i}"}) for i in range(5)]
            assert all(r["status"] == "pending" for r in queued)

            def scans() -> int:
                """Scans of the runs table: every claim, look-ahead and lease renewal reads it once."""
                conn.execute("SELECT pg_stat_clear_snapshot()")
                row = conn.execute("SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
                                   "WHERE relname = 'runs'").fetchone()
                return int(row[0]) if row else 0

            first, started = scans(), time.monotonic()
            while time.monotonic() - started < 3:  # a window to count in, not a wait for a condition
                time.sleep(0.5)
            per_second = (scans() - first) / (time.monotonic() - started)
            client.runs.cancel_many(thread_id=thread_id, run_ids=[r["run_id"] for r in client.runs.list(thread_id)])
        # A worker looking every few ms (what a due-but-blocked run used to cause) makes hundreds a second.
        assert per_second < 10, f"{per_second:.1f} scans of runs/s while runs wait"


class TestThreadStream:
    def test_should_stream_every_run_of_a_thread_in_order_and_resume_after_a_cut(
        self, three_pods: list[ServiceProcess]
    ) -> None:
        a, b, c = three_pods
        client = get_sync_client(url=a.url)
        thread_id = client.threads.create()["thread_id"]
        url = f"/threads/{thread_id}/stream"
        seen: list[dict[str, Any]] = []
        with httpx.Client(base_url=c.url, timeout=60) as http, http.stream("GET", url) as response:
            assert response.status_code == 200
            runs = [client.runs.create(thread_id, "ledger", input={"tag": tag, "delay": 0.2}, stream_mode="updates")
                    for tag in ("one", "two")]
            for event in sse(response):
                seen.append(event)
                if event["event"] == "updates" and event["id"].startswith(runs[0]["run_id"]):
                    break  # cut after the first run's update
        with httpx.Client(base_url=b.url, timeout=60) as http, \
                http.stream("GET", url, headers={"Last-Event-ID": seen[-1]["id"]}) as response:
            for event in sse(response):
                seen.append(event)
                if event["event"] == "updates" and event["id"].startswith(runs[1]["run_id"]):
                    break
        order = [(e["id"].split(":")[0], e["event"]) for e in seen]
        assert order == [(runs[0]["run_id"], "metadata"), (runs[0]["run_id"], "updates"),
                         (runs[1]["run_id"], "metadata"), (runs[1]["run_id"], "updates")]
        assert [e["data"]["record"]["log"] for e in seen if e["event"] == "updates"] == [["one"], ["two"]]

    def test_should_refuse_unknown_thread_stream_modes_and_missing_threads(
        self, three_pods: list[ServiceProcess]
    ) -> None:
        with httpx.Client(base_url=three_pods[0].url, timeout=30) as http:
            thread_id = http.post("/threads", json={}).json()["thread_id"]
            bad = http.get(f"/threads/{thread_id}/stream", params={"stream_modes": "bogus"})
            missing = http.get(f"/threads/{uuid.uuid4()}/stream")
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        assert missing.status_code == 404


class TestOperations:
    def test_should_serve_stateless_background_and_batch_runs(self, three_pods: list[ServiceProcess]) -> None:
        a, b, _ = (get_sync_client(url=p.url) for p in three_pods)
        run = a.runs.create(None, "ledger", input={"tag": "solo"})
        batch = b.runs.create_batch([{"assistant_id": "ledger", "input": {"tag": f"b{i}"}} for i in range(3)])

        assert len(batch) == 3 and len({r["thread_id"] for r in batch}) == 3
        for item in [run, *batch]:
            eventually(lambda item=item: _status(b, item) in ("success", "gone"), "stateless run done")

    def test_should_start_a_delayed_run_after_its_seconds(self, three_pods: list[ServiceProcess]) -> None:
        a, b, _ = (get_sync_client(url=p.url) for p in three_pods)
        thread_id = a.threads.create()["thread_id"]
        created = time.monotonic()
        run = a.runs.create(thread_id, "ledger", input={"tag": "later"}, after_seconds=1.5)
        assert a.runs.get(thread_id, run["run_id"])["status"] == "pending"
        assert b.runs.join(thread_id, run["run_id"])["log"] == ["later"]
        assert time.monotonic() - created >= 1.5

    def test_should_list_filter_get_and_delete_runs(self, three_pods: list[ServiceProcess]) -> None:
        a, b, _ = (get_sync_client(url=p.url) for p in three_pods)
        thread_id = a.threads.create()["thread_id"]
        ok = a.runs.wait(thread_id, "ledger", input={"tag": "ok"})
        assert ok["log"] == ["ok"]
        runs = b.runs.list(thread_id)
        assert len(runs) == 1 and runs[0]["status"] == "success"  # runs/wait runs are rows too
        assert runs[0]["kwargs"]["input"] == {"tag": "ok"}
        assert b.runs.list(thread_id, status="error") == []
        assert [r["run_id"] for r in b.runs.list(thread_id, status="success")] == [runs[0]["run_id"]]
        with pytest.raises(NotFoundError):
            b.runs.get(thread_id, "00000000-0000-0000-0000-000000000000")
        b.runs.delete(thread_id, runs[0]["run_id"])
        assert b.runs.list(thread_id) == []

    def test_should_cancel_the_run_when_a_streaming_client_disconnects_with_on_disconnect_cancel(
        self, three_pods: list[ServiceProcess]
    ) -> None:
        a, b, _ = three_pods
        client = get_sync_client(url=b.url)
        thread_id = client.threads.create()["thread_id"]
        body = {"assistant_id": "ticker", "input": {"until": 10_000, "delay": 0.05}, "config": LIMIT,
                "on_disconnect": "cancel"}
        with httpx.Client(base_url=a.url, timeout=30) as http, \
                http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response:
            run_id = response.headers["Content-Location"].rsplit("/", 1)[-1]
            for i, _event in enumerate(sse(response)):
                if i == 3:
                    break
        eventually(lambda: client.runs.get(thread_id, run_id)["status"] == "interrupted", "cancelled on disconnect")

    def test_should_send_location_headers_as_the_langgraph_server(self, three_pods: list[ServiceProcess]) -> None:
        a = three_pods[0]
        with httpx.Client(base_url=a.url, timeout=30) as http:
            thread_id = http.post("/threads", json={}).json()["thread_id"]
            waited = http.post(f"/threads/{thread_id}/runs/wait", json={"assistant_id": "ledger", "input": {}})
            created = http.post(f"/threads/{thread_id}/runs", json={"assistant_id": "ledger", "input": {}})
            stateless = http.post("/runs", json={"assistant_id": "ledger", "input": {}})
        run_id = created.json()["run_id"]
        assert created.headers["Content-Location"] == f"/threads/{thread_id}/runs/{run_id}"
        assert waited.headers["Location"].startswith(f"/threads/{thread_id}/runs/")
        assert waited.headers["Location"].endswith("/join")
        assert stateless.headers["Content-Location"] == f"/runs/{stateless.json()['run_id']}"


def _status(client: Any, run: dict[str, Any]) -> str:
    try:
        return str(client.runs.get(run["thread_id"], run["run_id"])["status"])
    except NotFoundError:
        return "gone"  # a stateless run's thread (and its runs) is deleted after it ends


class TestHeartbeats:
    def test_should_keep_a_long_wait_alive_and_end_with_the_json_result(self, migrated_db: str) -> None:
        with ServiceProcess(migrated_db, STREAM_HEARTBEAT_SECONDS="0.2") as pod, \
                httpx.Client(base_url=pod.url, timeout=30) as http:
            thread_id = http.post("/threads", json={}).json()["thread_id"]
            chunks: list[bytes] = []
            with http.stream("POST", f"/threads/{thread_id}/runs/wait",
                             json={"assistant_id": "ledger", "input": {"tag": "x", "delay": 1.5}}) as response:
                chunks.extend(response.iter_raw())
            with http.stream("GET", f"/threads/{thread_id}/runs/"
                             f"{http.get(f'/threads/{thread_id}/runs').json()[0]['run_id']}/stream") as response:
                list(response.iter_raw())
            run = http.post(f"/threads/{thread_id}/runs",
                            json={"assistant_id": "ledger", "input": {"tag": "y", "delay": 1.5}}).json()
            with http.stream("GET", f"/threads/{thread_id}/runs/{run['run_id']}/stream") as response:
                stream = b"".join(response.iter_raw())
        body = b"".join(chunks)
        assert body.startswith(b"\n"), "keep-alive newlines before the result"
        assert json.loads(body)["log"] == ["x"]
        assert b": heartbeat" in stream and b"event: values" in stream

    def test_should_start_the_body_with_a_keep_alive_as_soon_as_the_status_is_sent(self, migrated_db: str) -> None:
        # A run that ends between the first and the second heartbeat: its 200 went out at the first,
        # so its body must start with a newline too (the client tells such answers by it).
        with ServiceProcess(migrated_db, STREAM_HEARTBEAT_SECONDS="3") as pod, \
                httpx.Client(base_url=pod.url, timeout=30) as http:
            thread_id = http.post("/threads", json={}).json()["thread_id"]
            started = time.monotonic()
            with http.stream("POST", f"/threads/{thread_id}/runs/wait",
                             json={"assistant_id": "ledger", "input": {"tag": "x", "delay": 3.5}}) as response:
                body = b"".join(response.iter_raw())
            took = time.monotonic() - started
        assert body.startswith(b"\n"), (took, body[:80])
        assert json.loads(body)["log"] == ["x"]


class TestAsyncClient:
    def test_should_drive_background_runs_with_the_async_sdk(self, three_pods: list[ServiceProcess]) -> None:
        async def scenario() -> None:
            a, b = get_client(url=three_pods[0].url), get_client(url=three_pods[1].url)
            thread = await a.threads.create()
            run = await a.runs.create(thread["thread_id"], "ledger", input={"tag": "async", "delay": 0.2})
            parts = [p async for p in b.runs.join_stream(thread["thread_id"], run["run_id"])]
            assert parts[0].event == "metadata"
            assert (await b.runs.join(thread["thread_id"], run["run_id"]))["log"] == ["async"]
            await b.runs.cancel_many(status="pending")

        asyncio.run(scenario())


class TestRetention:
    def test_should_expire_stream_events_of_finished_runs_after_their_ttl(self, migrated_db: str) -> None:
        with ServiceProcess(migrated_db, RUN_EVENTS_TTL_SECONDS="1", RUN_QUEUE_SAMPLE_SECONDS="0.2") as pod:
            client = get_sync_client(url=pod.url)
            thread_id = client.threads.create()["thread_id"]
            run = client.runs.create(thread_id, "ledger", input={"tag": "kept-briefly"})
            client.runs.join(thread_id, run["run_id"])

            def stored() -> int:
                with psycopg.connect(migrated_db) as conn:
                    row = conn.execute("SELECT count(*) FROM run_events WHERE run_id = %s", (run["run_id"],)).fetchone()
                return int(row[0]) if row else 0

            assert stored() > 0
            eventually(lambda: stored() == 0, "the run's events expired")
            assert client.runs.get(thread_id, run["run_id"])["status"] == "success"  # the run itself stays

    def test_should_prune_finished_runs_past_the_retention(self, migrated_db: str) -> None:
        with ServiceProcess(migrated_db) as pod:
            client = get_sync_client(url=pod.url)
            thread_id = client.threads.create()["thread_id"]
            old = client.runs.create(thread_id, "ledger", input={"tag": "old"})
            client.runs.join(thread_id, old["run_id"])
            recent = client.runs.create(thread_id, "ledger", input={"tag": "recent"})
            client.runs.join(thread_id, recent["run_id"])
            with psycopg.connect(migrated_db, autocommit=True) as conn:
                conn.execute("UPDATE runs SET updated_at = now() - interval '40 days' WHERE run_id = %s",
                             (old["run_id"],))
            result = subprocess.run([sys.executable, "-m", "service.prune", "--older-than-days", "30"], cwd=ROOT,
                                    env=python_env(DATABASE_URL=to_url(migrated_db)), capture_output=True,
                                    text=True, timeout=60, check=False)
            assert result.returncode == 0, result.stderr
            assert [r["run_id"] for r in client.runs.list(thread_id)] == [recent["run_id"]]
            with psycopg.connect(migrated_db) as conn:
                left = conn.execute("SELECT count(*) FROM run_events WHERE run_id = %s", (old["run_id"],)).fetchone()
            assert left == (0,)
            assert client.threads.get_state(thread_id)["values"]["log"] == ["old", "recent"]


class TestJsClient:
    def test_should_drive_every_runs_operation_with_the_official_js_client(self, migrated_db: str) -> None:
        """@langchain/langgraph-sdk (npm, pinned in tests/e2e/js) against two pods: tests/e2e/js/runs.mjs."""
        with ServiceProcess(migrated_db) as a, ServiceProcess(migrated_db) as b:
            out = run_js("runs.mjs", a.url, LANGGRAPH_URL_B=b.url)
        run_id = out["created"]["run_id"]
        assert out["created"]["status"] in ("pending", "running")
        assert out["joinStreamEvents"][0] == "metadata" and "values" in out["joinStreamEvents"]
        assert out["joined"]["log"] == ["js"]
        assert out["got"]["status"] == "success" and out["got"]["run_id"] == run_id
        assert [r["run_id"] for r in out["listed"]] == [run_id]
        assert out["waited"]["log"] == ["js", "wait"]
        assert out["streamed"][0] == "metadata" and "updates" in out["streamed"]
        assert out["cancelled"]["status"] == "interrupted"
        assert out["rejected"] == {"status": 409}
        assert len(out["batch"]) == 2 and all(r["status"] in ("pending", "running", "success") for r in out["batch"])
        assert out["statelessJoined"]["log"] == ["stateless"]
        assert run_id not in out["afterDelete"] and len(out["afterDelete"]) >= 3

