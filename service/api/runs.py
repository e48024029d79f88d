"""Runs on a thread or stateless (thread_id=None): wait for the result, or stream it over SSE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import structlog
from litestar import Response, post
from litestar.response import Stream

from service.app_types import ResourcesT
from service.errors import BAD_REQUEST_RESPONSES, Unavailable
from service.runs import ActiveRun, RunCreate


def _location(active: ActiveRun) -> dict[str, str]:
    return {"Content-Location": f"/threads/{active.run.thread_id}/runs/{active.run.run_id}"}


async def _admit(resources: ResourcesT, thread_id: str | None, data: RunCreate, *, stream: bool) -> ActiveRun:
    if thread_id is not None:
        structlog.contextvars.bind_contextvars(thread_id=thread_id)
    active = await resources.runs.admit(thread_id, data)
    structlog.contextvars.bind_contextvars(thread_id=active.run.thread_id, run_id=active.run.run_id,
                                           graph=active.entry.graph_id)
    return resources.runs.start(active, data, stream=stream)


async def _wait(resources: ResourcesT, thread_id: str | None, data: RunCreate) -> Response[Any]:
    active = await _admit(resources, thread_id, data, stream=False)
    assert active.task is not None
    # Shielded: a client that goes away does not cancel the run.
    outcome = await asyncio.shield(active.task)
    if outcome.unavailable:
        raise Unavailable("the database became unavailable during the run; it did not complete", retry_after=2)
    return Response(outcome.wait_body(), headers=_location(active))


async def _stream(resources: ResourcesT, thread_id: str | None, data: RunCreate) -> Stream:
    active = await _admit(resources, thread_id, data, stream=True)

    async def sse() -> AsyncIterator[bytes]:
        async for event, payload in resources.runs.events(active):
            yield b"event: " + event.encode() + b"\ndata: " + msgspec.json.encode(payload) + b"\n\n"

    return Stream(sse(), media_type="text/event-stream",
                  headers={**_location(active), "Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@post("/threads/{thread_id:str}/runs/wait", status_code=200, responses=BAD_REQUEST_RESPONSES)
async def thread_run_wait(thread_id: str, data: RunCreate, resources: ResourcesT) -> Response[Any]:
    return await _wait(resources, thread_id, data)


@post("/threads/{thread_id:str}/runs/stream", status_code=200, responses=BAD_REQUEST_RESPONSES)
async def thread_run_stream(thread_id: str, data: RunCreate, resources: ResourcesT) -> Stream:
    return await _stream(resources, thread_id, data)


@post("/runs/wait", status_code=200, responses=BAD_REQUEST_RESPONSES)
async def stateless_run_wait(data: RunCreate, resources: ResourcesT) -> Response[Any]:
    return await _wait(resources, None, data)


@post("/runs/stream", status_code=200, responses=BAD_REQUEST_RESPONSES)
async def stateless_run_stream(data: RunCreate, resources: ResourcesT) -> Stream:
    return await _stream(resources, None, data)


ROUTES = [thread_run_wait, thread_run_stream, stateless_run_wait, stateless_run_stream]
