"""Thread records and the per-thread run queue, shared by every pod through PostgreSQL.

A thread row holds metadata, status and the latest values (so listing threads never reads
checkpoints). A run takes its thread through the ``runs`` table: it is inserted ``pending``,
and becomes ``running`` only when no other live run of the thread is running or queued ahead
of it. Each decision is one short transaction that locks the thread row, so it works through
PgBouncer's transaction pooling, and every live run renews a lease: a run whose pod died stops
blocking its thread when its lease expires.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service.errors import Conflict, NotFound, Unavailable

ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
RunStatus = Literal["pending", "running", "success", "error", "interrupted", "timeout", "cancelled"]
SORT_COLUMNS = {"thread_id", "status", "created_at", "updated_at"}


@dataclass(frozen=True)
class Filters:
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: str | None = None
    ids: list[str] | None = None


@dataclass
class RunRecord:
    run_id: str
    thread_id: str
    assistant_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    multitask_strategy: str = "enqueue"
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def to_json(self, status: str) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "thread_id": self.thread_id, "assistant_id": self.assistant_id,
            "created_at": self.created_at.isoformat(), "updated_at": dt.datetime.now(dt.UTC).isoformat(),
            "status": status, "metadata": self.metadata, "multitask_strategy": self.multitask_strategy,
            "kwargs": {},
        }


class ThreadStore(Protocol):
    async def create(self, thread_id: str | None, metadata: dict[str, Any], if_exists: str) -> dict[str, Any]: ...
    async def get(self, thread_id: str) -> dict[str, Any]: ...
    async def patch(self, thread_id: str, metadata: dict[str, Any]) -> dict[str, Any]: ...
    async def delete(self, thread_id: str) -> None: ...
    async def search(self, filters: Filters, limit: int, offset: int, sort_by: str,
                     sort_order: str) -> list[dict[str, Any]]: ...
    async def count(self, filters: Filters) -> int: ...
    async def record_state(self, thread_id: str, values: dict[str, Any], status: ThreadStatus | None) -> None: ...
    async def begin_run(self, run: RunRecord, lease: float, timeout: float) -> float: ...
    async def heartbeat(self, run_id: str, lease: float) -> bool: ...
    async def finish_run(self, run: RunRecord, run_status: RunStatus, thread_status: ThreadStatus,
                         values: dict[str, Any] | None, interrupts: dict[str, Any],
                         error: dict[str, Any] | None) -> None: ...


def new_thread_id() -> str:
    return str(uuid.uuid4())


# -- PostgreSQL -----------------------------------------------------------------------------------

# A thread that says busy but whose run lost its lease (its pod died) reads as error.
_THREAD_COLUMNS = """
    t.thread_id, t.created_at, t.updated_at, t.metadata, t.values, t.interrupts, t.error,
    CASE WHEN t.status = 'busy' AND NOT EXISTS (
            SELECT 1 FROM runs r WHERE r.thread_id = t.thread_id AND r.status = 'running'
              AND r.lease_expires_at > now())
         THEN 'error' ELSE t.status END AS status
"""


def _thread_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "thread_id": row["thread_id"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "metadata": row["metadata"],
        "status": row["status"],
        "values": row["values"],
        "interrupts": row["interrupts"],
        "error": row["error"],
        "config": {},
    }


def _where(filters: Filters) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if filters.metadata:
        clauses.append("s.metadata @> %s")
        params.append(Jsonb(filters.metadata))
    if filters.values:
        clauses.append("s.values @> %s")
        params.append(Jsonb(filters.values))
    if filters.ids:
        clauses.append("s.thread_id = ANY(%s)")
        params.append(list(filters.ids))
    if filters.status:
        clauses.append("s.status = %s")
        params.append(filters.status)
    return " AND ".join(clauses) or "TRUE", params


class PostgresThreadStore:
    def __init__(self, pool: AsyncConnectionPool[Any], pod: str) -> None:
        self.pool = pool
        self.pod = pod

    async def create(self, thread_id: str | None, metadata: dict[str, Any], if_exists: str) -> dict[str, Any]:
        thread_id = thread_id or new_thread_id()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"INSERT INTO threads AS t (thread_id, metadata) VALUES (%s, %s) ON CONFLICT DO NOTHING "
                f"RETURNING {_THREAD_COLUMNS}",
                (thread_id, Jsonb(metadata)),
            )
            row = await cur.fetchone()
        if row is not None:
            return _thread_json(row)
        if if_exists == "do_nothing":
            return await self.get(thread_id)
        raise Conflict(f"thread {thread_id} already exists")

    async def get(self, thread_id: str) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_THREAD_COLUMNS} FROM threads t WHERE t.thread_id = %s",
                                     (thread_id,))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"thread {thread_id} not found")
        return _thread_json(row)

    async def patch(self, thread_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE threads AS t SET metadata = t.metadata || %s, updated_at = now() "
                f"WHERE t.thread_id = %s RETURNING {_THREAD_COLUMNS}",
                (Jsonb(metadata), thread_id),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"thread {thread_id} not found")
        return _thread_json(row)

    async def delete(self, thread_id: str) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT 1 FROM threads WHERE thread_id = %s FOR UPDATE", (thread_id,))
            if await cur.fetchone() is None:
                raise NotFound(f"thread {thread_id} not found")
            cur = await conn.execute(
                "SELECT 1 FROM runs WHERE thread_id = %s AND status IN ('pending', 'running') "
                "AND lease_expires_at > now() LIMIT 1", (thread_id,))
            if await cur.fetchone() is not None:
                raise Conflict(f"thread {thread_id} has a run in progress")
            # The same rows AsyncPostgresSaver.adelete_thread removes, in the same transaction.
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
                await conn.execute(f"DELETE FROM {table} WHERE thread_id = %s", (thread_id,))
            await conn.execute("DELETE FROM threads WHERE thread_id = %s", (thread_id,))

    async def record_state(self, thread_id: str, values: dict[str, Any], status: ThreadStatus | None) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE threads SET values = %s, status = coalesce(%s, status), updated_at = now() "
                "WHERE thread_id = %s", (Jsonb(values), status, thread_id))

    async def search(self, filters: Filters, limit: int, offset: int, sort_by: str,
                     sort_order: str) -> list[dict[str, Any]]:
        where, params = _where(filters)
        column = sort_by if sort_by in SORT_COLUMNS else "updated_at"
        order = "ASC" if sort_order.lower() == "asc" else "DESC"
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT s.* FROM (SELECT {_THREAD_COLUMNS} FROM threads t) s "
                f"WHERE {where} ORDER BY s.{column} {order}, s.thread_id LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            return [_thread_json(r) for r in await cur.fetchall()]

    async def count(self, filters: Filters) -> int:
        where, params = _where(filters)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT count(*) AS n FROM (SELECT {_THREAD_COLUMNS} FROM threads t) s WHERE {where}", params)
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    # -- the run queue ----------------------------------------------------------------------------
    async def begin_run(self, run: RunRecord, lease: float, timeout: float) -> float:
        """Wait until ``run`` may execute on its thread; return the seconds waited.

        ``reject`` raises Conflict when any other live run holds or waits for the thread;
        ``enqueue`` queues the run and polls until it is the oldest live one.
        """
        started = time.monotonic()
        lease_iv = dt.timedelta(seconds=lease)
        if await self._try_start(run, lease_iv, first=True):
            return time.monotonic() - started
        delay = 0.02
        try:
            while True:
                if time.monotonic() - started > timeout:
                    await self._set_status(run.run_id, "timeout")
                    raise Unavailable(f"run waited over {timeout:g}s for thread {run.thread_id}", retry_after=5)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(0.25, delay * 1.5)
                if await self._try_start(run, lease_iv, first=False):
                    return time.monotonic() - started
        except asyncio.CancelledError:
            await asyncio.shield(self._set_status(run.run_id, "cancelled"))
            raise

    async def _try_start(self, run: RunRecord, lease: dt.timedelta, *, first: bool) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT 1 FROM threads WHERE thread_id = %s FOR NO KEY UPDATE",
                                     (run.thread_id,))
            if await cur.fetchone() is None:
                raise NotFound(f"thread {run.thread_id} not found")
            # Runs whose pods stopped renewing their lease no longer hold or wait for the thread.
            await conn.execute(
                "UPDATE runs SET status = 'error', updated_at = now() WHERE thread_id = %s "
                "AND status IN ('pending', 'running') AND lease_expires_at <= now()", (run.thread_id,))
            cur = await conn.execute(
                "SELECT run_id::text AS run_id, status FROM runs WHERE thread_id = %s "
                "AND status IN ('pending', 'running') ORDER BY created_at, run_id", (run.thread_id,))
            queue = await cur.fetchall()
            active = [r for r in queue if r["run_id"] != run.run_id]
            if first:
                if active and run.multitask_strategy == "reject":
                    raise Conflict(f"thread {run.thread_id} is busy", thread_id=run.thread_id)
                status = "pending" if active else "running"
                await conn.execute(
                    "INSERT INTO runs (run_id, thread_id, assistant_id, status, multitask_strategy, metadata, pod, "
                    "lease_expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now() + %s)",
                    (run.run_id, run.thread_id, run.assistant_id, status, run.multitask_strategy,
                     Jsonb(run.metadata), self.pod, lease))
            else:
                cur = await conn.execute("SELECT status FROM runs WHERE run_id = %s", (run.run_id,))
                mine = await cur.fetchone()
                if mine is None or mine["status"] != "pending":
                    raise Unavailable(f"run {run.run_id} lost its place in the queue", retry_after=1)
                # My turn: nothing else running, and nothing queued before me.
                my_turn = queue[0]["run_id"] == run.run_id and not any(r["status"] == "running" for r in active)
                status = "running" if my_turn else "pending"
                await conn.execute(
                    "UPDATE runs SET status = %s, lease_expires_at = now() + %s, updated_at = now() "
                    "WHERE run_id = %s", (status, lease, run.run_id))
            if status == "running":
                await conn.execute("UPDATE threads SET status = 'busy', updated_at = now() WHERE thread_id = %s",
                                   (run.thread_id,))
                return True
            return False

    async def heartbeat(self, run_id: str, lease: float) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE runs SET lease_expires_at = now() + %s WHERE run_id = %s AND status = 'running' "
                "RETURNING 1", (dt.timedelta(seconds=lease), run_id))
            return await cur.fetchone() is not None

    async def _set_status(self, run_id: str, status: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE runs SET status = %s, updated_at = now() WHERE run_id = %s "
                               "AND status IN ('pending', 'running')", (status, run_id))

    async def finish_run(self, run: RunRecord, run_status: RunStatus, thread_status: ThreadStatus,
                         values: dict[str, Any] | None, interrupts: dict[str, Any],
                         error: dict[str, Any] | None) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("UPDATE runs SET status = %s, updated_at = now() WHERE run_id = %s",
                               (run_status, run.run_id))
            await conn.execute(
                "UPDATE threads SET status = %s, values = coalesce(%s, values), interrupts = %s, error = %s, "
                "updated_at = now() WHERE thread_id = %s",
                (thread_status, Jsonb(values) if values is not None else None, Jsonb(interrupts),
                 Jsonb(error) if error is not None else None, run.thread_id))


# -- in memory (CHECKPOINTER=memory: local experiments and benchmarks only) -----------------------

@dataclass
class _MemThread:
    data: dict[str, Any]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


def _contains(container: Any, part: Any) -> bool:
    if isinstance(part, dict):
        return isinstance(container, dict) and all(k in container and _contains(container[k], v)
                                                   for k, v in part.items())
    if isinstance(part, list):
        return isinstance(container, list) and all(any(_contains(c, p) for c in container) for p in part)
    return bool(container == part)


class MemoryThreadStore:
    def __init__(self, checkpointer: Any) -> None:
        self.threads: dict[str, _MemThread] = {}
        self.checkpointer = checkpointer

    @staticmethod
    def _now() -> str:
        return dt.datetime.now(dt.UTC).isoformat()

    async def create(self, thread_id: str | None, metadata: dict[str, Any], if_exists: str) -> dict[str, Any]:
        thread_id = thread_id or new_thread_id()
        if thread_id in self.threads:
            if if_exists == "do_nothing":
                return dict(self.threads[thread_id].data)
            raise Conflict(f"thread {thread_id} already exists")
        now = self._now()
        self.threads[thread_id] = _MemThread({
            "thread_id": thread_id, "created_at": now, "updated_at": now, "metadata": dict(metadata),
            "status": "idle", "values": {}, "interrupts": {}, "error": None, "config": {},
        })
        return dict(self.threads[thread_id].data)

    def _get(self, thread_id: str) -> _MemThread:
        try:
            return self.threads[thread_id]
        except KeyError:
            raise NotFound(f"thread {thread_id} not found") from None

    async def get(self, thread_id: str) -> dict[str, Any]:
        return dict(self._get(thread_id).data)

    async def patch(self, thread_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        thread = self._get(thread_id)
        thread.data["metadata"] = {**thread.data["metadata"], **metadata}
        thread.data["updated_at"] = self._now()
        return dict(thread.data)

    async def delete(self, thread_id: str) -> None:
        thread = self._get(thread_id)
        if thread.lock.locked():
            raise Conflict(f"thread {thread_id} has a run in progress")
        del self.threads[thread_id]
        await self.checkpointer.adelete_thread(thread_id)

    async def record_state(self, thread_id: str, values: dict[str, Any], status: ThreadStatus | None) -> None:
        thread = self._get(thread_id)
        thread.data.update(values=values, updated_at=self._now())
        if status is not None:
            thread.data["status"] = status

    def _match(self, filters: Filters) -> list[dict[str, Any]]:
        out = []
        for thread in self.threads.values():
            d = thread.data
            if filters.metadata and not _contains(d["metadata"], filters.metadata):
                continue
            if filters.values and not _contains(d["values"], filters.values):
                continue
            if filters.status and d["status"] != filters.status:
                continue
            if filters.ids and d["thread_id"] not in filters.ids:
                continue
            out.append(dict(d))
        return out

    async def search(self, filters: Filters, limit: int, offset: int, sort_by: str,
                     sort_order: str) -> list[dict[str, Any]]:
        column = sort_by if sort_by in SORT_COLUMNS else "updated_at"
        rows = sorted(self._match(filters), key=lambda d: (d[column], d["thread_id"]),
                      reverse=sort_order.lower() != "asc")
        return rows[offset:offset + limit]

    async def count(self, filters: Filters) -> int:
        return len(self._match(filters))

    async def begin_run(self, run: RunRecord, lease: float, timeout: float) -> float:
        thread = self._get(run.thread_id)
        if run.multitask_strategy == "reject" and (thread.lock.locked() or thread.waiting):
            raise Conflict(f"thread {run.thread_id} is busy", thread_id=run.thread_id)
        started = time.monotonic()
        thread.waiting += 1
        try:
            await asyncio.wait_for(thread.lock.acquire(), timeout)
        except TimeoutError:
            raise Unavailable(f"run waited over {timeout:g}s for thread {run.thread_id}", retry_after=5) from None
        finally:
            thread.waiting -= 1
        thread.data["status"] = "busy"
        return time.monotonic() - started

    async def heartbeat(self, run_id: str, lease: float) -> bool:
        return True

    async def finish_run(self, run: RunRecord, run_status: RunStatus, thread_status: ThreadStatus,
                         values: dict[str, Any] | None, interrupts: dict[str, Any],
                         error: dict[str, Any] | None) -> None:
        thread = self.threads.get(run.thread_id)
        if thread is None:
            return
        thread.data.update(status=thread_status, interrupts=interrupts, error=error, updated_at=self._now())
        if values is not None:
            thread.data["values"] = values
        if thread.lock.locked():
            thread.lock.release()
