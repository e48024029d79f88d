"""A thread's own TTL (``ttl`` of POST /threads and PATCH /threads/{id}), swept by the pods.

Real PostgreSQL and a real service process, driven by langgraph-sdk. The pod sweeps every
0.6 s (``checkpointer.ttl.sweep_interval_minutes``, no ``default_ttl``, so only threads with
their own TTL go). Expiry is reached without waiting: a TTL of zero minutes is due at once, and
longer ones are moved into the past on the row; the tests then wait for the sweep's effect.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from tests.support.service import ServiceProcess

DEADLINE = 60.0


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module")
def pod(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, str]]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("threadttl")
    run(Options(conninfo=conninfo))
    config = tmp_path_factory.mktemp("ttl") / "langgraph.json"
    config.write_text(json.dumps({"checkpointer": {"ttl": {"sweep_interval_minutes": 0.01}}}))
    with ServiceProcess(conninfo, LANGGRAPH_CONFIG=str(config)) as p:
        yield p, conninfo
    pg_server.drop_database(conninfo)


@pytest.fixture
def client(pod: tuple[ServiceProcess, str]) -> SyncLangGraphClient:
    return get_sync_client(url=pod[0].url)


def sql(conninfo: str, statement: str, *params: Any) -> list[Any]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def expire(conninfo: str, thread_id: str) -> None:
    """Move the thread's TTL and its last update two hours into the past."""
    sql(conninfo, "UPDATE thread_ttl SET expires_at = now() - interval '2 hours' WHERE thread_id = %s", thread_id)
    sql(conninfo, "UPDATE threads SET updated_at = now() - interval '2 hours' WHERE thread_id = %s", thread_id)


def checkpoints(conninfo: str, thread_id: str) -> int:
    return int(sql(conninfo, "SELECT count(*) FROM checkpoints WHERE thread_id = %s", thread_id)[0][0])


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def at(timestamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(timestamp)


def gone(url: str, thread_id: str) -> bool:
    return httpx.get(f"{url}/threads/{thread_id}").status_code == 404


class TestSetting:
    def test_should_store_the_ttl_and_show_it_with_include(self, client: SyncLangGraphClient) -> None:
        created = client.threads.create(ttl={"strategy": "delete", "ttl": 90})
        thread = client.threads.get(created["thread_id"], include=["ttl"])
        assert thread["ttl"]["strategy"] == "delete" and thread["ttl"]["ttl_minutes"] == 90
        assert at(thread["ttl"]["expires_at"]) > at(thread["updated_at"])
        assert "ttl" not in client.threads.get(created["thread_id"])  # only when asked for, as the spec says
        assert "ttl" not in client.threads.get(client.threads.create()["thread_id"], include=["ttl"])
        patched = client.threads.update(created["thread_id"], metadata={"k": 1}, ttl={"strategy": "keep_latest",
                                                                                      "ttl": 5})
        assert patched["metadata"] == {"k": 1}
        again = client.threads.get(created["thread_id"], include=["ttl"])["ttl"]
        assert (again["strategy"], again["ttl_minutes"]) == ("keep_latest", 5)
        assert at(again["expires_at"]) < at(thread["ttl"]["expires_at"])  # 5 minutes from now, not 90
        copy = client.threads.copy(created["thread_id"])
        assert "ttl" not in client.threads.get(copy["thread_id"], include=["ttl"])
        kept = client.threads.create(thread_id=created["thread_id"], if_exists="do_nothing", ttl=1)
        assert kept["thread_id"] == created["thread_id"]
        assert client.threads.get(created["thread_id"], include=["ttl"])["ttl"]["ttl_minutes"] == 5

    @pytest.mark.parametrize("ttl", [{"ttl": -1}, {"strategy": "shred", "ttl": 1}, {"strategy": "delete"},
                                     {"ttl": "soon"}, {"ttl": 1e300}])
    def test_should_refuse_a_bad_ttl(self, pod: tuple[ServiceProcess, str], ttl: dict[str, Any]) -> None:
        url = pod[0].url
        created = httpx.post(f"{url}/threads", json={"ttl": ttl})
        thread_id = httpx.post(f"{url}/threads", json={}).json()["thread_id"]
        patched = httpx.patch(f"{url}/threads/{thread_id}", json={"ttl": ttl})
        for response in (created, patched):
            assert response.status_code == 422
            assert response.headers["content-type"].startswith("application/problem+json")


class TestSweep:
    def test_should_delete_expired_threads_with_their_checkpoints_and_keep_the_rest(
        self, client: SyncLangGraphClient, pod: tuple[ServiceProcess, str]
    ) -> None:
        url, conninfo = pod[0].url, pod[1]
        expired = client.threads.create(graph_id="support", ttl=60)["thread_id"]
        client.runs.wait(expired, "support", input=ask("My invoice is wrong"))
        assert checkpoints(conninfo, expired) > 0
        due_at_once = client.threads.create()["thread_id"]
        client.threads.update(due_at_once, metadata={}, ttl={"ttl": 0})  # zero minutes from now
        live = client.threads.create(ttl=60)["thread_id"]
        forever = client.threads.create()["thread_id"]
        sql(conninfo, "UPDATE threads SET updated_at = now() - interval '2 hours' WHERE thread_id = %s", forever)
        expire(conninfo, expired)

        until(lambda: gone(url, expired) and gone(url, due_at_once), "the pod never swept the expired threads")
        assert checkpoints(conninfo, expired) == 0
        assert sql(conninfo, "SELECT count(*) FROM thread_ttl WHERE thread_id = ANY(%s)",
                   [expired, due_at_once]) == [(0,)]
        assert client.threads.get(live)["thread_id"] == live
        assert client.threads.get(forever)["thread_id"] == forever  # no TTL of its own, no default_ttl
        assert '"thread_ttls_expired"' in pod[0].logs()

    def test_should_not_count_from_the_ttl_alone_when_the_thread_was_used_since(
        self, client: SyncLangGraphClient, pod: tuple[ServiceProcess, str]
    ) -> None:
        url, conninfo = pod[0].url, pod[1]
        used = client.threads.create(ttl=60)["thread_id"]
        sql(conninfo, "UPDATE thread_ttl SET expires_at = now() - interval '2 hours' WHERE thread_id = %s", used)
        witness = client.threads.create(ttl=60)["thread_id"]
        expire(conninfo, witness)
        until(lambda: gone(url, witness), "the pod never swept the witness")
        # The sweep that took the witness saw the other thread too: updated within its ttl, it stays.
        thread = client.threads.get(used, include=["ttl"])
        assert at(thread["ttl"]["expires_at"]) > at(thread["updated_at"])

    def test_should_keep_a_thread_a_run_holds(self, client: SyncLangGraphClient,
                                              pod: tuple[ServiceProcess, str]) -> None:
        url, conninfo = pod[0].url, pod[1]
        busy = client.threads.create(ttl=60)["thread_id"]
        run = client.runs.create(busy, "slow", input={"delay": 120})
        until(lambda: client.threads.get(busy)["status"] == "busy", "the run never started")
        expire(conninfo, busy)
        witness = client.threads.create(ttl=60)["thread_id"]
        expire(conninfo, witness)
        until(lambda: gone(url, witness), "the pod never swept the witness")
        assert client.threads.get(busy)["status"] == "busy"  # the same sweep left it to its run
        client.runs.cancel(busy, run["run_id"], wait=True)
        expire(conninfo, busy)  # the run's end counted as use: past that too
        until(lambda: gone(url, busy), "the thread was not swept once its run ended")

    def test_should_keep_only_the_latest_checkpoint_with_keep_latest_and_start_the_ttl_again(
        self, client: SyncLangGraphClient, pod: tuple[ServiceProcess, str]
    ) -> None:
        url, conninfo = pod[0].url, pod[1]
        thread_id = client.threads.create(graph_id="support", ttl={"strategy": "keep_latest", "ttl": 60})["thread_id"]
        client.runs.wait(thread_id, "support", input=ask("My invoice is wrong"))
        values = client.threads.get_state(thread_id)["values"]
        assert checkpoints(conninfo, thread_id) > 1
        expire(conninfo, thread_id)
        until(lambda: checkpoints(conninfo, thread_id) == 1, "the pod never pruned the thread's history")
        assert client.threads.get_state(thread_id)["values"] == values
        thread = client.threads.get(thread_id, include=["ttl"])
        assert at(thread["ttl"]["expires_at"]) > at(thread["updated_at"])  # 60 minutes from the sweep
        assert not gone(url, thread_id)


def test_should_answer_501_for_a_ttl_without_postgres() -> None:
    with ServiceProcess(None, CHECKPOINTER="memory") as pod:
        response = httpx.post(f"{pod.url}/threads", json={"ttl": {"ttl": 5}})
    assert response.status_code == 501
    assert response.headers["content-type"].startswith("application/problem+json")
