"""Continuous conversational load for fault tests: tolerant of failures, strict about losses.

Each worker holds conversations (a question, a regulated question that pauses for approval,
the approval and the resume) against the pods in turn. Every request's status and latency is
recorded; every run that was answered successfully is remembered with its question and answer,
and ``lost()`` later checks that each of them is in its thread's history, in order.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

APPROVED = "Approved by compliance for this customer."


@dataclass
class Call:
    method: str
    path: str
    status: int  # 0: no HTTP answer (connection error or client timeout)
    seconds: float
    problem: str = ""
    retry_after: str | None = None
    # A 200 that began with keep-alive newlines (runs/wait past STREAM_HEARTBEAT_SECONDS): its
    # status was sent before the run ended, so an outage after that can only show in the body.
    streamed: bool = False


@dataclass
class Load:
    urls: list[str]
    workers: int = 3
    timeout: float = 30.0
    max_conversations: int = 300
    calls: list[Call] = field(default_factory=list)
    acknowledged: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # 200 answers of runs/wait without the run's result (``{"__error__": ...}``), not acknowledged.
    errors_in_body: list[str] = field(default_factory=list)
    # The same, for answers whose 200 had already been sent as keep-alives (Call.streamed).
    streamed_errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _next: int = 0

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        with self._lock:
            self._next += 1
            url = self.urls[self._next % len(self.urls)]
        started = time.monotonic()
        try:
            response = httpx.request(method, url + path, json=body, timeout=self.timeout,
                                     headers={"connection": "close"})
        except httpx.HTTPError as exc:
            self._record(Call(method, path, 0, time.monotonic() - started, type(exc).__name__))
            return None
        call = Call(method, path, response.status_code, time.monotonic() - started,
                    streamed=response.status_code == 200 and response.content.startswith(b"\n"))
        if response.status_code >= 400:
            call.problem = response.text[:300]
            call.retry_after = response.headers.get("retry-after")
        self._record(call)
        if response.status_code >= 400 or not response.content:
            return None
        body = response.json()
        if call.streamed and isinstance(body, dict) and "__error__" in body:
            with self._lock:
                self.streamed_errors.append(str(body)[:300])
            return {"__streamed__": True}  # counted above; not an answer, not an error in the body
        return body

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _ack(self, thread_id: str, question: str, answer: str) -> None:
        with self._lock:
            self.acknowledged.setdefault(thread_id, []).append((question, answer))

    def _ask(self, thread_id: str, question: str) -> dict[str, Any] | None:
        return self._answer(self._request("POST", f"/threads/{thread_id}/runs/wait", {
            "assistant_id": "support", "input": {"messages": [{"role": "user", "content": question}]}}))

    def _answer(self, body: Any) -> dict[str, Any] | None:
        """A runs/wait body with messages, else None: a 200 carrying ``__error__`` is not an answer."""
        if body is None or "messages" in body:
            return body  # type: ignore[no-any-return]
        if body.get("__streamed__"):
            return None
        with self._lock:
            self.errors_in_body.append(str(body)[:300])
        return None

    def conversation(self, n: int) -> None:
        created = self._request("POST", "/threads", {"graph_id": "support", "metadata": {"load": n}})
        if created is None:
            return
        thread_id = created["thread_id"]
        question = f"My invoice number {n} is wrong"
        answer = self._ask(thread_id, question)
        if answer is None:
            return
        self._ack(thread_id, question, answer["messages"][-1]["content"])
        regulated = f"Are returns on plan {n} guaranteed?"
        paused = self._ask(thread_id, regulated)
        if paused is None:
            return
        if self._request("POST", f"/threads/{thread_id}/state", {"values": {"approved_reply": APPROVED}}) is None:
            return
        resumed = self._answer(self._request("POST", f"/threads/{thread_id}/runs/wait",
                                             {"assistant_id": "support", "input": None}))
        if resumed is not None:
            self._ack(thread_id, regulated, resumed["messages"][-1]["content"])

    def _worker(self, w: int) -> None:
        n = 0
        while not self._stop.is_set() and n < self.max_conversations:
            n += 1
            self.conversation(w * 10_000 + n)

    def start(self) -> Load:
        self._threads = [threading.Thread(target=self._worker, args=(w,), daemon=True) for w in range(self.workers)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 10)

    # -- results -------------------------------------------------------------------------------
    def failed(self) -> list[Call]:
        return [c for c in self.calls if c.status == 0 or c.status >= 400]

    def ok_count(self) -> int:
        return sum(1 for c in self.calls if 0 < c.status < 400)

    def lost(self, url: str) -> list[str]:
        """Acknowledged runs missing from their thread's history (should be empty)."""
        missing = []
        for thread_id, pairs in self.acknowledged.items():
            response = httpx.get(f"{url}/threads/{thread_id}/state", timeout=10)
            if response.status_code == 404:  # the whole thread is gone
                missing.extend(f"{thread_id}: question {question!r}" for question, _ in pairs)
                continue
            state = response.json()
            messages = [(m["type"], m["content"]) for m in state["values"].get("messages", [])]
            position = 0
            for question, answer in pairs:
                try:
                    q = messages.index(("human", question), position)
                except ValueError:
                    missing.append(f"{thread_id}: question {question!r}")
                    continue
                answers = [i for i, m in enumerate(messages[q + 1:], q + 1) if m == ("ai", answer)]
                if not answers:
                    missing.append(f"{thread_id}: answer to {question!r}")
                    continue
                position = answers[0] + 1
        return missing
