"""Whole-thread operations through the langgraph-sdk client: copy, prune, storage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from tests.support.jsclient import run_js
from tests.support.service import ServiceProcess

TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module")
def pod(pg_server: Any) -> Iterator[tuple[ServiceProcess, str]]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("threadops")
    run(Options(conninfo=conninfo))
    with ServiceProcess(conninfo) as p:
        yield p, conninfo
    pg_server.drop_database(conninfo)


@pytest.fixture
def client(pod: tuple[ServiceProcess, str]) -> SyncLangGraphClient:
    return get_sync_client(url=pod[0].url)


def rows(conninfo: str, thread_id: str) -> list[int]:
    with psycopg.connect(conninfo) as conn:
        return [conn.execute(f"SELECT count(*) FROM {t} WHERE thread_id = %s", (thread_id,)).fetchone()[0]  # type: ignore[index]
                for t in TABLES]


def paused(client: SyncLangGraphClient) -> str:
    """A support thread paused before human approval (a regulated question)."""
    thread_id = client.threads.create(graph_id="support", metadata={"team": "ops"})["thread_id"]
    client.runs.wait(thread_id, "support", input=ask("Is my investment guaranteed?"))
    assert client.threads.get(thread_id)["status"] == "interrupted"
    return thread_id


class TestCopy:
    def test_should_copy_the_row_and_every_checkpoint(self, client: SyncLangGraphClient,
                                                      pod: tuple[ServiceProcess, str]) -> None:
        source = paused(client)
        copy = client.threads.copy(source)
        assert copy["thread_id"] != source
        assert copy["metadata"] == client.threads.get(source)["metadata"]
        assert copy["status"] == "interrupted"
        assert rows(pod[1], copy["thread_id"]) == rows(pod[1], source)
        history = client.threads.get_history(source, limit=100)
        copied = client.threads.get_history(copy["thread_id"], limit=100)
        assert [h["checkpoint_id"] for h in copied] == [h["checkpoint_id"] for h in history]
        assert copied[0]["values"] == history[0]["values"] and copied[0]["next"] == ["human_approval"]
        assert copied[0]["checkpoint"]["thread_id"] == copy["thread_id"]
        # The copy goes on by itself; the source stays where it was.
        final = client.runs.wait(copy["thread_id"], "support", input=None)
        assert final["messages"][-1]["type"] == "ai"
        assert client.threads.get(copy["thread_id"])["status"] == "idle"
        assert client.threads.get(source)["status"] == "interrupted"
        assert client.threads.get_state(source)["next"] == ["human_approval"]

    def test_should_answer_409_for_a_thread_that_does_not_exist(self, pod: tuple[ServiceProcess, str]) -> None:
        r = httpx.post(pod[0].url + "/threads/00000000-0000-0000-0000-000000000000/copy")
        assert r.status_code == 409
        assert r.headers["content-type"].startswith("application/problem+json")


class TestPrune:
    def test_should_keep_only_the_latest_checkpoint(self, client: SyncLangGraphClient,
                                                    pod: tuple[ServiceProcess, str]) -> None:
        thread_id = paused(client)
        latest = client.threads.get_state(thread_id)
        assert len(client.threads.get_history(thread_id, limit=100)) > 1
        assert client.threads.prune([thread_id, "no-such-thread"], strategy="keep_latest") == {"pruned_count": 1}
        history = client.threads.get_history(thread_id, limit=100)
        assert [h["checkpoint_id"] for h in history] == [latest["checkpoint_id"]]
        assert client.threads.get_state(thread_id)["values"] == latest["values"]

    def test_should_delete_threads_and_their_checkpoints(self, client: SyncLangGraphClient,
                                                         pod: tuple[ServiceProcess, str]) -> None:
        a, b = paused(client), paused(client)
        keep = paused(client)
        assert client.threads.prune([a, b, a], strategy="delete") == {"pruned_count": 2}
        for gone in (a, b):
            with pytest.raises(httpx.HTTPStatusError) as info:
                client.threads.get(gone)
            assert info.value.response.status_code == 404
            assert rows(pod[1], gone) == [0, 0, 0]
        assert client.threads.get(keep)["status"] == "interrupted"
        assert client.threads.prune([]) == {"pruned_count": 0}

    @pytest.mark.parametrize("body", [{"thread_ids": ["a"], "strategy": "oldest"}, {"strategy": "delete"},
                                      {"thread_ids": "a"}])
    def test_should_refuse_bad_requests(self, pod: tuple[ServiceProcess, str], body: dict[str, Any]) -> None:
        r = httpx.post(pod[0].url + "/threads/prune", json=body)
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")


class TestStorage:
    def test_should_report_the_bytes_of_each_table_and_channel(self, client: SyncLangGraphClient,
                                                               pod: tuple[ServiceProcess, str]) -> None:
        thread_id = paused(client)
        storage = client.http.get(f"/threads/{thread_id}/storage")
        checkpoints, blobs, writes = rows(pod[1], thread_id)
        assert storage["thread_id"] == thread_id
        assert storage["checkpoints"]["count"] == checkpoints and storage["checkpoints"]["bytes"] > 0
        assert storage["channel_values"]["count"] == blobs
        assert storage["pending_writes"]["count"] == writes
        assert "messages" in storage["channel_values"]["by_channel"]
        assert storage["channel_values"]["bytes"] == sum(
            c["bytes"] for c in storage["channel_values"]["by_channel"].values())
        assert storage["total_bytes"] == (storage["checkpoints"]["bytes"] + storage["channel_values"]["bytes"]
                                          + storage["pending_writes"]["bytes"])
        with psycopg.connect(pod[1]) as conn:
            stored = conn.execute("SELECT sum(pg_column_size(checkpoint) + pg_column_size(metadata)) "
                                  "FROM checkpoints WHERE thread_id = %s", (thread_id,)).fetchone()
        assert stored == (storage["checkpoints"]["bytes"],)
        assert httpx.get(pod[0].url + "/threads/nope/storage").status_code == 404


def test_should_serve_openapi_json_beside_docs(pod: tuple[ServiceProcess, str]) -> None:
    spec = httpx.get(pod[0].url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/store/items" in spec["paths"]
    assert "/threads/{thread_id}/copy" in spec["paths"]
    assert httpx.get(pod[0].url + "/docs/openapi.json").json()["paths"] == spec["paths"]


class TestPruneJobFromLanggraphJson:
    def test_should_take_retention_and_strategy_from_checkpointer_ttl(
            self, client: SyncLangGraphClient, pod: tuple[ServiceProcess, str], tmp_path: Any) -> None:
        import json
        import subprocess
        import sys

        from service.db import to_url
        from tests.support.race import ROOT, python_env

        old, recent = paused(client), paused(client)
        with psycopg.connect(pod[1], autocommit=True) as conn:
            conn.execute("UPDATE threads SET updated_at = now() - interval '40 days' WHERE thread_id = %s", (old,))
        config = tmp_path / "langgraph.json"
        config.write_text(json.dumps({"checkpointer": {"ttl": {"strategy": "keep_latest", "default_ttl": 30 * 1440}}}))
        env = python_env(DATABASE_URL=to_url(pod[1]), LANGGRAPH_CONFIG=str(config))
        result = subprocess.run([sys.executable, "-m", "service.prune"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert client.threads.get(old)["status"] == "interrupted"  # keep_latest: the thread stays ...
        assert len(client.threads.get_history(old, limit=100)) == 1  # ... with its latest checkpoint only
        assert len(client.threads.get_history(recent, limit=100)) > 1  # younger than 30 days: untouched
        bare = subprocess.run([sys.executable, "-m", "service.prune"], cwd=ROOT, capture_output=True, text=True,
                              env=python_env(DATABASE_URL=to_url(pod[1])), timeout=60, check=False)
        # No retention anywhere: the job applies only the threads' own TTLs (none here).
        assert bare.returncode == 0, bare.stderr
        assert len(client.threads.get_history(recent, limit=100)) > 1


def test_should_not_prune_a_thread_a_run_holds(client: SyncLangGraphClient, pod: tuple[ServiceProcess, str]) -> None:
    import threading
    import time

    thread_id = client.threads.create(graph_id="slow")["thread_id"]
    done: list[Any] = []
    runner = threading.Thread(target=lambda: done.append(get_sync_client(url=pod[0].url).runs.wait(
        thread_id, "slow", input={"messages": [{"role": "user", "content": "hold"}], "delay": 5})))
    runner.start()
    deadline = time.monotonic() + 60
    while client.threads.get(thread_id)["status"] != "busy":
        assert time.monotonic() < deadline, "the run never took the thread"
        time.sleep(0.05)
    assert client.threads.prune([thread_id], strategy="delete") == {"pruned_count": 0}
    runner.join(timeout=60)
    assert done and client.threads.get(thread_id)["status"] == "idle"
    assert client.threads.prune([thread_id], strategy="delete") == {"pruned_count": 1}


def test_should_sweep_threads_idle_past_checkpointer_ttl(migrated_db: str, tmp_path: Any) -> None:
    import json
    import time

    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"checkpointer": {"ttl": {"strategy": "delete", "default_ttl": 60,
                                                           "sweep_interval_minutes": 0.01}}}))
    with ServiceProcess(migrated_db, LANGGRAPH_CONFIG=str(config)) as p:
        client = get_sync_client(url=p.url)
        old, recent = paused(client), paused(client)
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            conn.execute("UPDATE threads SET updated_at = now() - interval '2 hours' WHERE thread_id = %s", (old,))
        deadline = time.monotonic() + 60
        while httpx.get(f"{p.url}/threads/{old}").status_code != 404:
            assert time.monotonic() < deadline, "the pod never swept the idle thread"
            time.sleep(0.2)
        assert rows(migrated_db, old) == [0, 0, 0]
        assert client.threads.get(recent)["status"] == "interrupted"
        assert rows(migrated_db, recent)[0] > 0
    assert '"threads_swept"' in p.logs()


def test_should_serve_every_threads_operation_of_the_js_client(pod: tuple[ServiceProcess, str]) -> None:
    """@langchain/langgraph-sdk (npm, pinned in tests/e2e/js): tests/e2e/js/threads.mjs."""
    tag = uuid.uuid4().hex[:10]
    out = run_js("threads.mjs", pod[0].url, TAG=tag)
    tid, other, copy = out["id"], out["otherId"], out["copy"]["thread_id"]
    assert out["created"]["thread_id"] == tid and out["created"]["status"] == "idle"
    assert out["created"]["metadata"] == {"js": tag, "n": 1, "graph_id": "ledger"}
    assert out["again"] == out["created"] == out["got"]  # do_nothing answers the existing one
    assert out["raised"] == 409
    assert out["updated"]["metadata"] == {"js": tag, "n": 2, "owner": "js", "graph_id": "ledger"}

    assert out["waited"]["log"] == ["first"] and out["state"]["values"]["log"] == ["first"]
    first_checkpoint = out["state"]["checkpoint"]["checkpoint_id"]
    updated_checkpoint = out["updateState"]["checkpoint"]["checkpoint_id"]
    assert out["stateAfter"]["values"]["log"] == ["first", "manual"]
    assert out["stateAfter"]["checkpoint_id"] == updated_checkpoint
    assert out["stateAfter"]["metadata"]["source"] == "update"
    assert out["stateAtFirst"]["checkpoint_id"] == first_checkpoint
    assert out["stateAtFirst"]["values"]["log"] == ["first"]
    history = [h["checkpoint_id"] for h in out["history"]]
    assert history[:2] == [updated_checkpoint, first_checkpoint] and len(history) >= 3
    assert [h["checkpoint_id"] for h in out["historyOne"]] == [updated_checkpoint]
    # `before` as the JS SDK types it (a RunnableConfig) and as the spec has it (a checkpoint).
    assert [h["checkpoint_id"] for h in out["historyBefore"]] == history[1:]
    assert [h["checkpoint_id"] for h in out["historyBeforeRef"]] == history[1:]
    assert [h["checkpoint_id"] for h in out["historyByMetadata"]] == [updated_checkpoint]

    assert [t["thread_id"] for t in out["search"]] == [tid, other]
    assert out["search"][0]["values"]["log"] == ["first", "manual"]
    assert out["searchSelect"] == [{"thread_id": tid, "status": "idle"}]
    assert [t["thread_id"] for t in out["searchIds"]] == [other]
    assert [t["thread_id"] for t in out["searchPage"]] == [other]
    assert (out["count"], out["countIdle"]) == (2, 2)

    assert copy != tid and out["copy"]["metadata"] == out["updated"]["metadata"] | {
        "assistant_id": out["state"]["metadata"]["assistant_id"]}
    assert out["copyState"]["values"] == out["stateAfter"]["values"]
    assert out["copyState"]["checkpoint_id"] == updated_checkpoint
    assert out["copyWaited"]["log"] == ["first", "manual", "copy"]
    assert out["stateAfterCopyRun"]["values"]["log"] == ["first", "manual"]  # the source did not move
    joined = out["joinStream"]
    assert joined[0]["event"] == "metadata" and joined[-1]["log"] == ["first", "manual", "copy", "joined"]
    assert all(e["id"].startswith(out["backgroundRunId"] + ":") for e in joined)

    assert out["pruned"] == {"pruned_count": 1}
    assert [h["checkpoint_id"] for h in out["historyAfterPrune"]] == [updated_checkpoint]
    assert (out["deletedGet"], out["prunedGet"], out["missingState"]) == (404, 404, 404)
    assert out["prunedDelete"] == {"pruned_count": 1}
    assert rows(pod[1], tid)[0] == 1  # keep_latest: one checkpoint row left
    with psycopg.connect(pod[1]) as conn:
        kept = conn.execute("SELECT metadata, status, values FROM threads WHERE thread_id = %s", (tid,)).fetchone()
        gone = conn.execute("SELECT count(*) FROM threads WHERE thread_id = ANY(%s)", ([copy, other],)).fetchone()
    assert kept is not None and kept[0]["owner"] == "js" and kept[1] == "idle"
    assert kept[2]["log"] == ["first", "manual"]
    assert gone == (0,) and rows(pod[1], copy) == [0, 0, 0] and rows(pod[1], other) == [0, 0, 0]


def test_should_refuse_a_history_before_that_is_not_a_checkpoint_id(client: SyncLangGraphClient,
                                                                     pod: tuple[ServiceProcess, str]) -> None:
    thread_id = paused(client)
    r = httpx.post(f"{pod[0].url}/threads/{thread_id}/history",
                   json={"limit": 5, "before": {"configurable": {"checkpoint_id": 5}}})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert "checkpoint_id" in r.json()["detail"]
