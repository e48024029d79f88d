"""stream_mode "messages" and "events" as the LangGraph Server streams them, driven by langgraph-sdk.

The ``chatty`` graph (tests/support/graphs.py) answers with LangChain's fake chat model, which
streams its reply word by word (offline, deterministic), then adds a signature message without
streaming it. "messages" gives ``messages/metadata`` for each new message id, ``messages/partial``
with the message accumulated so far for every streamed chunk, and ``messages/complete`` for a
message that came whole; "events" gives LangChain's ``astream_events`` v2 events.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from tests.support.graphs import REPLY, SIGNATURE
from tests.support.jsclient import run_js
from tests.support.service import ServiceProcess

QUESTION = {"messages": [{"role": "user", "content": "When does my order ship?"}]}


@pytest.fixture(scope="module")
def pods(pg_server: Any) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("streammodes")
    run(Options(conninfo=conninfo))
    a, b = ServiceProcess(conninfo), ServiceProcess(conninfo)
    try:
        a.start(wait=None)
        b.start(wait=None)
        a.wait_for("/ready")
        b.wait_for("/ready")
        yield a, b
    finally:
        a.stop()
        b.stop()
        pg_server.drop_database(conninfo)


@pytest.fixture
def clients(pods: tuple[ServiceProcess, ServiceProcess]) -> tuple[SyncLangGraphClient, SyncLangGraphClient]:
    return get_sync_client(url=pods[0].url), get_sync_client(url=pods[1].url)


def parts(stream: Iterator[Any]) -> list[tuple[str, Any]]:
    return [(p.event, p.data) for p in stream]


def assert_messages_sequence(events: list[tuple[str, Any]]) -> None:
    """The LangGraph Server's "messages" events for one chatty run (after its metadata event)."""
    names = [name for name, _ in events]
    assert names[0] == "metadata"
    partial = [data for name, data in events if name == "messages/partial"]
    assert len(partial) > 2  # streamed chunk by chunk, not in one piece
    assert names == (["metadata", "messages/metadata"] + ["messages/partial"] * len(partial)
                     + ["messages/metadata", "messages/complete"])
    # Each partial is the whole message so far: one message, a growing prefix, ending with the reply.
    contents = [p[0]["content"] for p in partial]
    assert all(len(p) == 1 for p in partial)
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(contents))
    assert contents[-1] == REPLY
    assert {p[0]["type"] for p in partial} == {"ai"}
    streamed_id = partial[0][0]["id"]
    assert {p[0]["id"] for p in partial} == {streamed_id}
    # Metadata keyed by message id, with the node that produced it.
    first_meta, second_meta = (data for name, data in events if name == "messages/metadata")
    assert list(first_meta) == [streamed_id]
    assert first_meta[streamed_id]["metadata"]["langgraph_node"] == "answer"
    [signature_id] = second_meta
    assert signature_id.startswith("signature-")
    assert second_meta[signature_id]["metadata"]["langgraph_node"] == "sign"
    complete = events[-1][1]
    assert [(m["type"], m["id"], m["content"]) for m in complete] == [("ai", signature_id, SIGNATURE)]


class TestMessagesMode:
    def test_should_stream_partial_then_complete_messages_on_a_thread(
        self, clients: tuple[SyncLangGraphClient, SyncLangGraphClient]
    ) -> None:
        client, _ = clients
        thread_id = client.threads.create()["thread_id"]
        events = parts(client.runs.stream(thread_id, "chatty", input=QUESTION, stream_mode="messages"))
        assert_messages_sequence(events)
        state = client.threads.get_state(thread_id)
        assert [m["content"] for m in state["values"]["messages"]][1:] == [REPLY, SIGNATURE]

    def test_should_stream_messages_beside_values_on_a_stateless_run(
        self, clients: tuple[SyncLangGraphClient, SyncLangGraphClient]
    ) -> None:
        client, _ = clients
        events = parts(client.runs.stream(None, "chatty", input=QUESTION, stream_mode=["messages", "values"]))
        assert_messages_sequence([e for e in events if e[0] != "values"])
        values = [data for name, data in events if name == "values"]
        assert [m["content"] for m in values[-1]["messages"]][1:] == [REPLY, SIGNATURE]

    def test_should_keep_messages_tuple_as_it_was(
        self, clients: tuple[SyncLangGraphClient, SyncLangGraphClient]
    ) -> None:
        client, _ = clients
        events = parts(client.runs.stream(None, "chatty", input=QUESTION, stream_mode="messages-tuple"))
        tuples = [data for name, data in events if name == "messages"]
        assert {name for name, _ in events} == {"metadata", "messages"}
        assert "".join(chunk["content"] for chunk, meta in tuples if meta["langgraph_node"] == "answer") == REPLY

    def test_should_replay_a_background_run_on_the_other_pod_and_resume_after_an_event(
        self, clients: tuple[SyncLangGraphClient, SyncLangGraphClient]
    ) -> None:
        a, b = clients
        thread_id = a.threads.create()["thread_id"]
        run = a.runs.create(thread_id, "chatty", input=QUESTION, stream_mode="messages")
        joined = list(b.runs.join_stream(thread_id, run["run_id"]))
        assert_messages_sequence([(p.event, p.data) for p in joined])
        # Filtered by mode on the join: "messages" keeps every messages/* event.
        filtered = parts(b.runs.join_stream(thread_id, run["run_id"], stream_mode="messages"))
        assert filtered == [(p.event, p.data) for p in joined]
        # Resumed after the third event: the rest, from the stored events.
        rest = list(a.runs.join_stream(thread_id, run["run_id"], last_event_id=joined[2].id))
        assert [(p.event, p.data) for p in rest] == [(p.event, p.data) for p in joined[3:]]

    def test_should_follow_messages_on_the_thread_stream_of_the_other_pod(
        self, clients: tuple[SyncLangGraphClient, SyncLangGraphClient]
    ) -> None:
        a, b = clients
        thread_id = a.threads.create()["thread_id"]
        run = a.runs.create(thread_id, "chatty", input=QUESTION, stream_mode="messages")
        seen: list[tuple[str, Any]] = []
        # From the run's first event on (the thread stream's ids are run_id:seq), whether it is over yet or not.
        for part in b.threads.join_stream(thread_id, last_event_id=f"{run['run_id']}:0"):
            assert part.id is not None and part.id.startswith(run["run_id"] + ":")
            seen.append((part.event, part.data))
            if part.event == "messages/complete":
                break
        assert_messages_sequence(seen)


class TestEventsMode:
    def test_should_stream_astream_events_v2(self, clients: tuple[SyncLangGraphClient, SyncLangGraphClient]) -> None:
        client, _ = clients
        thread_id = client.threads.create()["thread_id"]
        events = parts(client.runs.stream(thread_id, "chatty", input=QUESTION, stream_mode="events"))
        assert events[0][0] == "metadata"
        run_id = events[0][1]["run_id"]
        assert {name for name, _ in events[1:]} == {"events"}
        data = [d for _, d in events[1:]]
        # The graph's own run (named by its graph id) opens and closes the stream, with the run's id.
        assert (data[0]["event"], data[0]["name"], data[0]["run_id"]) == ("on_chain_start", "chatty", run_id)
        assert (data[-1]["event"], data[-1]["run_id"]) == ("on_chain_end", run_id)
        assert [m["content"] for m in data[-1]["data"]["output"]["messages"]][1:] == [REPLY, SIGNATURE]
        # The model's tokens, in order, make the reply; the root's own stream items are not events.
        tokens = [d["data"]["chunk"]["content"] for d in data if d["event"] == "on_chat_model_stream"]
        assert len(tokens) > 2 and "".join(tokens) == REPLY
        assert not [d for d in data if d["event"] == "on_chain_stream" and d["run_id"] == run_id]
        nodes = [d["name"] for d in data if d["event"] == "on_chain_start" and d["run_id"] != run_id]
        assert "answer" in nodes and "sign" in nodes

    def test_should_stream_events_beside_updates_and_replay_them_on_the_other_pod(
        self, clients: tuple[SyncLangGraphClient, SyncLangGraphClient]
    ) -> None:
        a, b = clients
        thread_id = a.threads.create()["thread_id"]
        run = a.runs.create(thread_id, "chatty", input=QUESTION, stream_mode=["events", "updates"])
        events = parts(b.runs.join_stream(thread_id, run["run_id"]))
        updates = [data for name, data in events if name == "updates"]
        assert [list(u) for u in updates] == [["answer"], ["sign"]]
        assert updates[0]["answer"]["messages"][0]["content"] == REPLY
        only_updates = parts(b.runs.join_stream(thread_id, run["run_id"], stream_mode="updates"))
        assert [name for name, _ in only_updates] == ["metadata", "updates", "updates"]
        assert "".join(d["data"]["chunk"]["content"] for name, d in events
                       if name == "events" and d["event"] == "on_chat_model_stream") == REPLY


def test_should_stream_messages_and_events_to_the_js_client(pods: tuple[ServiceProcess, ServiceProcess]) -> None:
    """@langchain/langgraph-sdk (npm, pinned in tests/e2e/js): tests/e2e/js/streams.mjs."""
    out = run_js("streams.mjs", pods[0].url, LANGGRAPH_URL_B=pods[1].url)
    assert_messages_sequence([tuple(p) for p in out["messages"]])  # type: ignore[misc]
    assert_messages_sequence([tuple(p) for p in out["joined"]])  # type: ignore[misc]
    events = out["events"]
    assert events[0][0] == "metadata" and {name for name, _ in events[1:]} == {"events"}
    tokens = [d["data"]["chunk"]["content"] for _, d in events[1:] if d["event"] == "on_chat_model_stream"]
    assert "".join(tokens) == REPLY


def sse_events(response: httpx.Response) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    event: dict[str, str] = {}
    for line in [*response.iter_lines(), ""]:
        if not line:
            if "event" in event:
                out.append((event["event"], json.loads(event["data"])))
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            event[key] = value
    return out


def test_should_stream_messages_and_events_without_postgres_runs() -> None:
    """CHECKPOINTER=memory runs in the request's process (service/runs/local.py): the same events.

    Raw HTTP: the SDK asks for the run after its stream ends, which needs PostgreSQL's run rows."""
    with ServiceProcess(None, CHECKPOINTER="memory") as pod, httpx.Client(base_url=pod.url, timeout=60) as http:
        thread_id = http.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": "chatty", "input": QUESTION, "stream_mode": "messages"}
        with http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response:
            assert_messages_sequence(sse_events(response))
        body["stream_mode"] = "events"
        with http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response:
            events = sse_events(response)
        assert "".join(d["data"]["chunk"]["content"] for name, d in events
                       if name == "events" and d["event"] == "on_chat_model_stream") == REPLY

