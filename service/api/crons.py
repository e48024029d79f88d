"""Crons: create (stateless or on a thread), search, count, get, patch, delete (service/runs/crons.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec
from litestar import Response, delete, get, patch, post

from service.api.runs import authorize_run
from service.app_types import ResourcesT
from service.assistants import resolve_assistant
from service.auth.gate import authorize, current, run_configurable
from service.errors import Unprocessable
from service.runs.crons import CRON_FIELDS, PAYLOAD_FIELDS, CronFilters, CronSpec, CronStore, check_schedule, zone
from service.runs.execution import RunCreate
from service.runs.webhooks import validate_webhook
from service.validation import storable

MAX_LIMIT = 1000
StreamMode = str | list[str]


class _RunFields(msgspec.Struct, kw_only=True):
    """The run a firing creates (RunCreate's fields a cron keeps)."""

    assistant_id: str
    input: Any = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None
    stream_mode: StreamMode | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    multitask_strategy: Literal["reject", "rollback", "interrupt", "enqueue"] | None = None
    checkpoint_during: bool | None = None


class CronCreate(_RunFields, kw_only=True):
    schedule: str
    timezone: str | None = None
    end_time: dt.datetime | None = None
    on_run_completed: Literal["delete", "keep"] = "delete"
    enabled: bool = True


class ThreadCronCreate(_RunFields, kw_only=True):
    schedule: str
    timezone: str | None = None
    end_time: dt.datetime | None = None
    enabled: bool = True


class CronPatch(msgspec.Struct, kw_only=True):
    schedule: str | msgspec.UnsetType = msgspec.UNSET
    timezone: str | msgspec.UnsetType | None = msgspec.UNSET
    end_time: dt.datetime | msgspec.UnsetType | None = msgspec.UNSET
    on_run_completed: Literal["delete", "keep"] | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    input: Any = msgspec.UNSET
    config: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    context: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    webhook: str | msgspec.UnsetType = msgspec.UNSET
    interrupt_before: str | list[str] | msgspec.UnsetType = msgspec.UNSET
    interrupt_after: str | list[str] | msgspec.UnsetType = msgspec.UNSET
    stream_mode: StreamMode | msgspec.UnsetType = msgspec.UNSET
    stream_subgraphs: bool | msgspec.UnsetType = msgspec.UNSET
    stream_resumable: bool | msgspec.UnsetType = msgspec.UNSET
    durability: Literal["sync", "async", "exit"] | msgspec.UnsetType = msgspec.UNSET


class CronSearch(msgspec.Struct, kw_only=True):
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None
    limit: int = 10
    offset: int = 0
    sort_by: Literal["cron_id", "assistant_id", "thread_id", "next_run_date", "end_time", "created_at",
                     "updated_at"] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[str] | None = None


class CronCount(msgspec.Struct, kw_only=True):
    assistant_id: str | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None


def _store(resources: ResourcesT) -> CronStore:
    if resources.crons is None:
        raise Unprocessable("crons need the PostgreSQL checkpointer (CHECKPOINTER=postgres)")
    crons: CronStore = resources.crons
    return crons


def _check_fields(resources: ResourcesT, data: CronCreate | ThreadCronCreate | CronPatch) -> None:
    """422 for anything that cannot be stored or scheduled, before the database is asked."""
    storable([data.input, data.metadata, data.config, data.context], "payload")
    if isinstance(data.webhook, str):
        validate_webhook(data.webhook, resources.settings.webhooks)
    timezone = data.timezone if isinstance(data.timezone, str) else None
    if timezone is not None:
        storable(timezone, "timezone")
        zone(timezone)
    if isinstance(data.schedule, str):
        storable(data.schedule, "schedule")
        check_schedule(data.schedule, timezone)


def _payload(data: _RunFields, assistant_id: str) -> dict[str, Any]:
    fields = msgspec.structs.asdict(data)
    payload = {k: fields[k] for k in PAYLOAD_FIELDS if fields.get(k) is not None}
    payload["assistant_id"] = assistant_id
    return payload


async def _create(resources: ResourcesT, thread_id: str | None, data: CronCreate | ThreadCronCreate) -> dict[str, Any]:
    store = _store(resources)
    _check_fields(resources, data)
    if thread_id is not None:
        storable(thread_id, "thread_id")
    value: dict[str, Any] = {"thread_id": thread_id, "assistant_id": data.assistant_id, "schedule": data.schedule,
                             "metadata": dict(data.metadata or {}), "payload": _payload(data, data.assistant_id)}
    await authorize("crons", "create", value)
    metadata = dict(value.get("metadata") or {})
    # The runs it fires: the creator's create_run and the assistant they may read, checked now.
    await authorize_run(resources, thread_id, msgspec.convert(
        {"assistant_id": data.assistant_id, "metadata": metadata, "if_not_exists": "reject"}, RunCreate))
    thread_auth = await authorize("threads", "read", {"thread_id": thread_id}) if thread_id is not None else None
    assistant, _ = await resolve_assistant(resources.assistants, resources.graphs, data.assistant_id)
    assistant_id = str(assistant.assistant_id)
    payload = _payload(data, assistant_id)
    user = run_configurable()
    if user:
        payload["_auth"] = user
    principal = current()
    spec = CronSpec(
        assistant_id=assistant_id, thread_id=thread_id, schedule=data.schedule, timezone=data.timezone,
        payload=payload, metadata=metadata, enabled=data.enabled,
        on_run_completed=data.on_run_completed if isinstance(data, CronCreate) else None, end_time=data.end_time,
        user_id=principal.user.identity if principal is not None and principal.user is not None else None,
    )
    return await store.create(spec, thread_auth)


@post("/runs/crons", status_code=200)
async def create_cron(data: CronCreate, resources: ResourcesT) -> dict[str, Any]:
    """A stateless cron: each firing runs on a new thread (deleted after the run unless on_run_completed=keep)."""
    return await _create(resources, None, data)


@post("/threads/{thread_id:str}/runs/crons", status_code=200)
async def create_thread_cron(thread_id: str, data: ThreadCronCreate, resources: ResourcesT) -> dict[str, Any]:
    return await _create(resources, thread_id, data)


@post("/runs/crons/search", status_code=200)
async def search_crons(data: CronSearch, resources: ResourcesT) -> Response[list[dict[str, Any]]]:
    if data.limit < 0 or data.offset < 0:
        raise Unprocessable("limit and offset must not be negative")
    if data.limit > MAX_LIMIT:
        raise Unprocessable(f"limit must be at most {MAX_LIMIT}")
    unknown = sorted(set(data.select or ()) - set(CRON_FIELDS))
    if unknown:
        raise Unprocessable(f"select: unknown field {unknown[0][:64]!r}; use any of {', '.join(CRON_FIELDS)}")
    storable([data.assistant_id, data.thread_id, data.metadata], "filter")
    auth = await authorize("crons", "search", {"assistant_id": data.assistant_id, "thread_id": data.thread_id,
                                               "metadata": dict(data.metadata or {}), "limit": data.limit,
                                               "offset": data.offset})
    filters = CronFilters(assistant_id=data.assistant_id, thread_id=data.thread_id, enabled=data.enabled,
                          metadata=data.metadata, auth=auth)
    # One row more than asked says whether there is a next page (the LangGraph Server's headers).
    rows = await _store(resources).search(filters, data.limit + 1, data.offset, data.sort_by, data.sort_order)
    more = len(rows) > data.limit
    rows = rows[:data.limit]
    headers = {"X-Pagination-Total": str(data.offset + len(rows) + (1 if more else 0))}
    if more:
        headers["X-Pagination-Next"] = str(data.offset + data.limit)
    if data.select:
        rows = [{k: v for k, v in row.items() if k in data.select} for row in rows]
    return Response(rows, headers=headers)


@post("/runs/crons/count", status_code=200)
async def count_crons(data: CronCount, resources: ResourcesT) -> int:
    storable([data.assistant_id, data.thread_id, data.metadata], "filter")
    auth = await authorize("crons", "search", {"assistant_id": data.assistant_id, "thread_id": data.thread_id,
                                               "metadata": dict(data.metadata or {})})
    return await _store(resources).count(CronFilters(assistant_id=data.assistant_id, thread_id=data.thread_id,
                                                     metadata=data.metadata, auth=auth))


@get("/runs/crons/{cron_id:str}")
async def get_cron(cron_id: str, resources: ResourcesT) -> dict[str, Any]:
    store = _store(resources)
    return await store.get(cron_id, await authorize("crons", "read", {"cron_id": cron_id}))


@patch("/runs/crons/{cron_id:str}")
async def patch_cron(cron_id: str, data: CronPatch, resources: ResourcesT) -> dict[str, Any]:
    given = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
    if not given:
        raise Unprocessable("the patch is empty: give at least one field to change")
    if "schedule" in given and given["schedule"] is None:
        raise Unprocessable("schedule cannot be null")
    _check_fields(resources, data)
    cron_keys = ("schedule", "timezone", "end_time", "on_run_completed", "enabled", "metadata")
    changes = {k: v for k, v in given.items() if k in cron_keys}
    payload_changes = {k: v for k, v in given.items() if k not in cron_keys}
    store = _store(resources)
    value: dict[str, Any] = {"cron_id": cron_id, "metadata": dict(changes.get("metadata") or {}),
                             "payload": payload_changes}
    auth = await authorize("crons", "update", value)
    if value.get("metadata") or "metadata" in changes:  # the handler's metadata (e.g. the tutorial's owner)
        changes["metadata"] = dict(value.get("metadata") or {})
    return await store.patch(cron_id, changes, payload_changes, auth)


@delete("/runs/crons/{cron_id:str}", status_code=204)
async def delete_cron(cron_id: str, resources: ResourcesT) -> None:
    store = _store(resources)
    await store.delete(cron_id, await authorize("crons", "delete", {"cron_id": cron_id}))


ROUTES = [create_cron, create_thread_cron, search_crons, count_crons, get_cron, patch_cron, delete_cron]
