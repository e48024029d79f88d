"""The ``refunds`` example graph: an ``interrupt()`` with Agent Inbox's payload, answered via langgraph-sdk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from tests.support.service import ServiceProcess

ASK = {"messages": [{"role": "user", "content": "Please refund $40.50 for order A-1234, it arrived broken."}]}


@pytest.fixture(scope="module")
def pod(pg_server: Any) -> Iterator[ServiceProcess]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("refunds")
    run(Options(conninfo=conninfo))
    with ServiceProcess(conninfo, GRAPHS=json.dumps({"refunds": "service.graphs.refunds:graph"})) as p:
        yield p
    pg_server.drop_database(conninfo)


@pytest.fixture
def client(pod: ServiceProcess) -> SyncLangGraphClient:
    return get_sync_client(url=pod.url)


def paused(client: SyncLangGraphClient) -> tuple[str, dict[str, Any]]:
    thread_id = client.threads.create(graph_id="refunds")["thread_id"]
    client.runs.wait(thread_id, "refunds", input=ASK)
    thread = client.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    (interrupts,) = thread["interrupts"].values()
    (request,) = interrupts[0]["value"]
    return thread_id, request


def last_message(client: SyncLangGraphClient, thread_id: str) -> str:
    return str(client.threads.get_state(thread_id)["values"]["messages"][-1]["content"])


def test_should_pause_with_the_human_interrupt_payload(client: SyncLangGraphClient) -> None:
    thread_id, request = paused(client)
    assert request["action_request"] == {"action": "issue_refund", "args": {
        "order_id": "A-1234", "amount": 40.5, "currency": "USD", "reason": ASK["messages"][0]["content"]}}
    assert request["config"] == {"allow_ignore": True, "allow_respond": True, "allow_edit": True,
                                 "allow_accept": True}
    assert "40.50 USD" in request["description"] and "A-1234" in request["description"]
    state = client.threads.get_state(thread_id)
    assert state["next"] == ["review"]
    assert state["tasks"][0]["interrupts"][0]["value"] == [request]


def test_should_issue_the_refund_on_accept(client: SyncLangGraphClient) -> None:
    thread_id, _ = paused(client)
    client.runs.wait(thread_id, "refunds", command={"resume": [{"type": "accept", "args": None}]})
    assert last_message(client, thread_id) == "Refund of 40.50 USD issued for order A-1234."
    assert client.threads.get(thread_id)["status"] == "idle"
    assert client.threads.get_state(thread_id)["values"]["decision"] == "accepted"


def test_should_issue_the_edited_refund_on_edit(client: SyncLangGraphClient) -> None:
    thread_id, request = paused(client)
    edited = {"action": "issue_refund", "args": {**request["action_request"]["args"], "amount": 25}}
    client.runs.wait(thread_id, "refunds", command={"resume": [{"type": "edit", "args": edited}]})
    assert last_message(client, thread_id) == "Refund of 25.00 USD issued for order A-1234."


def test_should_decline_with_the_operators_text_on_response(client: SyncLangGraphClient) -> None:
    thread_id, _ = paused(client)
    text = "We need a photo of the damage before we can refund."
    client.runs.wait(thread_id, "refunds", command={"resume": [{"type": "response", "args": text}]})
    assert last_message(client, thread_id) == text
    assert client.threads.get_state(thread_id)["values"]["decision"] == "responded"


def test_should_decline_on_ignore(client: SyncLangGraphClient) -> None:
    thread_id, _ = paused(client)
    client.runs.wait(thread_id, "refunds", command={"resume": [{"type": "ignore", "args": None}]})
    assert last_message(client, thread_id) == "Your refund request for order A-1234 was declined."


def test_should_stream_the_interrupt_to_a_streaming_client(client: SyncLangGraphClient) -> None:
    thread_id = client.threads.create(graph_id="refunds")["thread_id"]
    parts = list(client.runs.stream(thread_id, "refunds", input=ASK, stream_mode="updates"))
    interrupts = [p.data["__interrupt__"] for p in parts if p.event == "updates" and "__interrupt__" in p.data]
    assert interrupts and interrupts[0][0]["value"][0]["action_request"]["action"] == "issue_refund"
