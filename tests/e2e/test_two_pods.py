"""Two service processes over one database, driven with the official langgraph-sdk client."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client

from tests.support.service import ServiceProcess

REGULATED = "Can you guarantee returns if I invest my savings with you?"
APPROVED = "Approved by compliance: we cannot promise returns; please read the risk notice."


def texts(values: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["type"], m["content"]) for m in values.get("messages", [])]


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


class TestSharedThreads:
    def test_should_continue_a_thread_created_on_one_pod_on_the_other(
        self, two_pods: tuple[ServiceProcess, ServiceProcess]
    ) -> None:
        a, b = (get_sync_client(url=p.url) for p in two_pods)
        thread = a.threads.create(graph_id="support", metadata={"customer": "c-1"})
        first = a.runs.wait(thread["thread_id"], "support", input=user("My invoice is wrong"))
        second = b.runs.wait(thread["thread_id"], "support", input=user("The app shows an error at login"))

        assert texts(first)[-1][0] == "ai"
        conversation = texts(second)
        assert [t for t, _ in conversation] == ["human", "ai", "human", "ai"]
        assert "billing" in conversation[1][1] and "signing out" in conversation[3][1]
        assert b.threads.get(thread["thread_id"])["status"] == "idle"
        assert a.threads.get_state(thread["thread_id"])["values"]["category"] == "technical"
        history = a.threads.get_history(thread["thread_id"], limit=100)
        assert len(history) >= 10
        assert a.threads.search(metadata={"customer": "c-1"})[0]["thread_id"] == thread["thread_id"]

    def test_should_pause_for_approval_on_one_pod_and_deliver_the_approved_answer_on_the_other(
        self, two_pods: tuple[ServiceProcess, ServiceProcess]
    ) -> None:
        a, b = (get_sync_client(url=p.url) for p in two_pods)
        thread_id = a.threads.create(graph_id="support")["thread_id"]
        paused = a.runs.wait(thread_id, "support", input=user(REGULATED))
        assert [t for t, _ in texts(paused)] == ["human"]  # no answer went out
        assert a.threads.get(thread_id)["status"] == "interrupted"
        state = b.threads.get_state(thread_id)
        assert state["next"] == ["human_approval"]
        assert state["values"]["needs_approval"] is True
        assert b.threads.search(status="interrupted", limit=100)

        b.threads.update_state(thread_id, {"approved_reply": APPROVED, "reviewed_by": "ops@example.com"})
        resumed = b.runs.wait(thread_id, "support", input=None)

        assert texts(resumed)[-1] == ("ai", APPROVED)
        assert a.threads.get(thread_id)["status"] == "idle"
        assert a.threads.get_state(thread_id)["values"]["reviewed_by"] == "ops@example.com"

    def test_should_resume_with_a_command_and_stream_on_both_pods(
        self, two_pods: tuple[ServiceProcess, ServiceProcess]
    ) -> None:
        a, b = (get_sync_client(url=p.url) for p in two_pods)
        thread_id = a.threads.create(graph_id="support")["thread_id"]
        parts = list(a.runs.stream(thread_id, "support", input=user(REGULATED),
                                   stream_mode=["values", "updates", "messages-tuple"]))
        events = [p.event for p in parts]
        assert events[0] == "metadata"
        assert {"values", "updates"} <= set(events)
        assert any(p.event == "updates" and "__interrupt__" in p.data for p in parts)

        # Resume on B with a command that rewrites the draft and jumps to respond.
        parts = list(b.runs.stream(thread_id, "support", command={"update": {"draft": APPROVED}, "goto": "respond"},
                                   stream_mode=["messages-tuple", "values"]))
        messages = [p.data for p in parts if p.event == "messages"]
        assert messages and messages[-1][0]["content"] == APPROVED
        assert parts[-1].event == "values" and parts[-1].data["messages"][-1]["content"] == APPROVED

        stateless = list(b.runs.stream(None, "support", input=user("hello"), stream_mode="updates"))
        assert [p.event for p in stateless][:2] == ["metadata", "updates"]

    def test_should_let_another_pod_continue_after_one_is_killed_mid_run(
        self, two_pods: tuple[ServiceProcess, ServiceProcess]
    ) -> None:
        a_proc, b_proc = two_pods
        a, b = get_sync_client(url=a_proc.url), get_sync_client(url=b_proc.url)
        thread_id = a.threads.create(graph_id="slow")["thread_id"]
        a.runs.wait(thread_id, "slow", input={**user("one"), "delay": 0})

        def doomed() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the pod dies under it
                httpx.post(f"{a_proc.url}/threads/{thread_id}/runs/wait", timeout=30,
                           json={"assistant_id": "slow", "input": {**user("two"), "delay": 20}})

        t = threading.Thread(target=doomed)
        t.start()
        def in_the_slow_node() -> bool:  # busy, and the checkpoint before the 20 s node is written
            messages = b.threads.get_state(thread_id)["values"].get("messages") or [{}]
            return b.threads.get(thread_id)["status"] == "busy" and messages[-1].get("content") == "two"

        deadline = time.monotonic() + 60
        while not in_the_slow_node():
            assert time.monotonic() < deadline, "the run never reached its slow node"
            time.sleep(0.05)
        a_proc.signal(signal.SIGKILL)
        t.join()

        state = b.threads.get_state(thread_id)
        assert state["values"]["messages"][-1]["content"] == "two"  # the last checkpoint: input recorded
        assert state["next"] == ["wait"]
        # The dead pod's lease expires (RUN_LEASE_SECONDS=3); the next run proceeds on B.
        result = b.runs.wait(thread_id, "slow", input={**user("three"), "delay": 0})
        assert result["messages"][-1]["content"] == "done: three"
        assert b.threads.get(thread_id)["status"] == "idle"


class TestOneRunPerThread:
    @staticmethod
    async def _fire(urls: list[str], thread_id: str, n: int, strategy: str) -> list[Any]:
        clients = [get_client(url=u) for u in urls]

        async def one(i: int) -> Any:
            client = clients[i % len(clients)]
            try:
                return await client.runs.wait(thread_id, "slow", input={**user(f"message-{i}"), "delay": 0.05},
                                              multitask_strategy=strategy)  # type: ignore[arg-type]
            except Exception as exc:
                return exc

        return await asyncio.gather(*(one(i) for i in range(n)))

    def test_should_run_twenty_enqueued_runs_one_at_a_time_across_both_pods(
        self, two_pods: tuple[ServiceProcess, ServiceProcess]
    ) -> None:
        urls = [p.url for p in two_pods]
        client = get_sync_client(url=urls[0])
        thread_id = client.threads.create(graph_id="slow")["thread_id"]
        results = asyncio.run(self._fire(urls, thread_id, 20, "enqueue"))

        assert not [r for r in results if isinstance(r, Exception)], results
        final = client.threads.get_state(thread_id)["values"]["messages"]
        humans = [m["content"] for m in final if m["type"] == "human"]
        assert sorted(humans) == sorted(f"message-{i}" for i in range(20))
        # One at a time: every answer directly follows its own question.
        for question, answer in zip(final[::2], final[1::2], strict=True):
            assert answer["content"] == f"done: {question['content']}"
        assert client.threads.get(thread_id)["status"] == "idle"

    def test_should_reject_runs_on_a_busy_thread_with_409(
        self, two_pods: tuple[ServiceProcess, ServiceProcess]
    ) -> None:
        urls = [p.url for p in two_pods]
        client = get_sync_client(url=urls[0])
        thread_id = client.threads.create(graph_id="slow")["thread_id"]
        results = asyncio.run(self._fire(urls, thread_id, 20, "reject"))

        ok = [r for r in results if not isinstance(r, Exception)]
        rejected = [r for r in results if isinstance(r, Exception)]
        assert ok and rejected
        assert all(getattr(getattr(r, "response", None), "status_code", None) == 409 for r in rejected), rejected
        humans = [m for m in client.threads.get_state(thread_id)["values"]["messages"] if m["type"] == "human"]
        assert len(humans) == len(ok)


@pytest.mark.parametrize("path", ["/ok", "/ready", "/info"])
def test_should_answer_health_and_info(two_pods: tuple[ServiceProcess, ServiceProcess], path: str) -> None:
    response = httpx.get(two_pods[0].url + path)
    assert response.status_code == 200
    if path == "/info":
        assert response.json()["checkpointer"] == "postgres"
