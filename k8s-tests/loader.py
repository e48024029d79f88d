"""Continuous conversations against one URL, counting every failed request (stdlib + httpx only).

Runs inside the cluster in a Pod of the product image (the k8s tests mount it from a ConfigMap),
so its traffic goes through the Service the way real clients' does and survives what a
port-forward would not (the pod it is bound to going away). Each request opens a new connection
(no keep-alive), so kube-proxy picks a ready endpoint for every request, as a client that retries
idempotent requests on a closed keep-alive connection would get; nothing is retried here.

One conversation: create a thread, ask a question (answered), ask a regulated one (the thread
pauses at human_approval), approve a reply, resume (the approved reply is delivered).
Prints one JSON line per --report-every conversations ({"event": "progress", ...}) and, once the
file given by --stop-file exists, one final line ({"event": "summary", ...}) and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import httpx


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


class Conversations:
    def __init__(self, url: str, graph: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.graph = graph
        self.client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0))
        self.requests = 0
        self.failed_requests = 0
        self.conversations = 0
        self.errors: list[str] = []
        self.failed_threads: list[str] = []

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        self.requests += 1
        response = self.client.request(method, self.url + path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text[:200]}")
        return response.json()

    def one(self, n: int) -> None:
        thread_id = "?"
        try:
            thread_id = self._call("POST", "/threads", {"metadata": {"source": "k8s-loader"}})["thread_id"]
            runs = f"/threads/{thread_id}/runs/wait"
            answer = self._call("POST", runs, {"assistant_id": self.graph, "input": ask(f"Where is invoice {n}?")})
            if answer["messages"][-1]["type"] != "ai":
                raise RuntimeError("no answer to the first question")
            self._call("POST", runs, {"assistant_id": self.graph, "input": ask("Are the returns guaranteed?")})
            if self._call("GET", f"/threads/{thread_id}")["status"] != "interrupted":
                raise RuntimeError("the regulated question did not pause")
            reply = f"Approved reply {n}."
            self._call("POST", f"/threads/{thread_id}/state", {"values": {"approved_reply": reply}})
            final = self._call("POST", runs, {"assistant_id": self.graph, "input": None})
            if final["messages"][-1]["content"] != reply:
                raise RuntimeError("the approved reply was not delivered")
            self.conversations += 1
        except Exception as exc:
            self.failed_requests += 1
            self.failed_threads.append(thread_id)
            if len(self.errors) < 20:
                self.errors.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {str(exc)[:300]}")

    def report(self, event: str) -> None:
        print(json.dumps({"event": event, "conversations": self.conversations, "requests": self.requests,
                          "failed_requests": self.failed_requests, "errors": self.errors,
                          "failed_threads": self.failed_threads}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--graph", default="support")
    parser.add_argument("--stop-file", default="/tmp/stop")  # noqa: S108 - the Pod's own emptyDir
    parser.add_argument("--report-every", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)
    load = Conversations(args.url, args.graph, args.timeout)
    n = 0
    while not os.path.exists(args.stop_file):
        n += 1
        load.one(n)
        if n % args.report_every == 0:
            load.report("progress")
    load.report("summary")
    return 0


if __name__ == "__main__":
    sys.exit(main())
