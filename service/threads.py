"""Thread records and the per-thread run queue, shared by every pod through PostgreSQL.

A thread row holds metadata, status and the latest values (so listing threads never reads
checkpoints), and the run that holds it (``run_id`` with a ``lease_expires_at`` its pod renews
while it runs). A run takes an idle thread with one conditional UPDATE of that row, which
PostgreSQL re-checks after any row lock wait, so two runs can never both take it. A run that
finds the thread held waits in the ``runs`` table (``pending``, its lease renewed while it
polls) and takes the thread when the holder is gone and no live run is queued before it; each
such decision is one short transaction that locks the thread row. Nothing relies on a session
(no advisory locks), so it works through PgBouncer's transaction pooling, and a run whose pod
died stops blocking its thread when its lease expires.
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

from service.auth.filters import clause, matches
from service.errors import Conflict, NotFound, NotSupported, Unavailable

ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
RunStatus = Literal["pending", "running", "success", "error", "interrupted", "timeout", "cancelled"]
SORT_COLUMNS = {"thread_id", "status", "created_at", "updated_at"}


@dataclass(frozen=True)
class Filters:
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: str | None = None
    ids: list[str] | None = None
    # What the user's auth handler allows (service.auth.filters), applied to the thread's metadata.
    auth: dict[str, Any] | None = None


# An auth handler's filter over a thread's metadata, or None (no filter).
AuthFilter = dict[str, Any] | None


@dataclass(frozen=True)
class ThreadTTL:
    """A thread's own time to live (``ttl`` of create and patch, in minutes, as the LangGraph Server
    takes it): the sweep applies ``strategy`` once ``minutes`` have passed since it was set and
    since the thread's last update (a thread in use is not swept)."""

    strategy: Literal["delete", "keep_latest"]
    minutes: float


@dataclass
class RunRecord:
    run_id: str
    thread_id: str
    assistant_id: str
    graph_id: str = ""
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
    async def create(self, thread_id: str | None, metadata: dict[str, Any], if_exists: str,
                     auth: AuthFilter = None, *, ttl: ThreadTTL | None = None) -> dict[str, Any]: ...
    async def get(self, thread_id: str, auth: AuthFilter = None, *, include_ttl: bool = False) -> dict[str, Any]: ...
    async def access(self, thread_id: str, auth: AuthFilter) -> bool | None: ...
    async def patch(self, thread_id: str, metadata: dict[str, Any], auth: AuthFilter = None, *,
                    ttl: ThreadTTL | None = None) -> dict[str, Any]: ...
    async def delete(self, thread_id: str, auth: AuthFilter = None) -> None: ...
    async def search(self, filters: Filters, limit: int, offset: int, sort_by: str,
                     sort_order: str) -> list[dict[str, Any]]: ...
    async def count(self, filters: Filters) -> int: ...
    async def record_state(self, thread_id: str, values: dict[str, Any], status: ThreadStatus | None) -> None: ...
    async def begin_run(self, run: RunRecord, lease: float, timeout: float,
                        create: dict[str, Any] | None = None) -> float: ...
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
    CASE WHEN t.status = 'busy' AND (t.lease_expires_at IS NULL OR t.lease_expires_at <= now())
         THEN 'error' ELSE t.status END AS status
"""
# A run holds the thread row aliased t (its pod keeps renewing the lease).
LIVE_HOLDER = "t.run_id IS NOT NULL AND t.lease_expires_at > now()"

# The fast path: take an idle thread in one statement. The condition on the row's own columns
# is re-checked after a row lock wait, which makes it a mutex; the pending-queue check only keeps
# newcomers from overtaking queued runs (the slow path is exact about order).
_TAKE_IDLE_SQL = f"""
WITH taken AS (
    UPDATE threads AS t SET run_id = %(run_id)s, lease_expires_at = now() + %(lease)s, status = 'busy',
        updated_at = now(),
        metadata = CASE WHEN t.metadata->>'graph_id' IS DISTINCT FROM %(graph_id)s
                          OR t.metadata->>'assistant_id' IS DISTINCT FROM %(assistant_id)s
                        THEN t.metadata || jsonb_build_object('graph_id', %(graph_id)s::text,
                                                              'assistant_id', %(assistant_id)s::text)
                        ELSE t.metadata END
    WHERE t.thread_id = %(thread_id)s AND NOT ({LIVE_HOLDER})
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.thread_id = %(thread_id)s AND r.status = 'pending'
                      AND r.lease_expires_at > now())
    RETURNING t.thread_id
), recorded AS (
    INSERT INTO runs (run_id, thread_id, assistant_id, status, multitask_strategy, metadata, pod, lease_expires_at)
    SELECT %(run_id)s, thread_id, %(assistant_id)s, 'running', %(strategy)s, %(metadata)s, %(pod)s,
           now() + %(lease)s
    FROM taken
)
SELECT EXISTS (SELECT 1 FROM taken) AS taken, EXISTS (SELECT 1 FROM threads WHERE thread_id = %(thread_id)s) AS found
"""

# The first run of a thread that may not exist yet (if_not_exists=create): create it already held.
_CREATE_TAKEN_SQL = """
WITH created AS (
    INSERT INTO threads (thread_id, metadata, status, run_id, lease_expires_at)
    VALUES (%(thread_id)s, %(create_metadata)s, 'busy', %(run_id)s, now() + %(lease)s)
    ON CONFLICT DO NOTHING
    RETURNING thread_id
), recorded AS (
    INSERT INTO runs (run_id, thread_id, assistant_id, status, multitask_strategy, metadata, pod, lease_expires_at)
    SELECT %(run_id)s, thread_id, %(assistant_id)s, 'running', %(strategy)s, %(metadata)s, %(pod)s,
           now() + %(lease)s
    FROM created
)
SELECT EXISTS (SELECT 1 FROM created) AS taken, TRUE AS found
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


# A thread's own TTL: set (create, patch) counts from now; read with the expiry the sweep applies.
_SET_TTL_SQL = """
INSERT INTO thread_ttl (thread_id, strategy, ttl_minutes, expires_at)
VALUES (%(thread_id)s, %(strategy)s, %(minutes)s, now() + %(minutes)s * interval '1 minute')
ON CONFLICT (thread_id) DO UPDATE
    SET strategy = excluded.strategy, ttl_minutes = excluded.ttl_minutes, expires_at = excluded.expires_at
"""
_GET_TTL_SQL = """
SELECT tt.strategy, tt.ttl_minutes,
       greatest(tt.expires_at, t.updated_at + tt.ttl_minutes * interval '1 minute') AS expires_at
FROM thread_ttl tt JOIN threads t ON t.thread_id = tt.thread_id WHERE tt.thread_id = %(thread_id)s
"""


def _ttl_params(thread_id: str, ttl: ThreadTTL) -> dict[str, Any]:
    return {"thread_id": thread_id, "strategy": ttl.strategy, "minutes": ttl.minutes}


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
    if filters.auth:
        sql, values = clause(filters.auth, "s.metadata")
        clauses.append(sql.removeprefix(" AND "))
        params.extend(values)
    return " AND ".join(clauses) or "TRUE", params


class PostgresThreadStore:
    def __init__(self, pool: AsyncConnectionPool[Any], pod: str) -> None:
        self.pool = pool
        self.pod = pod

    async def create(self, thread_id: str | None, metadata: dict[str, Any], if_exists: str,
                     auth: AuthFilter = None, *, ttl: ThreadTTL | None = None) -> dict[str, Any]:
        """A new thread (and its TTL, in the same transaction); an existing one is kept as it is."""
        thread_id = thread_id or new_thread_id()
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"INSERT INTO threads AS t (thread_id, metadata) VALUES (%s, %s) ON CONFLICT DO NOTHING "
                f"RETURNING {_THREAD_COLUMNS}",
                (thread_id, Jsonb(metadata)),
            )
            row = await cur.fetchone()
            if row is not None and ttl is not None:
                await conn.execute(_SET_TTL_SQL, _ttl_params(thread_id, ttl))
        if row is not None:
            return _thread_json(row)
        if if_exists == "do_nothing":
            try:
                return await self.get(thread_id, auth)
            except NotFound:  # another owner's thread: it exists, and nothing more is said
                raise Conflict(f"thread {thread_id} already exists") from None
        raise Conflict(f"thread {thread_id} already exists")

    async def get(self, thread_id: str, auth: AuthFilter = None, *, include_ttl: bool = False) -> dict[str, Any]:
        where, params = clause(auth, "t.metadata")
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_THREAD_COLUMNS} FROM threads t WHERE t.thread_id = %s{where}",
                                     (thread_id, *params))
            row = await cur.fetchone()
            ttl = None
            if row is not None and include_ttl:
                cur = await conn.execute(_GET_TTL_SQL, {"thread_id": thread_id})
                ttl = await cur.fetchone()
        if row is None:
            raise NotFound(f"thread {thread_id} not found")
        thread = _thread_json(row)
        if ttl is not None:
            thread["ttl"] = {"strategy": ttl["strategy"], "ttl_minutes": ttl["ttl_minutes"],
                             "expires_at": ttl["expires_at"].isoformat()}
        return thread

    async def access(self, thread_id: str, auth: AuthFilter) -> bool | None:
        """None: no such thread; False: one the filter hides; True: one it shows."""
        where, params = clause(auth, "t.metadata")
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT (TRUE{where}) AS ok FROM threads t WHERE t.thread_id = %s",
                                     (*params, thread_id))
            row = await cur.fetchone()
        return None if row is None else bool(row["ok"])

    async def patch(self, thread_id: str, metadata: dict[str, Any], auth: AuthFilter = None, *,
                    ttl: ThreadTTL | None = None) -> dict[str, Any]:
        """Metadata merged in; a ``ttl`` replaces the thread's and counts from now."""
        where, params = clause(auth, "t.metadata")
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"UPDATE threads AS t SET metadata = t.metadata || %s, updated_at = now() "
                f"WHERE t.thread_id = %s{where} RETURNING {_THREAD_COLUMNS}",
                (Jsonb(metadata), thread_id, *params),
            )
            row = await cur.fetchone()
            if row is not None and ttl is not None:
                await conn.execute(_SET_TTL_SQL, _ttl_params(thread_id, ttl))
        if row is None:
            raise NotFound(f"thread {thread_id} not found")
        return _thread_json(row)

    async def delete(self, thread_id: str, auth: AuthFilter = None) -> None:
        where, params = clause(auth, "t.metadata")
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(f"SELECT 1 FROM threads t WHERE t.thread_id = %s{where} FOR UPDATE",
                                     (thread_id, *params))
            if await cur.fetchone() is None:
                raise NotFound(f"thread {thread_id} not found")
            cur = await conn.execute(
                f"SELECT 1 FROM threads t WHERE t.thread_id = %s AND {LIVE_HOLDER} UNION ALL "
                "SELECT 1 FROM runs WHERE thread_id = %s AND status = 'pending' AND lease_expires_at > now() LIMIT 1",
                (thread_id, thread_id))
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
    async def begin_run(self, run: RunRecord, lease: float, timeout: float,
                        create: dict[str, Any] | None = None) -> float:
        """Wait until ``run`` may execute on its thread; return the seconds waited.

        ``reject`` raises Conflict when another live run holds or waits for the thread;
        ``enqueue`` queues the run and polls until the holder is gone and it is the oldest.
        With ``create`` (metadata), a missing thread is created, already held by the run;
        without, a missing thread raises NotFound.
        """
        started = time.monotonic()
        lease_iv = dt.timedelta(seconds=lease)
        params = {"run_id": run.run_id, "thread_id": run.thread_id, "lease": lease_iv, "graph_id": run.graph_id,
                  "assistant_id": run.assistant_id, "strategy": run.multitask_strategy,
                  "metadata": Jsonb(run.metadata), "pod": self.pod,
                  "create_metadata": Jsonb(create) if create is not None else None}
        async with self.pool.connection() as conn:
            row = None
            if create is not None:
                cur = await conn.execute(_CREATE_TAKEN_SQL, params)
                row = await cur.fetchone()
            if row is None or not row["taken"]:
                cur = await conn.execute(_TAKE_IDLE_SQL, params)
                row = await cur.fetchone()
        assert row is not None
        if row["taken"]:
            return time.monotonic() - started
        if not row["found"]:
            raise NotFound(f"thread {run.thread_id} not found")
        if run.multitask_strategy == "reject":
            raise Conflict(f"thread {run.thread_id} is busy", thread_id=run.thread_id)
        await self._queue(params)
        delay = 0.02
        try:
            while True:
                if time.monotonic() - started > timeout:
                    await self._set_status(run.run_id, "timeout")
                    raise Unavailable(f"run waited over {timeout:g}s for thread {run.thread_id}", retry_after=5)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(0.25, delay * 1.5)
                if await self._try_take(params):
                    return time.monotonic() - started
        except asyncio.CancelledError:
            await asyncio.shield(self._set_status(run.run_id, "cancelled"))
            raise

    async def _queue(self, params: dict[str, Any]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO runs (run_id, thread_id, assistant_id, status, multitask_strategy, metadata, pod, "
                "lease_expires_at, created_at) VALUES (%(run_id)s, %(thread_id)s, %(assistant_id)s, 'pending', "
                "%(strategy)s, %(metadata)s, %(pod)s, now() + %(lease)s, clock_timestamp())", params)

    async def _try_take(self, params: dict[str, Any]) -> bool:
        """One transaction, pipelined into two round trips: lock the thread and read the queue, decide."""
        run_id = params["run_id"]
        async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            holder = await conn.execute(
                f"SELECT {LIVE_HOLDER} AS held, t.run_id::text AS run_id FROM threads t "
                "WHERE t.thread_id = %(thread_id)s FOR NO KEY UPDATE", params)
            # Queued runs whose pods stopped renewing their lease no longer wait for the thread.
            await conn.execute(
                "UPDATE runs SET status = 'error', updated_at = now() WHERE thread_id = %(thread_id)s "
                "AND status IN ('pending', 'running') AND lease_expires_at <= now()", params)
            cur = await conn.execute(
                "SELECT run_id::text AS run_id FROM runs WHERE thread_id = %(thread_id)s AND status = 'pending' "
                "ORDER BY created_at, run_id LIMIT 1", params)
            thread = await holder.fetchone()
            if thread is None:
                await conn.execute("UPDATE runs SET status = 'cancelled' WHERE run_id = %(run_id)s", params)
                raise NotFound(f"thread {params['thread_id']} was deleted")
            first = await cur.fetchone()
            if first is None or first["run_id"] != run_id:
                cur = await conn.execute("SELECT status FROM runs WHERE run_id = %(run_id)s", params)
                mine = await cur.fetchone()
                if mine is None or mine["status"] != "pending":
                    raise Unavailable(f"run {run_id} lost its place in the queue", retry_after=1)
            if thread["held"] or first is None or first["run_id"] != run_id:
                await conn.execute("UPDATE runs SET lease_expires_at = now() + %(lease)s WHERE run_id = %(run_id)s",
                                   params)
                return False
            await conn.execute(
                "UPDATE runs SET status = 'running', lease_expires_at = now() + %(lease)s, updated_at = now() "
                "WHERE run_id = %(run_id)s", params)
            await conn.execute(
                "UPDATE threads AS t SET run_id = %(run_id)s, lease_expires_at = now() + %(lease)s, "
                "status = 'busy', updated_at = now(), metadata = t.metadata || jsonb_build_object('graph_id', "
                "%(graph_id)s::text, 'assistant_id', %(assistant_id)s::text) WHERE t.thread_id = %(thread_id)s", params)
            return True

    async def heartbeat(self, run_id: str, lease: float) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "WITH thread AS (UPDATE threads SET lease_expires_at = now() + %(lease)s WHERE run_id = %(run_id)s) "
                "UPDATE runs SET lease_expires_at = now() + %(lease)s WHERE run_id = %(run_id)s "
                "AND status = 'running' RETURNING 1", {"lease": dt.timedelta(seconds=lease), "run_id": run_id})
            return await cur.fetchone() is not None

    async def _set_status(self, run_id: str, status: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE runs SET status = %s, updated_at = now() WHERE run_id = %s "
                               "AND status IN ('pending', 'running')", (status, run_id))

    async def finish_run(self, run: RunRecord, run_status: RunStatus, thread_status: ThreadStatus,
                         values: dict[str, Any] | None, interrupts: dict[str, Any],
                         error: dict[str, Any] | None) -> None:
        # One statement, so one round trip and atomic: the run's end and the thread's new state.
        async with self.pool.connection() as conn:
            # Only the holder releases the thread (one that lost its lease must not clobber the next).
            await conn.execute(
                "WITH finished AS (UPDATE runs SET status = %s, updated_at = now() WHERE run_id = %s) "
                "UPDATE threads SET status = %s, values = coalesce(%s, values), interrupts = %s, error = %s, "
                "run_id = NULL, lease_expires_at = NULL, updated_at = now() WHERE thread_id = %s AND run_id = %s",
                (run_status, run.run_id, thread_status, Jsonb(values) if values is not None else None,
                 Jsonb(interrupts), Jsonb(error) if error is not None else None, run.thread_id, run.run_id))


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

    async def create(self, thread_id: str | None, metadata: dict[str, Any], if_exists: str,
                     auth: AuthFilter = None, *, ttl: ThreadTTL | None = None) -> dict[str, Any]:
        if ttl is not None:
            raise NotSupported("thread ttl needs PostgreSQL (CHECKPOINTER=memory sweeps nothing)")
        thread_id = thread_id or new_thread_id()
        if thread_id in self.threads:
            if if_exists == "do_nothing" and (not auth or matches(auth, self.threads[thread_id].data["metadata"])):
                return dict(self.threads[thread_id].data)
            raise Conflict(f"thread {thread_id} already exists")
        now = self._now()
        self.threads[thread_id] = _MemThread({
            "thread_id": thread_id, "created_at": now, "updated_at": now, "metadata": dict(metadata),
            "status": "idle", "values": {}, "interrupts": {}, "error": None, "config": {},
        })
        return dict(self.threads[thread_id].data)

    def _get(self, thread_id: str, auth: AuthFilter = None) -> _MemThread:
        thread = self.threads.get(thread_id)
        if thread is None or (auth and not matches(auth, thread.data["metadata"])):
            raise NotFound(f"thread {thread_id} not found")
        return thread

    async def get(self, thread_id: str, auth: AuthFilter = None, *, include_ttl: bool = False) -> dict[str, Any]:
        return dict(self._get(thread_id, auth).data)

    async def access(self, thread_id: str, auth: AuthFilter) -> bool | None:
        thread = self.threads.get(thread_id)
        return None if thread is None else (not auth or matches(auth, thread.data["metadata"]))

    async def patch(self, thread_id: str, metadata: dict[str, Any], auth: AuthFilter = None, *,
                    ttl: ThreadTTL | None = None) -> dict[str, Any]:
        if ttl is not None:
            raise NotSupported("thread ttl needs PostgreSQL (CHECKPOINTER=memory sweeps nothing)")
        thread = self._get(thread_id, auth)
        thread.data["metadata"] = {**thread.data["metadata"], **metadata}
        thread.data["updated_at"] = self._now()
        return dict(thread.data)

    async def delete(self, thread_id: str, auth: AuthFilter = None) -> None:
        thread = self._get(thread_id, auth)
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
            if filters.auth and not matches(filters.auth, d["metadata"]):
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

    async def begin_run(self, run: RunRecord, lease: float, timeout: float,
                        create: dict[str, Any] | None = None) -> float:
        if create is not None:
            await self.create(run.thread_id, create, "do_nothing")
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
        if run.graph_id and thread.data["metadata"].get("graph_id") != run.graph_id:
            thread.data["metadata"] = {**thread.data["metadata"], "graph_id": run.graph_id}
        if thread.data["metadata"].get("assistant_id") != run.assistant_id:
            thread.data["metadata"] = {**thread.data["metadata"], "assistant_id": run.assistant_id}
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
