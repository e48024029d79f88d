"""Crons: the ``crons`` table (create, get, search, count, patch, delete) and the scheduler that fires them.

Every pod runs one :class:`CronScheduler`. It sleeps until the earliest ``next_run_date`` (at most
``max_sleep`` seconds, woken early when any pod creates or patches a cron: a NOTIFY on
``langgraph_crons`` with the change's commit, and this pod's own call where it cannot LISTEN) and
then fires what is due. A firing happens exactly once across all pods, also when pods die around it: one conditional
``UPDATE`` claims it (``... SET next_run_date = <next> WHERE cron_id = $1 AND next_run_date = $old``)
in the same transaction that creates the run through the injected ``Submit``. A pod that loses the
race updates no row and creates no run; a pod that dies before its commit leaves both undone, and
another pod fires it. There is no check-then-act anywhere.

Missed firings (every pod down while one or more were due) fire once, not in a burst: the next
date is always computed after the database's ``now()``, so a cron that missed five slots fires
once for the oldest of them and then resumes on schedule. ``end_time`` is inclusive: no firing is
scheduled after it, and the cron's ``next_run_date`` becomes NULL once the last one is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service import metrics
from service.auth.filters import compile_filter, named
from service.db import first_line as db_first_line
from service.errors import UNAVAILABLE_ERRORS, NotFound, Unprocessable
from service.logging import get_logger
from service.runs.queue import CHANNEL_CRONS

log = get_logger("service.crons")

# Submit: insert a pending run inside the caller's transaction ``conn``, creating the thread when
# thread_id is None (a new thread; metadata carries cron_id), and return the new run's id. payload
# is the cron's run payload (RunCreate-shaped dict). Implemented by the run queue.
Submit = Callable[[AsyncConnection[Any], str | None, dict[str, Any]], Awaitable[str]]

CRON_FIELDS = ("cron_id", "assistant_id", "thread_id", "on_run_completed", "end_time", "schedule", "timezone",
               "created_at", "updated_at", "user_id", "payload", "next_run_date", "metadata", "enabled")
# The run fields a cron keeps in its payload (the rest of the create body describes the cron).
PAYLOAD_FIELDS = ("assistant_id", "input", "config", "context", "metadata", "webhook", "interrupt_before",
                  "interrupt_after", "stream_mode", "stream_subgraphs", "stream_resumable", "durability",
                  "multitask_strategy", "checkpoint_during")
MAX_SCHEDULE_LENGTH = 256

# -- schedules ------------------------------------------------------------------------------------


def zone(timezone: str | None) -> ZoneInfo | None:
    """The IANA time zone ``timezone`` (None: UTC), or Unprocessable."""
    if timezone is None:
        return None
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise Unprocessable(f"timezone {timezone[:64]!r} is not an IANA time zone (e.g. 'Europe/Paris')") from None


def check_schedule(schedule: str, timezone: str | None) -> None:
    """Raise Unprocessable unless ``schedule`` is a cron expression croniter accepts in ``timezone``.

    Five fields (minute hour day month weekday) or six (a seconds field last, as croniter and the
    LangGraph Server read it).
    """
    if not schedule.strip() or len(schedule) > MAX_SCHEDULE_LENGTH or "\x00" in schedule:
        raise Unprocessable("schedule must be a cron expression such as '*/5 * * * *'")
    if not croniter.is_valid(schedule):
        raise Unprocessable(f"schedule {schedule[:64]!r} is not a valid cron expression")
    next_after(schedule, timezone, dt.datetime.now(dt.UTC))


def next_after(schedule: str, timezone: str | None, after: dt.datetime) -> dt.datetime:
    """The first time strictly after ``after`` that ``schedule`` names, read in ``timezone`` (UTC result)."""
    tz = zone(timezone)
    base = after.astimezone(tz or dt.UTC)
    try:
        nxt = croniter(schedule, base).get_next(dt.datetime)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise Unprocessable(f"schedule {schedule[:64]!r} names no time: {str(exc).splitlines()[0][:120]}") from None
    assert isinstance(nxt, dt.datetime)
    return nxt.astimezone(dt.UTC)


def first_run_date(schedule: str, timezone: str | None, end_time: dt.datetime | None,
                   now: dt.datetime) -> dt.datetime | None:
    """The next firing after ``now``, or None when it would fall after ``end_time``."""
    nxt = next_after(schedule, timezone, now)
    return None if end_time is not None and nxt > end_time else nxt


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """An aware UTC datetime (a naive one is read as UTC, as the LangGraph Server does)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# -- storage --------------------------------------------------------------------------------------

_COLUMNS = ("cron_id, assistant_id, thread_id, on_run_completed, end_time, schedule, timezone, created_at, "
            "updated_at, user_id, payload, next_run_date, metadata, enabled")

INSERT_SQL = f"""
INSERT INTO crons (cron_id, assistant_id, thread_id, schedule, timezone, payload, metadata, user_id, enabled,
                   on_run_completed, end_time, next_run_date)
VALUES (%(cron_id)s, %(assistant_id)s, %(thread_id)s, %(schedule)s, %(timezone)s, %(payload)s, %(metadata)s,
        %(user_id)s, %(enabled)s, %(on_run_completed)s, %(end_time)s, %(next_run_date)s)
RETURNING {_COLUMNS}
"""
GET_SQL = f"SELECT {_COLUMNS} FROM crons WHERE cron_id = %(cron_id)s"
DELETE_SQL = "DELETE FROM crons WHERE cron_id = %(cron_id)s RETURNING cron_id"
THREAD_EXISTS_SQL = "SELECT 1 FROM threads WHERE thread_id = %(thread_id)s"
# Every pod's scheduler looks again when the transaction commits (a wake-up, never data).
NOTIFY_CRONS_SQL = f"SELECT pg_notify('{CHANNEL_CRONS}', '')"
# PATCH: every column is replaced by the caller's (already merged) value; the row is locked first
# (SELECT ... FOR UPDATE) so a concurrent firing and a patch do not interleave.
LOCK_SQL = f"SELECT {_COLUMNS} FROM crons WHERE cron_id = %(cron_id)s FOR UPDATE"
UPDATE_SQL = f"""
UPDATE crons SET schedule = %(schedule)s, timezone = %(timezone)s, payload = %(payload)s, metadata = %(metadata)s,
    enabled = %(enabled)s, on_run_completed = %(on_run_completed)s, end_time = %(end_time)s,
    next_run_date = %(next_run_date)s, updated_at = now()
WHERE cron_id = %(cron_id)s
RETURNING {_COLUMNS}
"""
_FILTER = """
WHERE (%(assistant_id)s::text IS NULL OR assistant_id = %(assistant_id)s)
  AND (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
  AND (%(enabled)s::boolean IS NULL OR enabled = %(enabled)s)
  AND (%(metadata)s::jsonb IS NULL OR metadata @> %(metadata)s)
"""
COUNT_SQL = "SELECT count(*) AS n FROM crons " + _FILTER
# One constant per sort (column and direction), picked from a fixed table, never formatted from input.
SEARCH_SQL = {
    (column, order): f"SELECT {_COLUMNS} FROM crons {_FILTER} ORDER BY {column} {order} NULLS LAST, cron_id "
                     "LIMIT %(limit)s OFFSET %(offset)s"
    for column in ("cron_id", "assistant_id", "thread_id", "next_run_date", "end_time", "created_at", "updated_at")
    for order in ("ASC", "DESC")
}

# -- the scheduler's statements -------------------------------------------------------------------

# The earliest enabled crons (the partial index on next_run_date): the due ones, and the first
# one that is not due yet, which says how long to sleep. now() is the database's clock, the one
# every pod shares.
EARLIEST_SQL = """
SELECT cron_id, schedule, timezone, next_run_date, end_time, now() AS now
FROM crons WHERE enabled AND next_run_date IS NOT NULL
ORDER BY next_run_date LIMIT %(limit)s
"""
# The claim: one statement, conditional on the date this pod read. Under a concurrent claim the
# second UPDATE waits for the first's row lock and then re-reads the row: next_run_date has moved,
# no row matches, and nothing is fired twice. A rolled-back claim (a pod died) leaves the row as it
# was, for another pod.
CLAIM_SQL = """
UPDATE crons SET next_run_date = %(next)s
WHERE cron_id = %(cron_id)s AND next_run_date = %(old)s AND enabled AND next_run_date <= now()
RETURNING cron_id, assistant_id, thread_id, payload, metadata, on_run_completed, user_id
"""


def cron_json(row: dict[str, Any]) -> dict[str, Any]:
    def iso(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "cron_id": str(row["cron_id"]), "assistant_id": row["assistant_id"], "thread_id": row["thread_id"],
        "on_run_completed": row["on_run_completed"], "end_time": iso(row["end_time"]),
        "schedule": row["schedule"], "timezone": row["timezone"], "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]), "user_id": row["user_id"],
        # "_auth": the creator's user for the runs it fires (service.auth), never shown.
        "payload": {k: v for k, v in (row["payload"] or {}).items() if k != "_auth"},
        "next_run_date": iso(row["next_run_date"]), "metadata": row["metadata"], "enabled": row["enabled"],
    }


def parse_cron_id(cron_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(cron_id)
    except ValueError:
        raise Unprocessable("cron_id must be a UUID") from None


@dataclass(frozen=True)
class CronSpec:
    """A validated cron to create."""

    assistant_id: str
    thread_id: str | None
    schedule: str
    timezone: str | None
    payload: dict[str, Any]
    metadata: dict[str, Any]
    enabled: bool = True
    on_run_completed: Literal["delete", "keep"] | None = None
    end_time: dt.datetime | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class CronFilters:
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None
    # What the caller's auth handler allows (service.auth.filters), over the cron's metadata.
    auth: dict[str, Any] | None = None

    def params(self) -> dict[str, Any]:
        return {"assistant_id": self.assistant_id, "thread_id": self.thread_id, "enabled": self.enabled,
                "metadata": Jsonb(self.metadata) if self.metadata else None}

    def where(self) -> tuple[str, dict[str, Any]]:
        """The auth filter as an extra condition (named parameters), or nothing."""
        return _auth_where(self.auth, "auth")


def _auth_where(auth: dict[str, Any] | None, prefix: str, column: str = "metadata") -> tuple[str, dict[str, Any]]:
    if not auth:
        return "", {}
    sql, params = named(compile_filter(auth, column), prefix)
    return f"  AND ({sql})\n", params


class CronStore:
    """The crons table. ``on_change`` is called after a create or patch (the scheduler's wake-up)."""

    def __init__(self, pool: AsyncConnectionPool[Any], on_change: Callable[[], None] | None = None) -> None:
        self.pool = pool
        self.on_change = on_change

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def create(self, spec: CronSpec, thread_auth: dict[str, Any] | None = None) -> dict[str, Any]:
        """``thread_auth``: the caller's filter for reading the cron's thread (404 when it hides it)."""
        check_schedule(spec.schedule, spec.timezone)
        end_time = utc(spec.end_time)
        params = {
            "cron_id": uuid.uuid4(), "assistant_id": spec.assistant_id, "thread_id": spec.thread_id,
            "schedule": spec.schedule, "timezone": spec.timezone, "payload": Jsonb(spec.payload),
            "metadata": Jsonb(spec.metadata), "user_id": spec.user_id, "enabled": spec.enabled,
            "on_run_completed": spec.on_run_completed, "end_time": end_time,
            "next_run_date": first_run_date(spec.schedule, spec.timezone, end_time, dt.datetime.now(dt.UTC)),
        }
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            if spec.thread_id is not None:
                where, auth_params = _auth_where(thread_auth, "auth")
                await cur.execute(THREAD_EXISTS_SQL + where, {"thread_id": spec.thread_id, **auth_params})
                if await cur.fetchone() is None:
                    raise NotFound(f"thread {spec.thread_id} not found")
            await cur.execute(INSERT_SQL, params)
            row = await cur.fetchone()
            await cur.execute(NOTIFY_CRONS_SQL)
        assert row is not None
        self._changed()
        return cron_json(row)

    async def get(self, cron_id: str, auth: dict[str, Any] | None = None) -> dict[str, Any]:
        where, params = _auth_where(auth, "auth")
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(GET_SQL + where, {"cron_id": parse_cron_id(cron_id), **params})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"cron {cron_id} not found")
        return cron_json(row)

    async def delete(self, cron_id: str, auth: dict[str, Any] | None = None) -> None:
        where, params = _auth_where(auth, "auth")
        async with self.pool.connection() as conn:
            cur = await conn.execute(DELETE_SQL.replace(" RETURNING", where + " RETURNING"),
                                     {"cron_id": parse_cron_id(cron_id), **params})
            if await cur.fetchone() is None:
                raise NotFound(f"cron {cron_id} not found")

    async def search(self, filters: CronFilters, limit: int, offset: int, sort_by: str,
                     sort_order: str) -> list[dict[str, Any]]:
        sql = SEARCH_SQL.get((sort_by, sort_order.upper()))
        if sql is None:
            raise Unprocessable(f"cannot sort crons by {sort_by!r} {sort_order!r}")
        where, auth_params = filters.where()
        sql = sql.replace(_FILTER, _FILTER + where)
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql, {**filters.params(), **auth_params, "limit": limit, "offset": offset})
            return [cron_json(r) for r in await cur.fetchall()]

    async def count(self, filters: CronFilters) -> int:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            where, auth_params = filters.where()
            await cur.execute(COUNT_SQL + where, {**filters.params(), **auth_params})
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def patch(self, cron_id: str, changes: dict[str, Any], payload_changes: dict[str, Any],
                    auth: dict[str, Any] | None = None) -> dict[str, Any]:
        """Apply ``changes`` (schedule, timezone, end_time, enabled, on_run_completed, metadata) and
        ``payload_changes`` (run fields, merged into the payload). The next firing is recomputed from
        now when the schedule, time zone or enabled flag is given; a new end time only cuts it off
        (or, for a cron that had ended, schedules the next one from now)."""
        key = parse_cron_id(cron_id)
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            where, auth_params = _auth_where(auth, "auth")
            await cur.execute(LOCK_SQL.replace(" FOR UPDATE", where + " FOR UPDATE"), {"cron_id": key, **auth_params})
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"cron {cron_id} not found")
            new = {name: row[name] for name in ("schedule", "timezone", "enabled", "on_run_completed", "end_time",
                                                "next_run_date")}
            new.update({k: v for k, v in changes.items() if k != "metadata"})
            new["end_time"] = utc(new["end_time"])
            metadata = {**row["metadata"], **changes["metadata"]} if "metadata" in changes else row["metadata"]
            payload = {**row["payload"], **payload_changes}
            if "metadata" in changes:
                payload["metadata"] = metadata
            now = dt.datetime.now(dt.UTC)
            if {"schedule", "timezone", "enabled"} & changes.keys():
                check_schedule(new["schedule"], new["timezone"])
                new["next_run_date"] = first_run_date(new["schedule"], new["timezone"], new["end_time"], now)
            elif "end_time" in changes:
                # The next firing stays where it is, unless the new end time comes before it (none) or
                # lets a cron that had ended fire again (the next one from now).
                if new["next_run_date"] is None:
                    new["next_run_date"] = first_run_date(new["schedule"], new["timezone"], new["end_time"], now)
                elif new["end_time"] is not None and new["next_run_date"] > new["end_time"]:
                    new["next_run_date"] = None
            await cur.execute(UPDATE_SQL, {**new, "cron_id": key, "payload": Jsonb(payload),
                                           "metadata": Jsonb(metadata)})
            updated = await cur.fetchone()
            await cur.execute(NOTIFY_CRONS_SQL)
        assert updated is not None
        self._changed()
        return cron_json(updated)


# -- the scheduler --------------------------------------------------------------------------------


def run_payload(claimed: dict[str, Any]) -> dict[str, Any]:
    """The payload of the run a firing creates: the cron's, with the cron's metadata under the run's
    own and ``cron_id`` added; a stateless cron's thread is deleted afterwards unless it says keep."""
    payload = dict(claimed["payload"])
    payload["metadata"] = {**(claimed["metadata"] or {}), **(payload.get("metadata") or {}),
                           "cron_id": str(claimed["cron_id"])}
    if claimed["thread_id"] is None:
        payload.setdefault("on_completion", claimed["on_run_completed"] or "delete")
    payload.pop("checkpoint_during", None)
    return payload


class CronScheduler:
    """Fires due crons; one per pod, started by the app's lifespan. See the module's docstring."""

    def __init__(self, pool: AsyncConnectionPool[Any], submit: Submit, *, max_sleep: float = 5.0,
                 batch: int = 16) -> None:
        self.pool = pool
        self.submit = submit
        self.max_sleep = max_sleep
        self.batch = batch
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.looks = 0  # completed looks at the table (how a test knows the scheduler went to sleep)

    def wake(self) -> None:
        """Look again now (a cron was created or patched on this pod)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="cron-scheduler")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        log.info("cron_scheduler_started", max_sleep=self.max_sleep)
        waiting_for_schema = False
        while not self._stopping:
            self._wake.clear()  # before the look: a wake-up during it is not lost
            try:
                delay = await self.tick()
                waiting_for_schema = False
            except asyncio.CancelledError:
                raise
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
                # Not migrated yet (the pod is not ready either): said once, not every look.
                if not waiting_for_schema:
                    log.info("cron_scheduler_waiting_for_schema")
                waiting_for_schema = True
                delay = self.max_sleep
            except Exception as exc:
                kind = metrics.record_database_error(exc)
                log.warning("cron_scheduler_failed", error_type=type(exc).__name__, kind=kind,
                            error=db_first_line(exc)[:200])
                delay = self.max_sleep
            if delay <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def tick(self) -> float:
        """Fire what is due now; return how long to sleep before the next look."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(EARLIEST_SQL, {"limit": self.batch + 1})
            rows = await cur.fetchall()
        self.looks += 1
        fired_any = False
        for row in rows:
            if row["next_run_date"] > row["now"]:
                if fired_any:
                    return 0.0  # look again with the dates the firings moved
                wait = (row["next_run_date"] - row["now"]).total_seconds()
                return float(min(self.max_sleep, wait + 0.001))
            await self.fire(row)
            fired_any = True
        return 0.0 if fired_any else self.max_sleep

    async def fire(self, row: dict[str, Any]) -> bool:
        """Fire the due cron ``row`` (as EARLIEST_SQL read it) unless another pod did; True if this pod did."""
        cron_id, old, now = row["cron_id"], row["next_run_date"], row["now"]
        end_time = row["end_time"]
        try:
            nxt: dt.datetime | None = first_run_date(row["schedule"], row["timezone"], end_time, now)
        except Unprocessable:
            nxt = None  # a schedule that names no further time: this was its last firing
        if end_time is not None and old > end_time:
            return await self._advance(cron_id, old, None, "expired")
        params = {"cron_id": cron_id, "old": old, "next": nxt}
        try:
            async with self.pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(CLAIM_SQL, params)
                claimed = await cur.fetchone()
                if claimed is None:
                    return False  # another pod fired it (or it was patched, disabled or deleted)
                run_id = await self.submit(conn, claimed["thread_id"], run_payload(claimed))
        except UNAVAILABLE_ERRORS:
            raise  # the database: nothing happened; the firing is retried on the next look
        except Exception as exc:
            # The run could not be created (e.g. its assistant is gone): skip this firing, once.
            log.warning("cron_firing_failed", cron_id=str(cron_id), error_type=type(exc).__name__,
                        error=str(exc).splitlines()[0][:200] if str(exc) else "")
            return await self._advance(cron_id, old, nxt, "error")
        metrics.CRON_FIRINGS.labels("fired").inc()
        metrics.CRON_FIRING_DELAY.observe(max(0.0, (now - old).total_seconds()))
        log.info("cron_fired", cron_id=str(cron_id), run_id=str(run_id), scheduled_for=old.isoformat(),
                 next_run_date=nxt.isoformat() if nxt else None)
        return True

    async def _advance(self, cron_id: Any, old: dt.datetime, nxt: dt.datetime | None, outcome: str) -> bool:
        """Move past a firing without a run (the same conditional claim, so still once)."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE crons SET next_run_date = %(next)s WHERE cron_id = %(cron_id)s AND next_run_date = %(old)s "
                "RETURNING cron_id", {"cron_id": cron_id, "old": old, "next": nxt})
            moved = await cur.fetchone() is not None
        if moved:
            metrics.CRON_FIRINGS.labels(outcome).inc()
        return moved
