"""Crons through a real service process, driven by the official Python SDK (and raw HTTP for errors)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from service.db import to_url
from tests.support.pg import ADMIN_PASSWORD
from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess


@pytest.fixture
def pod(migrated_db: str) -> Iterator[ServiceProcess]:
    with ServiceProcess(migrated_db) as p:
        yield p


@pytest.fixture
def client(pod: ServiceProcess) -> SyncLangGraphClient:
    return get_sync_client(url=pod.url)


def assistant(client: SyncLangGraphClient) -> str:
    """The system assistant of the support graph (crons take its UUID, as the SDK examples pass it)."""
    return str(client.assistants.search(graph_id="support")[0]["assistant_id"])


def test_should_create_get_search_count_update_and_delete_crons(client: SyncLangGraphClient) -> None:
    aid = assistant(client)
    end = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    a: Any = client.crons.create(aid, schedule="0 9 * * *", input={"messages": []}, metadata={"team": "a"},
                                 timezone=ZoneInfo("Europe/Paris"), end_time=end, on_run_completed="keep")
    assert a["schedule"] == "0 9 * * *" and a["timezone"] == "Europe/Paris" and a["thread_id"] is None
    assert a["on_run_completed"] == "keep" and a["enabled"] is True and a["metadata"] == {"team": "a"}
    assert dt.datetime.fromisoformat(a["next_run_date"]).astimezone(ZoneInfo("Europe/Paris")).hour == 9
    assert a["payload"]["input"] == {"messages": []} and a["payload"]["assistant_id"] == aid

    thread = client.threads.create()
    b: Any = client.crons.create_for_thread(thread["thread_id"], aid, schedule="*/5 * * * *",
                                            multitask_strategy="enqueue", enabled=False)
    assert b["thread_id"] == thread["thread_id"] and b["on_run_completed"] is None and b["enabled"] is False

    assert client.crons.count() == 2
    assert client.crons.count(thread_id=thread["thread_id"]) == 1
    assert client.crons.count(metadata={"team": "a"}) == 1
    assert [c["cron_id"] for c in client.crons.search(sort_by="created_at", sort_order="asc")] == \
        [a["cron_id"], b["cron_id"]]
    assert [c["cron_id"] for c in client.crons.search(enabled=False)] == [b["cron_id"]]
    assert client.crons.search(select=["cron_id", "schedule"], limit=1, sort_order="asc") == \
        [{"cron_id": a["cron_id"], "schedule": "0 9 * * *"}]

    got: Any = client.crons.update(b["cron_id"], schedule="* * * * * */30", enabled=True, input={"n": 1})
    assert got["schedule"] == "* * * * * */30" and got["enabled"] is True and got["payload"]["input"] == {"n": 1}
    nxt = dt.datetime.fromisoformat(got["next_run_date"])
    assert nxt.second in (0, 30)
    cleared: Any = client.crons.update(a["cron_id"], end_time=None)
    assert cleared["end_time"] is None and cleared["schedule"] == "0 9 * * *"

    client.crons.delete(a["cron_id"])
    with pytest.raises(NotFoundError):
        client.crons.delete(a["cron_id"])
    assert client.crons.count() == 1
    client.threads.delete(thread["thread_id"])
    assert client.crons.count() == 0  # a thread's crons go with it


def test_should_page_crons_with_the_langgraph_headers(pod: ServiceProcess, client: SyncLangGraphClient) -> None:
    aid = assistant(client)
    for _ in range(3):
        client.crons.create(aid, schedule="0 0 * * *")
    first = httpx.post(pod.url + "/runs/crons/search", json={"limit": 2})
    assert len(first.json()) == 2 and first.headers["X-Pagination-Next"] == "2"
    last = httpx.post(pod.url + "/runs/crons/search", json={"limit": 2, "offset": 2})
    assert len(last.json()) == 1 and "X-Pagination-Next" not in last.headers
    assert last.headers["X-Pagination-Total"] == "3"


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"schedule": "61 * * * *"}, 422, "schedule"),
    ({"schedule": "every day"}, 422, "schedule"),
    ({"schedule": "* * * * *", "timezone": "Mars/Olympus"}, 422, "timezone"),
    ({"schedule": "* * * * *", "webhook": "http://169.254.169.254/latest/meta-data/"}, 422, "webhook"),
    ({"schedule": "* * * * *", "webhook": "http://[fd00:ec2::254]/"}, 422, "webhook"),
    ({"schedule": "* * * * *", "webhook": "ftp://example.com/"}, 422, "webhook"),
    ({"schedule": "* * * * *", "on_run_completed": "maybe"}, 422, "on_run_completed"),
    ({"schedule": "* * * * *", "end_time": "not a date"}, 422, "end_time"),
    ({"schedule": "* * * * *", "metadata": {"k": "\u0000"}}, 422, "payload"),
    ({"schedule": "* * * * *", "assistant_id": "no-such-graph"}, 404, "assistant"),
])
def test_should_answer_bad_crons_with_problem_json(pod: ServiceProcess, client: SyncLangGraphClient,
                                                   body: dict[str, Any], status: int, says: str) -> None:
    body = {"assistant_id": assistant(client), **body}
    resp = httpx.post(pod.url + "/runs/crons", json=body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["status"] == status and says in problem["detail"].lower(), problem
    assert "Traceback" not in resp.text and "\n" not in problem["detail"]


def test_should_answer_unknown_and_malformed_cron_ids(pod: ServiceProcess, client: SyncLangGraphClient) -> None:
    with pytest.raises(NotFoundError):
        client.crons.update("00000000-0000-4000-8000-000000000000", enabled=False)
    with pytest.raises(NotFoundError):
        client.crons.create_for_thread("no-such-thread", assistant(client), schedule="* * * * *")
    for method in ("GET", "DELETE"):
        resp = httpx.request(method, pod.url + "/runs/crons/not-a-uuid")
        assert resp.status_code == 422 and resp.json()["detail"] == "cron_id must be a UUID"
    cron: Any = client.crons.create(assistant(client), schedule="0 0 * * *")
    with pytest.raises(UnprocessableEntityError):
        client.crons.update(cron["cron_id"])  # nothing to change
    with pytest.raises(UnprocessableEntityError):
        client.crons.update(cron["cron_id"], schedule="0 0 30 2 *")  # names no day
    assert ADMIN_PASSWORD not in pod.logs() and "Traceback" not in pod.logs()


def test_should_not_prune_a_thread_that_has_a_cron(migrated_db: str, client: SyncLangGraphClient) -> None:
    with_cron, without = (client.threads.create()["thread_id"] for _ in range(2))
    client.crons.create_for_thread(with_cron, assistant(client), schedule="0 0 1 1 *")
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("UPDATE threads SET updated_at = now() - interval '40 days'")
    result = subprocess.run([sys.executable, "-m", "service.prune", "--older-than-days", "30"], cwd=ROOT,
                            env=python_env(DATABASE_URL=to_url(migrated_db)), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert client.threads.get(with_cron)["thread_id"] == with_cron
    assert client.crons.count(thread_id=with_cron) == 1
    with pytest.raises(NotFoundError):
        client.threads.get(without)


def test_should_serve_every_cron_operation_of_the_js_client(pod: ServiceProcess, client: SyncLangGraphClient) -> None:
    from tests.support.jsclient import run_js

    out = run_js("crons.mjs", pod.url, ASSISTANT_ID=assistant(client))
    created, for_thread = out["created"], out["forThread"]
    assert created["timezone"] == "Europe/Paris" and created["on_run_completed"] == "keep"
    assert created["metadata"] == {"team": "js"} and created["end_time"] is not None
    assert for_thread["thread_id"] == out["thread_id"] and for_thread["enabled"] is False
    assert (out["count"], out["countForThread"], out["countAfterDelete"]) == (2, 1, 1)
    assert [c["cron_id"] for c in out["search"]] == [created["cron_id"], for_thread["cron_id"]]
    assert out["searchSelect"] == [{"cron_id": for_thread["cron_id"], "enabled": False}]
    assert out["updated"]["schedule"] == "* * * * * */30" and out["updated"]["enabled"] is True
    assert out["invalid"]["status"] == 422 and "schedule" in out["invalid"]["message"]
