"""Webhook delivery to a real HTTP receiver on loopback (started by the test); no other traffic.

The receiver runs in a thread of the test process and records every request; it can fail the first
N requests, hang (never answer), or hold its answer until the test releases it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.runs.webhooks import WebhookSender, webhook_payload
from service.settings import WebhookSettings

LOOPBACK = WebhookSettings(allow_loopback=True, timeout=1.0, attempts=3, backoff=0.05)


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    hang: bool = False
    hold: threading.Event | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@contextmanager
def receiver(**kw: Any) -> Iterator[Receiver]:
    state = Receiver(url="", **kw)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append({"path": self.path, "host": self.headers.get("Host"),
                                   "type": self.headers.get("Content-Type"), "body": json.loads(body)})
            if state.hang:
                state.release.wait(120)
                return
            if state.hold is not None:
                state.hold.wait(120)
            status = 503 if len(state.requests) <= state.fail_first else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()


RUN = {"run_id": "1f0c0000-0000-6000-8000-000000000001", "thread_id": "t-1", "assistant_id": "a",
       "metadata": {}, "multitask_strategy": "enqueue", "kwargs": {}}


def payload() -> dict[str, Any]:
    return webhook_payload(RUN, status="success", started_at=None, ended_at=None, values={"messages": ["hi"]})


async def deliver(url: str, policy: WebhookSettings = LOOPBACK, **kw: Any) -> bool:
    sender = WebhookSender(policy, **kw)
    try:
        return await sender.post(url, payload(), run_id=RUN["run_id"])
    finally:
        await sender.close()


def test_should_post_the_run_json_to_the_webhook() -> None:
    with receiver() as r:
        assert asyncio.run(deliver(r.url + "?k=v"))
    assert len(r.requests) == 1
    got = r.requests[0]
    assert got["path"] == "/hook?k=v" and got["type"] == "application/json"
    assert got["body"]["run_id"] == RUN["run_id"] and got["body"]["status"] == "success"
    assert got["body"]["values"] == {"messages": ["hi"]} and "webhook_sent_at" in got["body"]


def test_should_retry_a_failing_receiver_until_it_succeeds() -> None:
    with receiver(fail_first=2) as r:
        assert asyncio.run(deliver(r.url))
    assert len(r.requests) == 3


def test_should_give_up_after_the_last_attempt() -> None:
    with receiver(fail_first=10) as r:
        assert not asyncio.run(deliver(r.url))
    assert len(r.requests) == LOOPBACK.attempts


def test_should_cut_a_hanging_receiver_at_the_timeout() -> None:
    """The receiver never answers: each attempt is cut (the test would hang otherwise)."""
    with receiver(hang=True) as r:
        assert not asyncio.run(deliver(r.url, WebhookSettings(allow_loopback=True, timeout=0.5, attempts=2,
                                                              backoff=0)))
        assert len(r.requests) == 2


def test_should_deliver_in_the_background() -> None:
    hold = threading.Event()

    async def scenario(r: Receiver) -> bool:
        sender = WebhookSender(LOOPBACK)
        task = sender.send(r.url, payload())
        await asyncio.sleep(0)
        while not r.requests:  # the receiver holds its answer: the caller went on meanwhile
            await asyncio.sleep(0.01)
        assert not task.done()
        hold.set()
        result = await task
        await sender.close()
        return result

    with receiver(hold=hold) as r:
        assert asyncio.run(scenario(r))


def test_should_connect_to_the_checked_address_of_a_name() -> None:
    """A name is resolved by the guarded transport itself; the Host header still names it."""
    async def resolve(host: str, port: int) -> list[str]:
        return {"receiver.test": ["127.0.0.1"], "metadata.test": ["169.254.169.254"]}[host]

    with receiver() as r:
        port = r.url.rsplit(":", 1)[1].split("/")[0]
        assert asyncio.run(deliver(f"http://receiver.test:{port}/hook", resolve=resolve))
        assert r.requests[0]["host"] == f"receiver.test:{port}"
        # Refused before any connection: nothing reaches the network, and there is no retry.
        assert not asyncio.run(deliver("http://metadata.test/latest", resolve=resolve))
        assert len(r.requests) == 1


def test_should_refuse_loopback_unless_allowed() -> None:
    with receiver() as r:
        assert not asyncio.run(deliver(r.url, WebhookSettings(timeout=1, attempts=3, backoff=0)))
        assert r.requests == []


@pytest.mark.parametrize("literal", ["169.254.169.254", "[fd00:ec2::254]", "100.100.100.200"])
def test_should_refuse_metadata_literals_at_delivery(literal: str) -> None:
    assert not asyncio.run(deliver(f"http://{literal}/latest/meta-data/"))
