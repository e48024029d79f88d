"""Run webhooks through a real service process: posted on completion, refused at creation when unsafe."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from tests.support.receiver import webhook_receiver
from tests.support.service import ServiceProcess

INPUT = {"messages": [{"role": "user", "content": "hook"}], "delay": 0.05}


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_receiver() as hooks:
        yield hooks


def wait_for(got: list[Any], n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"{len(got)} of {n} webhooks arrived"
        time.sleep(0.05)


def test_should_post_the_run_to_its_webhook_when_it_completes(migrated_db: str,
                                                              receiver: tuple[str, list[Any]]) -> None:
    url, got = receiver
    with ServiceProcess(migrated_db, WEBHOOK_ALLOW_LOOPBACK="true") as pod:
        client = get_sync_client(url=pod.url)
        thread = client.threads.create()
        run: Any = client.runs.create(thread["thread_id"], "slow", input=INPUT, webhook=url)
        client.runs.join(thread["thread_id"], run["run_id"])
        waited = client.runs.wait(None, "slow", input=INPUT, webhook=url + "?from=wait")
        assert waited["steps"] == 2
        wait_for(got, 2)
    first = next(h for h in got if h["run_id"] == run["run_id"])
    assert first["status"] == "success" and first["thread_id"] == thread["thread_id"]
    assert first["values"]["steps"] == 2 and first["run_ended_at"] and first["webhook_sent_at"]
    assert {h["status"] for h in got} == {"success"}
    assert "Traceback" not in pod.logs()


UNSAFE = ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://100.100.100.200/",
          "http://127.0.0.1:9/hook", "file:///etc/passwd"]


def test_should_refuse_an_unsafe_webhook_when_the_run_is_created(migrated_db: str) -> None:
    with ServiceProcess(migrated_db) as pod:
        thread = httpx.post(pod.url + "/threads", json={}).json()
        for url in UNSAFE:
            for path in (f"/threads/{thread['thread_id']}/runs", "/runs/wait", "/runs/crons"):
                body: dict[str, Any] = {"assistant_id": "slow", "input": INPUT, "webhook": url}
                if path.endswith("crons"):
                    body["schedule"] = "0 0 * * *"
                resp = httpx.post(pod.url + path, json=body)
                assert resp.status_code == 422, (url, path, resp.text)
                assert resp.headers["content-type"].startswith("application/problem+json")
                assert "webhook" in resp.json()["detail"] and "\n" not in resp.json()["detail"]
        assert httpx.get(f"{pod.url}/threads/{thread['thread_id']}/runs").json() == []
        assert httpx.post(pod.url + "/runs/crons/count", json={}).json() == 0
