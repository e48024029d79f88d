"""The LangGraph Server API surface the langgraph-sdk client uses, on one pod."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from service.db import to_url
from tests.support.graphs import GRAPHS
from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module")
def pod(pg_server: Any) -> Iterator[tuple[ServiceProcess, str]]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("api")
    run(Options(conninfo=conninfo))
    with ServiceProcess(conninfo) as p:
        yield p, conninfo
    pg_server.drop_database(conninfo)


@pytest.fixture
def client(pod: tuple[ServiceProcess, str]) -> SyncLangGraphClient:
    return get_sync_client(url=pod[0].url)


class TestAssistants:
    def test_should_serve_one_assistant_per_graph(self, client: SyncLangGraphClient) -> None:
        found = {a["graph_id"]: a for a in client.assistants.search(limit=100)}
        assert set(found) == set(json.loads(GRAPHS))
        support = found["support"]
        assert client.assistants.get(support["assistant_id"])["graph_id"] == "support"
        assert client.assistants.get("support")["assistant_id"] == support["assistant_id"]
        graph = client.assistants.get_graph("support")
        assert {n["id"] for n in graph["nodes"]} >= {"classify", "draft", "compliance", "human_approval", "respond"}
        schemas = client.assistants.get_schemas("support")
        assert "messages" in schemas["state_schema"]["properties"]
        assert httpx.post(client.http.client.base_url.join("/assistants/count"), json={}).json() == len(found)


class TestThreads:
    def test_should_create_update_search_and_count(self, client: SyncLangGraphClient) -> None:
        t = client.threads.create(thread_id="api-thread-1", metadata={"team": "blue", "tier": 1})
        same = client.threads.create(thread_id="api-thread-1", if_exists="do_nothing")
        assert same["created_at"] == t["created_at"]
        updated = client.threads.update("api-thread-1", metadata={"tier": 2, "owner": "ana"})
        assert updated["metadata"] == {"team": "blue", "tier": 2, "owner": "ana"}
        for i in range(3):
            client.threads.create(metadata={"team": "green", "n": i})
        greens = client.threads.search(metadata={"team": "green"}, limit=2)
        assert len(greens) == 2
        rest = client.threads.search(metadata={"team": "green"}, limit=2, offset=2)
        assert len(rest) == 1 and rest[0]["thread_id"] not in {g["thread_id"] for g in greens}
        assert client.threads.count(metadata={"team": "green"}) == 3
        assert client.threads.count(metadata={"team": "green"}, status="idle") == 3
        assert client.threads.count(metadata={"team": "green"}, status="busy") == 0
        oldest = client.threads.search(metadata={"team": "green"}, sort_by="created_at", sort_order="asc", limit=1)
        assert oldest[0]["metadata"]["n"] == 0

    def test_should_delete_every_checkpoint_blob_write_and_the_row(
        self, client: SyncLangGraphClient, pod: tuple[ServiceProcess, str]
    ) -> None:
        thread_id = client.threads.create(graph_id="support")["thread_id"]
        client.runs.wait(thread_id, "support", input=ask("hello there"))
        counts = "SELECT (SELECT count(*) FROM {t} WHERE thread_id = %s)"
        tables = ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "threads", "runs")
        with psycopg.connect(pod[1]) as conn:
            before = [conn.execute(counts.format(t=t), (thread_id,)).fetchone()[0] for t in tables]  # type: ignore[index]
        assert all(n > 0 for n in before), before
        client.threads.delete(thread_id)
        with psycopg.connect(pod[1]) as conn:
            after = [conn.execute(counts.format(t=t), (thread_id,)).fetchone()[0] for t in tables]  # type: ignore[index]
        assert after == [0] * len(tables)
        with pytest.raises(httpx.HTTPStatusError) as info:
            client.threads.get(thread_id)
        assert info.value.response.status_code == 404


class TestState:
    def test_should_read_state_at_a_checkpoint_update_it_as_a_node_and_page_history(
        self, client: SyncLangGraphClient
    ) -> None:
        thread_id = client.threads.create(graph_id="support")["thread_id"]
        client.runs.wait(thread_id, "support", input=ask("Is my investment guaranteed?"),
                         metadata={"channel": "web"}, config={"tags": ["api-test"]})
        history = client.threads.get_history(thread_id, limit=100)
        assert [h["next"] for h in history][:2] == [["human_approval"], ["compliance"]]
        assert history[0]["metadata"]["channel"] == "web"  # run metadata reaches the checkpoints
        page = client.threads.get_history(thread_id, limit=2, before=history[1]["checkpoint"])
        assert [p["checkpoint_id"] for p in page] == [h["checkpoint_id"] for h in history[2:4]]

        earlier = client.threads.get_state(thread_id, checkpoint_id=history[2]["checkpoint_id"])
        assert earlier["next"] == ["draft"] and earlier["values"]["category"] == "regulated"

        # The operator rewrites the draft as if human_approval had run: the graph goes on to respond.
        result = client.threads.update_state(thread_id, {"draft": "Reviewed answer."}, as_node="human_approval")
        assert result["checkpoint"]["checkpoint_id"]
        assert client.threads.get_state(thread_id)["next"] == ["respond"]
        final = client.runs.wait(thread_id, "support", input=None)
        assert final["messages"][-1]["content"] == "Reviewed answer."
        assert client.threads.get(thread_id)["status"] == "idle"

    def test_should_honour_interrupt_before_and_after_per_run(self, client: SyncLangGraphClient) -> None:
        thread_id = client.threads.create(graph_id="support")["thread_id"]
        client.runs.wait(thread_id, "support", input=ask("my invoice"), interrupt_before=["draft"])
        assert client.threads.get_state(thread_id)["next"] == ["draft"]
        assert client.threads.get(thread_id)["status"] == "interrupted"
        client.runs.wait(thread_id, "support", input=None, interrupt_after=["compliance"])
        assert client.threads.get_state(thread_id)["next"] == ["respond"]
        done = client.runs.wait(thread_id, "support", input=None, durability="exit")
        assert "billing" in done["messages"][-1]["content"]

    def test_should_run_stateless_and_leave_nothing_behind(self, client: SyncLangGraphClient) -> None:
        before = client.threads.count()
        out = client.runs.wait(None, "support", input=ask("my invoice is wrong"))
        assert "billing" in out["messages"][-1]["content"]
        assert client.threads.count() == before


class TestOperations:
    def test_should_pass_the_smoke_test_and_fail_it_cleanly(self, pod: tuple[ServiceProcess, str]) -> None:
        ok = subprocess.run([sys.executable, "-m", "service.smoke", "--url", pod[0].url], cwd=ROOT,
                            env=python_env(), capture_output=True, text=True, timeout=60, check=False)
        assert ok.returncode == 0, ok.stderr
        bad = subprocess.run([sys.executable, "-m", "service.smoke", "--url", "http://127.0.0.1:9"], cwd=ROOT,
                             env=python_env(), capture_output=True, text=True, timeout=60, check=False)
        assert bad.returncode == 1
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr

    def test_should_prune_only_threads_idle_past_the_retention(
        self, client: SyncLangGraphClient, pod: tuple[ServiceProcess, str]
    ) -> None:
        old, recent = (client.threads.create(graph_id="support")["thread_id"] for _ in range(2))
        for t in (old, recent):
            client.runs.wait(t, "support", input=ask("hi"))
        with psycopg.connect(pod[1], autocommit=True) as conn:
            conn.execute("UPDATE threads SET updated_at = now() - interval '40 days' WHERE thread_id = %s", (old,))
        result = subprocess.run([sys.executable, "-m", "service.prune", "--older-than-days", "30"], cwd=ROOT,
                                env=python_env(DATABASE_URL=to_url(pod[1])), capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        finished = [json.loads(line) for line in result.stdout.splitlines() if '"prune_finished"' in line]
        assert finished and finished[0]["threads"] >= 1
        with psycopg.connect(pod[1]) as conn:
            left = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (old,)).fetchone()
        assert left == (0,)
        assert client.threads.get(recent)["status"] == "idle"
        assert client.threads.get_state(recent)["values"]["messages"]
        with pytest.raises(httpx.HTTPStatusError):
            client.threads.get(old)

    def test_should_log_json_lines_with_the_request_context(self, pod: tuple[ServiceProcess, str],
                                                            client: SyncLangGraphClient) -> None:
        thread_id = client.threads.create(graph_id="support")["thread_id"]
        client.runs.wait(thread_id, "support", input=ask("hello"))

        def logged(event: str) -> list[dict[str, Any]]:
            lines = [json.loads(line) for line in pod[0].logs().splitlines() if line.startswith("{")]
            return [e for e in lines if e["event"] == event and e.get("thread_id") == thread_id]

        def run_request_logged() -> bool:
            return any(e["route"] == "/threads/{thread_id:str}/runs/wait" and e["status"] == 200
                       for e in logged("request"))

        # The request line is written once the response is sent, so it may trail the client; wait
        # for that line itself (the thread's other request lines come earlier).
        deadline = time.monotonic() + 60
        while not run_request_logged():
            assert time.monotonic() < deadline, "no request line for runs/wait within 60 s"
            time.sleep(0.05)
        lines = [json.loads(line) for line in pod[0].logs().splitlines() if line.startswith("{")]
        assert lines and all("timestamp" in e and "level" in e for e in lines)
        finished = logged("run_finished")
        assert finished and finished[0]["graph"] == "support" and finished[0]["run_id"] and finished[0]["request_id"]
        assert any(e.get("logger", "").startswith("uvicorn") for e in lines)  # uvicorn goes through structlog too

    def test_should_be_ready_on_a_newer_schema(self, pod: tuple[ServiceProcess, str]) -> None:
        with psycopg.connect(pod[1], autocommit=True) as conn:
            conn.execute("INSERT INTO checkpoint_migrations (v) VALUES (100)")
            conn.execute("INSERT INTO langgraph_service_migrations (v) VALUES (100)")
        try:
            pod[0].wait_for("/ready", timeout=5)
        finally:
            with psycopg.connect(pod[1], autocommit=True) as conn:
                conn.execute("DELETE FROM checkpoint_migrations WHERE v = 100")
                conn.execute("DELETE FROM langgraph_service_migrations WHERE v = 100")
