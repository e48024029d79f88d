"""``python -m service.smoke --url URL``: is a deployment serving? (the chart's ``helm test``)

Checks ``/ready``, then holds one conversation with the built-in ``support`` graph through the
official langgraph-sdk client: a question that is answered at once, and a regulated one that
pauses for approval and is resumed. Exit 0 when all of it works; otherwise one line on stderr
and exit 1. ``API_KEY`` (or the first of the comma-separated ``API_KEYS``) is sent as x-api-key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import Any

import httpx
from langgraph_sdk import get_client


def _ask(text: str) -> Any:
    return {"messages": [{"role": "user", "content": text}]}


async def converse(url: str, api_key: str | None, graph: str, timeout: float = 10.0) -> str:
    headers = {"x-api-key": api_key} if api_key else {}
    async with httpx.AsyncClient(timeout=timeout) as http:
        ready = await http.get(f"{url}/ready", headers=headers)
        if ready.status_code != 200:
            raise RuntimeError(f"/ready answered {ready.status_code}: {ready.text[:200]}")
    client = get_client(url=url, api_key=api_key)
    thread = await client.threads.create(graph_id=graph, metadata={"source": "smoke-test"})
    thread_id = thread["thread_id"]
    try:
        answer: Any = await client.runs.wait(thread_id, graph, input=_ask("Where is my invoice?"))
        if answer["messages"][-1]["type"] != "ai":
            raise RuntimeError("the first question got no answer")
        await client.runs.wait(thread_id, graph, input=_ask("Are investment returns guaranteed?"))
        if (await client.threads.get(thread_id))["status"] != "interrupted":
            raise RuntimeError("the regulated question did not pause for approval")
        await client.threads.update_state(thread_id, {"approved_reply": "Approved by the smoke test."})
        final: Any = await client.runs.wait(thread_id, graph, input=None)
        if final["messages"][-1]["content"] != "Approved by the smoke test.":
            raise RuntimeError("the approved answer was not delivered")
    finally:
        await client.threads.delete(thread_id)
    return thread_id


def describe(exc: BaseException, url: str) -> str:
    """One line naming the request (method and URL) and the cause, even when the message is empty.

    httpx's timeouts and many connection errors carry an empty message (``ConnectTimeout: ``);
    the cause chain (the socket error underneath) and the request say what actually happened.
    """
    request = None
    with contextlib.suppress(RuntimeError):  # an HTTPError without a request raises RuntimeError
        request = getattr(exc, "request", None)
    where = f"{request.method} {request.url}" if isinstance(request, httpx.Request) else url
    causes: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(causes) < 4:
        text = str(seen).splitlines()[0].strip() if str(seen).strip() else ""
        if text and text not in causes:
            causes.append(text)
        seen = seen.__cause__ or seen.__context__
    if not causes and isinstance(exc, httpx.TimeoutException):
        causes.append("no answer within the timeout")
    return f"{type(exc).__name__} on {where}: {'; '.join(causes) or 'no detail given'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the service's base URL, e.g. http://langgraph-pg:8000")
    parser.add_argument("--graph", default="support")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request (default 10)")
    args = parser.parse_args(argv)
    api_key = os.environ.get("API_KEY") or (os.environ.get("API_KEYS", "").split(",")[0].strip() or None)
    url = args.url.rstrip("/")
    try:
        thread_id = asyncio.run(converse(url, api_key, args.graph, args.timeout))
    except Exception as exc:
        print(f"smoke: FAILED: {describe(exc, url)}", file=sys.stderr)
        return 1
    print(f"smoke: ok (ready; conversation {thread_id} answered, paused, approved, resumed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
