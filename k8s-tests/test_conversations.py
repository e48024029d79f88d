"""Conversations with an interrupt and a resume, each step on a different pod."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from conftest import Release, port_forward
from langgraph_sdk import get_client

pytestmark = pytest.mark.k8s


def ask(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}]}


def test_interrupt_and_resume_should_work_across_pods(release: Release) -> None:
    pods = [p["metadata"]["name"] for p in release.server_pods()]
    assert len(pods) == 2
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(port_forward(release.cluster, release.namespace, f"pod/{p}")) for p in pods]
        asyncio.run(_conversations(urls))


async def _conversations(urls: list[str]) -> None:
    a, b = (get_client(url=u) for u in urls)
    for n in range(4):
        first, second = (a, b) if n % 2 == 0 else (b, a)
        thread = await first.threads.create(graph_id="support")
        thread_id = thread["thread_id"]
        answered = await first.runs.wait(thread_id, "support", input=ask("Where is my invoice?"))
        assert answered["messages"][-1]["type"] == "ai"  # type: ignore[index,call-overload]
        await second.runs.wait(thread_id, "support", input=ask("Are investing returns guaranteed?"))
        # The pause is visible from the pod that did not run it: the state is in PostgreSQL.
        assert (await first.threads.get(thread_id))["status"] == "interrupted"
        state = await first.threads.get_state(thread_id)
        assert "human_approval" in state["next"]
        reply = f"Approved reply {n}: past performance does not promise future returns."
        await second.threads.update_state(thread_id, {"approved_reply": reply})
        final = await first.runs.wait(thread_id, "support", input=None)
        assert final["messages"][-1]["content"] == reply  # type: ignore[index,call-overload]
        assert (await second.threads.get(thread_id))["status"] == "idle"
