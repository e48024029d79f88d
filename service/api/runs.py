"""Runs: create (background, wait, stream, batch), list, get, delete, cancel, join and join the stream.

Shapes and headers as the LangGraph Server answers (langgraph-api 0.16.7): ``Content-Location``
names the run, ``Location`` where to join it. Long waits stay alive: runs/wait and join answer at
once when the run ends within one heartbeat interval, else they start the body and send a
newline every interval until the JSON result (leading whitespace is valid JSON); SSE streams
send a ``: heartbeat`` comment when no event came for one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import msgspec
import structlog
from litestar import Request, Response, delete, get, post
from litestar.params import Parameter
from litestar.response import Stream

from service.api.threads import visible_thread
from service.app_types import ResourcesT
from service.assistants.store import parse_id, system_assistants
from service.auth.gate import authorize, restricted, run_configurable
from service.errors import BAD_REQUEST_RESPONSES, NotFound, NotSupported, Unavailable, Unprocessable
from service.runs.events import Event
from service.runs.execution import Outcome, RunCreate
from service.runs.local import LocalRunManager
from service.runs.manager import Created, Kind, QueueRunManager
from service.runs.queue import CancelAction, run_json

MAX_LIMIT = 1000
SSE = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class RunsCancel(msgspec.Struct, kw_only=True):
    status: Literal["pending", "running", "all"] | None = None
    thread_id: str | None = None
    run_ids: list[str] | None = None


def _queue(resources: ResourcesT) -> QueueRunManager:
    if not isinstance(resources.runs, QueueRunManager):
        raise NotSupported("background runs, join and cancel need PostgreSQL (CHECKPOINTER=memory runs only "
                        "runs/wait and runs/stream)")
    return resources.runs


def _paths(thread_id: str | None, run_id: str, then: str) -> dict[str, str]:
    base = f"/threads/{thread_id}/runs/{run_id}" if thread_id is not None else f"/runs/{run_id}"
    return {"Location": f"{base}/{then}", "Content-Location": base}


def _bind(created: Created) -> None:
    structlog.contextvars.bind_contextvars(thread_id=created.thread_id, run_id=created.run_id,
                                           graph=created.entry.graph_id)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _action(value: str | None) -> CancelAction:
    return "rollback" if value == "rollback" else "interrupt"


# -- response bodies ---------------------------------------------------------------------------------
async def _wait_response(outcome: Awaitable[Outcome], headers: dict[str, str], heartbeat: float,
                         on_disconnect: Callable[[], Awaitable[Any]] | None = None,
                         durable: Callable[[], Awaitable[Any]] | None = None) -> Response[Any] | Stream:
    """The run's answer; a run still going after ``heartbeat`` s is answered 200 at once, its body later.

    ``durable`` makes the run's creation durable before that early 200 (with its run id in the
    headers) goes out: a runs/wait commits it without waiting for the disk (RunQueue.submit).
    """
    task = asyncio.ensure_future(outcome)
    done, _ = await asyncio.wait({task}, timeout=heartbeat)
    if not done and durable is not None:
        await durable()
        done, _ = await asyncio.wait({task}, timeout=0)
    if done:
        result = task.result()
        if result.unavailable:
            raise Unavailable("the database became unavailable during the run; it did not complete", retry_after=2)
        return Response(result.wait_body(), headers=headers)

    async def body() -> AsyncIterator[bytes]:
        finished = False
        try:
            # The 200 goes out now, a heartbeat after the request: start the body with a keep-alive at
            # once, so that every answer sent this way (an outage in it included) is told by its first byte.
            yield b"\n"
            while not (await asyncio.wait({task}, timeout=heartbeat))[0]:
                yield b"\n"
            finished = True
            yield msgspec.json.encode(task.result().wait_body())
        finally:
            if not finished and on_disconnect is not None:
                await asyncio.shield(on_disconnect())

    return Stream(body(), media_type="application/json", headers=headers)


def _sse(events: AsyncIterator[Event], heartbeat: float, modes: set[str] | None = None,
         on_disconnect: Callable[[], Awaitable[Any]] | None = None) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        finished = False
        iterator = events.__aiter__()
        pending: asyncio.Future[Event] = asyncio.ensure_future(iterator.__anext__())
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=heartbeat)
                if not done:
                    yield b": heartbeat\n\n"
                    continue
                try:
                    seq, event, data = pending.result()
                except StopAsyncIteration:
                    finished = True
                    return
                pending = asyncio.ensure_future(iterator.__anext__())
                if modes and event not in ("metadata", "error") and _mode_of(event) not in modes:
                    continue
                yield b"event: " + event.encode() + b"\ndata: " + data + b"\nid: " + str(seq).encode() + b"\n\n"
        finally:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
            with contextlib.suppress(BaseException):
                await iterator.aclose()  # type: ignore[attr-defined]
            if not finished and on_disconnect is not None:
                await asyncio.shield(on_disconnect())

    return body()


def _mode_of(event: str) -> str:
    """The stream mode an event belongs to: ``updates|sub`` to updates, ``messages/partial`` to messages."""
    return event.split("|")[0].split("/")[0]


def _modes_filter(stream_mode: list[str] | None) -> set[str] | None:
    modes = {"messages" if m == "messages-tuple" else m for m in stream_mode or () if m}
    return modes or None


# -- creating ----------------------------------------------------------------------------------------
async def authorize_run(resources: ResourcesT, thread_id: str | None, data: RunCreate) -> None:
    """``threads:create_run`` (it may add metadata), the thread it names, and the assistant it runs.

    A thread the caller may not use is 404, as if absent; so is an assistant they may not read
    (the system assistants of the graphs excepted, as on the LangGraph Server).
    """
    if not restricted():
        return
    value: dict[str, Any] = {
        "thread_id": thread_id, "assistant_id": data.assistant_id, "run_id": None, "status": "pending",
        "metadata": dict(data.metadata or {}), "prevent_insert_if_inflight": True,
        "multitask_strategy": data.multitask_strategy, "if_not_exists": data.if_not_exists,
        "after_seconds": data.after_seconds,
        "kwargs": {"input": data.input, "config": data.config, "context": data.context},
    }
    auth = await authorize("threads", "create_run", value)
    data.metadata = dict(value.get("metadata") or {}) or None
    if thread_id is not None:
        seen = await resources.threads.access(thread_id, auth)
        if seen is False or (seen is None and data.if_not_exists != "create"):
            raise NotFound(f"thread {thread_id} not found")
    try:
        key = parse_id(data.assistant_id, resources.graphs)
    except NotFound:
        return  # the run's own resolution answers 404
    if key not in {a.assistant_id for a in system_assistants(resources.graphs)}:
        read = await authorize("assistants", "read", {"assistant_id": key})
        if read:
            await resources.assistants.get(key, read)


async def _create(resources: ResourcesT, thread_id: str | None, data: RunCreate, kind: Kind) -> Created:
    if thread_id is not None:
        structlog.contextvars.bind_contextvars(thread_id=thread_id)
    await authorize_run(resources, thread_id, data)
    created = await _queue(resources).create(thread_id, data, kind, run_configurable())
    _bind(created)
    return created


async def _wait(resources: ResourcesT, thread_id: str | None, data: RunCreate) -> Response[Any] | Stream:
    runs = resources.runs
    heartbeat = resources.settings.server.heartbeat_seconds
    if isinstance(runs, LocalRunManager):
        active = runs.start(await runs.admit(thread_id, data), data, stream=False)
        assert active.task is not None
        headers = _paths(thread_id and active.run.thread_id, active.run.run_id, "join")
        return await _wait_response(asyncio.shield(active.task), headers, heartbeat)
    created = await _create(resources, thread_id, data, "wait")
    manager = _queue(resources)

    async def cancel() -> None:
        if data.on_disconnect == "cancel":
            await manager.cancel(action="interrupt", run_ids=[created.run_id])

    return await _wait_response(manager.outcome(created.run_id, created.thread_id, created.execution),
                                _paths(thread_id and created.thread_id, created.run_id, "join"), heartbeat, cancel,
                                functools.partial(manager.queue.flush, created.run_id))


async def _stream(resources: ResourcesT, thread_id: str | None, data: RunCreate) -> Stream:
    runs = resources.runs
    heartbeat = resources.settings.server.heartbeat_seconds
    if isinstance(runs, LocalRunManager):
        active = runs.start(await runs.admit(thread_id, data), data, stream=True)

        async def local_events() -> AsyncIterator[Event]:
            seq = 0
            async for event, payload in runs.events(active):
                seq += 1
                yield seq, event, msgspec.json.encode(payload)

        return Stream(_sse(local_events(), heartbeat), media_type="text/event-stream",
                      headers={**_paths(thread_id and active.run.thread_id, active.run.run_id, "stream"),
                               **SSE_HEADERS})
    created = await _create(resources, thread_id, data, "stream")
    manager = _queue(resources)

    async def cancel() -> None:
        if data.on_disconnect == "cancel":
            await manager.cancel(action="interrupt", run_ids=[created.run_id])

    return Stream(_sse(manager.follow(created.run_id), heartbeat, on_disconnect=cancel),
                  media_type="text/event-stream",
                  headers={**_paths(thread_id and created.thread_id, created.run_id, "stream"), **SSE_HEADERS})


@post("/threads/{thread_id:str}/runs", status_code=200)
async def create_thread_run(thread_id: str, data: RunCreate, resources: ResourcesT) -> Response[Any]:
    created = await _create(resources, thread_id, data, "background")
    return Response(run_json(created.row), headers={"Content-Location": f"/threads/{thread_id}/runs/{created.run_id}"})


@post("/runs", status_code=200)
async def create_stateless_run(data: RunCreate, resources: ResourcesT) -> Response[Any]:
    created = await _create(resources, None, data, "background")
    return Response(run_json(created.row), headers={"Content-Location": f"/runs/{created.run_id}"})


@post("/runs/batch", status_code=200)
async def create_run_batch(data: list[RunCreate], resources: ResourcesT) -> list[dict[str, Any]]:
    if not data:
        raise Unprocessable("a batch needs at least one run")
    return [run_json((await _create(resources, None, body, "background")).row) for body in data]


@post("/threads/{thread_id:str}/runs/wait", status_code=200, responses=BAD_REQUEST_RESPONSES)
async def thread_run_wait(thread_id: str, data: RunCreate, resources: ResourcesT) -> Response[Any] | Stream:
    return await _wait(resources, thread_id, data)


@post("/threads/{thread_id:str}/runs/stream", status_code=200, responses=BAD_REQUEST_RESPONSES,
      media_type=SSE)
async def thread_run_stream(thread_id: str, data: RunCreate, resources: ResourcesT) -> Stream:
    return await _stream(resources, thread_id, data)


@post("/runs/wait", status_code=200, responses=BAD_REQUEST_RESPONSES)
async def stateless_run_wait(data: RunCreate, resources: ResourcesT) -> Response[Any] | Stream:
    return await _wait(resources, None, data)


@post("/runs/stream", status_code=200, responses=BAD_REQUEST_RESPONSES, media_type=SSE)
async def stateless_run_stream(data: RunCreate, resources: ResourcesT) -> Stream:
    return await _stream(resources, None, data)


# -- reading -----------------------------------------------------------------------------------------
@get("/threads/{thread_id:str}/runs")
async def list_runs(thread_id: str, resources: ResourcesT, limit: int = Parameter(default=10, ge=1, le=MAX_LIMIT),
                    offset: int = Parameter(default=0, ge=0),
                    status: Literal["pending", "running", "error", "success", "timeout", "interrupted"] | None = None,
                    select: list[str] | None = None) -> list[dict[str, Any]]:
    manager = _queue(resources)
    await visible_thread(resources, thread_id, "search", {"thread_id": thread_id, "metadata": {}})
    rows = await manager.of_thread(thread_id, status, limit, offset)
    out = [run_json(r) for r in rows]
    if select:
        out = [{k: v for k, v in r.items() if k in select} for r in out]
    return out


@get("/threads/{thread_id:str}/runs/{run_id:str}")
async def get_run(thread_id: str, run_id: str, resources: ResourcesT) -> dict[str, Any]:
    manager = _queue(resources)
    await visible_thread(resources, thread_id, "read", {"thread_id": thread_id, "run_id": run_id})
    return run_json(await manager.get(thread_id, run_id))


@delete("/threads/{thread_id:str}/runs/{run_id:str}", status_code=204)
async def delete_run(thread_id: str, run_id: str, resources: ResourcesT) -> None:
    manager = _queue(resources)
    await visible_thread(resources, thread_id, "delete", {"thread_id": thread_id, "run_id": run_id})
    await manager.delete(thread_id, run_id)


@get("/threads/{thread_id:str}/runs/{run_id:str}/join")
async def join_run(thread_id: str, run_id: str, resources: ResourcesT,
                   cancel_on_disconnect: str | None = None) -> Response[Any] | Stream:
    manager = _queue(resources)
    await visible_thread(resources, thread_id, "read", {"thread_id": thread_id, "run_id": run_id})
    row = await manager.get(thread_id, run_id)

    async def cancel() -> None:
        if _flag(cancel_on_disconnect):
            await manager.cancel(action="interrupt", run_ids=[str(row["run_id"])])

    return await _wait_response(manager.outcome(str(row["run_id"]), thread_id), {},
                                resources.settings.server.heartbeat_seconds, cancel)


@get("/threads/{thread_id:str}/runs/{run_id:str}/stream", media_type=SSE)
async def join_run_stream(thread_id: str, run_id: str, request: Request[Any, Any, Any], resources: ResourcesT,
                          stream_mode: list[str] | None = None, cancel_on_disconnect: str | None = None,
                          last_event_id: str | None = Parameter(header="Last-Event-ID", default=None)) -> Stream:
    manager = _queue(resources)
    await visible_thread(resources, thread_id, "read", {"thread_id": thread_id, "run_id": run_id})
    row = await manager.get(thread_id, run_id)
    try:
        after = int(last_event_id) if last_event_id else 0
    except ValueError:
        raise Unprocessable(f"Last-Event-ID must be an event id from this stream, got {last_event_id!r}") from None

    async def cancel() -> None:
        if _flag(cancel_on_disconnect):
            await manager.cancel(action="interrupt", run_ids=[str(row["run_id"])])

    return Stream(_sse(manager.follow(str(row["run_id"]), after), resources.settings.server.heartbeat_seconds,
                       _modes_filter(stream_mode), cancel),
                  media_type="text/event-stream", headers=SSE_HEADERS)


THREAD_STREAM_MODES = ("run_modes", "lifecycle", "state_update")


@get("/threads/{thread_id:str}/stream", media_type=SSE)
async def join_thread_stream(thread_id: str, resources: ResourcesT, stream_modes: str | None = None,
                             stream_mode: list[str] | None = None,
                             last_event_id: str | None = Parameter(header="Last-Event-ID", default=None)) -> Stream:
    """Every run of the thread, one after another, as they come (the SDK's ``threads.join_stream``).

    Event ids are ``<run_id>:<seq>``, so ``Last-Event-ID`` resumes inside the run it names.
    """
    manager = _queue(resources)
    requested = [m.strip() for m in (stream_modes or "").split(",") if m.strip()] + [m for m in stream_mode or [] if m]
    unknown = [m for m in requested if m not in THREAD_STREAM_MODES]
    if unknown:
        raise Unprocessable(f"unknown stream mode {unknown[0]!r}; use one of {list(THREAD_STREAM_MODES)}")
    if any(m != "run_modes" for m in requested):
        raise Unprocessable("thread stream modes lifecycle and state_update are not served; use run_modes")
    resume: tuple[str, int] | None = None
    if last_event_id:
        run_id, _, seq = last_event_id.rpartition(":")
        if not run_id or not seq.isdigit():
            raise Unprocessable(f"Last-Event-ID must be an event id of this thread's stream, got {last_event_id!r}")
        resume = (run_id, int(seq))
    await visible_thread(resources, thread_id)  # 404 before the stream starts
    heartbeat = resources.settings.server.heartbeat_seconds

    async def events() -> AsyncIterator[bytes]:
        async for chunk in _sse(_thread_events(manager, thread_id, resume), heartbeat):
            yield chunk

    return Stream(events(), media_type="text/event-stream", headers=SSE_HEADERS)


async def _thread_events(manager: QueueRunManager, thread_id: str,
                         resume: tuple[str, int] | None) -> AsyncIterator[Event]:
    async for run_id, (seq, event, data) in manager.follow_thread(thread_id, resume):
        yield f"{run_id}:{seq}", event, data  # type: ignore[misc]


# -- cancelling --------------------------------------------------------------------------------------
@post("/threads/{thread_id:str}/runs/{run_id:str}/cancel", status_code=202)
async def cancel_run(thread_id: str, run_id: str, resources: ResourcesT, wait: str | None = None,
                     action: str | None = None) -> Response[Any] | Stream:
    manager = _queue(resources)
    await visible_thread(resources, thread_id, "update",
                         {"thread_id": thread_id, "action": _action(action), "metadata": {"run_ids": [run_id]}})
    row = await manager.get(thread_id, run_id)
    await manager.cancel(action=_action(action), run_ids=[str(row["run_id"])])
    if not _flag(wait):
        return Response(b"", status_code=202, media_type="application/json")
    return await _wait_response(manager.outcome(str(row["run_id"]), thread_id), {},
                                resources.settings.server.heartbeat_seconds)


@post("/runs/cancel", status_code=204)
async def cancel_runs(data: RunsCancel, resources: ResourcesT, action: str | None = None) -> None:
    if data.status is not None and (data.thread_id or data.run_ids):
        raise Unprocessable("give either status, or thread_id and run_ids, not both")
    if data.status is None and not (data.thread_id and data.run_ids):
        raise Unprocessable("give status, or thread_id and run_ids")
    manager = _queue(resources)
    auth = await authorize("threads", "update", {"thread_id": data.thread_id, "action": _action(action),
                                                 "metadata": {"run_ids": data.run_ids, "status": data.status}})
    if data.thread_id is not None and auth and not await resources.threads.access(data.thread_id, auth):
        return  # another owner's thread: nothing of it is cancelled (and nothing said)
    await manager.cancel(action=_action(action), run_ids=data.run_ids, thread_id=data.thread_id,
                         status=data.status, auth=auth)


ROUTES = [create_thread_run, create_stateless_run, create_run_batch, thread_run_wait, thread_run_stream,
          stateless_run_wait, stateless_run_stream, list_runs, get_run, delete_run, join_run, join_run_stream,
          cancel_run, cancel_runs, join_thread_stream]
