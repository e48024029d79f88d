"""The checkpointer the service uses: LangGraph's AsyncPostgresSaver, without its process lock.

The stock saver funnels every database call of a process through one ``asyncio.Lock`` (it
was written for a single shared connection), so a pod gets no more checkpoint throughput
from a pool of 16 connections than from one. Over a pool, each call takes its own pooled
connection, so the lock buys nothing: :class:`PooledPostgresSaver` drops it there and
keeps it for a single connection. Tables, rows and SQL are the stock saver's own, so a stock
saver reads what this one writes and the other way round.

Writes take one statement each (see put_sql) and serialise inline instead of hopping to a
worker thread: the stock saver's ``asyncio.to_thread`` around (de)serialising a few small
blobs costs more than the work itself, and buys no parallelism (serialising Python objects
holds the GIL either way). ``put_statement``, ``writes_statement`` (the SQL and parameters of
``aput`` and ``aput_writes``, built without I/O so that the instrumented saver can time the
statement in place) and ``_load_checkpoint_tuple`` follow the stock methods of the pinned
langgraph-checkpoint-postgres (see requirements.lock); the tests check both savers read each
other's rows.

It also refuses ``setup()``: the service never runs DDL (``python -m migrate`` does).

Inside a run of the queue (:data:`deferred` holds the run's :class:`Deferred`, set by the
worker), two things change, both undone by ``CHECKPOINT_FLUSH_EACH_STEP=true``:

* A write's commit does not wait for its WAL to reach disk (``synchronous_commit`` off for that
  transaction only): the run's end is committed with the server's setting (on by default), and a
  commit waits for the WAL flush up to its own record, which lies after every write of the run.
  A run answered as finished is on disk as before; a PostgreSQL crash in the middle of a run
  loses at most the writes of the last ``wal_writer_delay`` or so (the run continues from an
  earlier checkpoint). Committed, the data is visible to every pod at once either way.
* A task's pending writes are sent with the next checkpoint of their namespace, in the same
  statement (one round trip instead of two per step), or before any read of the run's thread
  in the run, or at the run's end (the worker flushes before it records the end). A pod that dies
  in the middle of a step loses the writes of the step's finished tasks with it; the run
  continues on another pod from the last checkpoint and runs those tasks again (as it runs
  the unfinished ones anyway).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service.pool import commit_if_open

# The stock saver writes a checkpoint as one statement per blob plus one for the checkpoint row,
# and pending writes as one statement per write. These do the same in one statement each (the
# same rows, the same ON CONFLICT rules): fewer round trips and much less client CPU per step.
# Rows go in as a multi-row VALUES list of scalar parameters (psycopg dumps scalars in C; arrays
# for unnest would take its Python list dumper); one statement text per row count, prepared once.
_BLOB_COLUMNS = "(thread_id, checkpoint_ns, channel, version, type, blob)"
_WRITE_COLUMNS = "(thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)"
_UPSERT_CHECKPOINT = """
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
"""


# Evaluated for each row written, inside the statement's transaction, before its commit reads the setting.
_DEFER = " RETURNING set_config('synchronous_commit', 'off', true)"


class Deferred:
    """One run's pending writes not sent yet: at most one batch per (thread, namespace).

    ``latest``: the run's thread and its latest root checkpoint row (None: it has none), read by
    the statement that created the run (service.runs.queue, ``prefetch``); the run's first read
    of that checkpoint takes it instead of a statement. Any write of the run drops it.
    """

    __slots__ = ("latest", "pending", "saver")

    def __init__(self, latest: tuple[str, dict[str, Any] | None] | None = None) -> None:
        # (thread_id, checkpoint_ns) -> (rows, upsert, params) of a writes_sql statement
        self.pending: dict[tuple[str, str], tuple[int, bool, list[Any]]] = {}
        self.saver: PooledPostgresSaver | None = None
        self.latest = latest

    def take(self, thread_id: str, checkpoint_ns: str) -> tuple[int, bool, list[Any]] | None:
        return self.pending.pop((thread_id, checkpoint_ns), None)

    async def flush(self) -> None:
        """Send every pending batch (before a read of the thread, and at the run's end)."""
        pending, self.pending = self.pending, {}
        if self.saver is None:
            return
        for rows, upsert, params in pending.values():
            async with self.saver._cursor() as cur:
                await cur.execute(writes_sql(rows, upsert, True), params)


# Set by service.runs.worker while a run executes (None elsewhere: every write as the stock saver).
deferred: ContextVar[Deferred | None] = ContextVar("deferred", default=None)


def _rows(count: int, width: int) -> str:
    row = "(" + ", ".join(["%s"] * width) + ")"
    return ", ".join([row] * count)


@functools.cache
def put_sql(blobs: int, defer: bool = False, writes: int = 0, upsert: bool = False) -> str:
    """The blobs (if any) and the checkpoint row, in one statement; ``defer``: see :data:`deferred`.

    ``writes``: the previous checkpoint's pending writes (``writes_sql``'s rows) go first, in the
    same statement; their parameters come before the blobs'.
    """
    tail = _DEFER if defer else ""
    ctes = []
    if writes:
        ctes.append(f"writes AS ({_writes_insert(writes, upsert)})")
    if blobs:
        ctes.append(f"blobs AS (INSERT INTO checkpoint_blobs {_BLOB_COLUMNS} VALUES {_rows(blobs, 6)} "
                    "ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING)")
    return ("WITH " + ", ".join(ctes) if ctes else "") + _UPSERT_CHECKPOINT + tail


def _writes_insert(writes: int, upsert: bool) -> str:
    conflict = ("DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob" if upsert
                else "DO NOTHING")
    return (f"INSERT INTO checkpoint_writes {_WRITE_COLUMNS} VALUES {_rows(writes, 9)} "
            f"ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) {conflict}")


@functools.cache
def writes_sql(writes: int, upsert: bool, defer: bool = False) -> str:
    """Pending writes in one statement; ``upsert`` overwrites (special channels), else keeps the first.

    ``defer``: see :data:`deferred` (a write kept by DO NOTHING returns no row and commits as usual).
    """
    return _writes_insert(writes, upsert) + (_DEFER if defer else "")


class _PooledCursor:
    """``async with saver._cursor() as cur`` over a pool: a binary dict-row cursor on a pooled connection.

    Like service.pool.Checkout (and any pool's ``connection()``), it commits an open transaction
    on success (a pool not in autocommit mode) and lets ``putconn`` roll back after an error.
    """

    __slots__ = ("_conn", "_cur", "_pool")

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._conn: Any = None
        self._cur: AsyncCursor[DictRow] | None = None

    async def __aenter__(self) -> AsyncCursor[DictRow]:
        self._conn = await self._pool.getconn()
        self._cur = self._conn.cursor(binary=True, row_factory=dict_row)
        return self._cur

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            if self._cur is not None:
                await self._cur.close()
            await commit_if_open(self._conn, exc_type)
        finally:
            await self._pool.putconn(self._conn)


class SchemaManagedElsewhere(RuntimeError):
    """Raised by setup(): the schema belongs to the migration job."""


class PooledPostgresSaver(AsyncPostgresSaver):
    """AsyncPostgresSaver whose concurrency is bounded by its pool, not by one lock."""

    async def setup(self) -> None:
        raise SchemaManagedElsewhere("the service never runs DDL; run `python -m migrate`")

    def _cursor(self, *, pipeline: bool = False) -> AbstractAsyncContextManager[AsyncCursor[DictRow]]:  # type: ignore[override]
        if isinstance(self.conn, AsyncConnectionPool) and self.pipe is None and not pipeline:
            return _PooledCursor(self.conn)  # every call of a run: no generator-based context manager
        return self._cursor_otherwise(pipeline=pipeline)

    @asynccontextmanager
    async def _cursor_otherwise(self, *, pipeline: bool) -> AsyncIterator[AsyncCursor[DictRow]]:
        if not isinstance(self.conn, AsyncConnectionPool) or self.pipe is not None:
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        async with self.conn.connection() as conn:
            if self.supports_pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                async with conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        next_config, sql, params = self.put_statement(config, checkpoint, metadata, new_versions)
        async with self._cursor() as cur:
            await cur.execute(sql, params)
        return next_config

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        statement = self.writes_statement(config, writes, task_id, task_path)
        if statement is not None:
            async with self._cursor() as cur:
                await cur.execute(*statement)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        run = deferred.get()
        if run is not None:
            if run.pending:  # the run reads its own thread: its writes first
                await run.flush()
            if run.latest is not None:
                configurable = config["configurable"]
                thread_id, value = run.latest
                if (configurable["thread_id"] == thread_id and not configurable.get("checkpoint_ns")
                        and not get_checkpoint_id(config)):
                    run.latest = None  # read once: the run writes the thread next
                    if value is None:
                        return None
                    if value["checkpoint"]["v"] >= 4 or not value["parent_checkpoint_id"]:
                        return await self._load_checkpoint_tuple(value)  # else the stock read migrates it
        return await super().aget_tuple(config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        run = deferred.get()
        if run is not None and run.pending:
            await run.flush()
        async for item in super().alist(config, filter=filter, before=before, limit=limit):
            yield item

    def put_statement(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                      new_versions: ChannelVersions) -> tuple[RunnableConfig, str, list[Any]]:
        """aput's next config, SQL and parameters (the stock aput's rows, in one statement)."""
        configurable = config["configurable"].copy()
        thread_id = configurable.pop("thread_id")
        checkpoint_ns = configurable.pop("checkpoint_ns")
        checkpoint_id = configurable.pop("checkpoint_id", None)
        copy: dict[str, Any] = checkpoint.copy()  # type: ignore[assignment]
        copy["channel_values"] = copy["channel_values"].copy()
        next_config: RunnableConfig = {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                             "checkpoint_id": checkpoint["id"]}
        }
        # Primitive values stay inline in the checkpoint row; the others go to the blobs table.
        blob_values = {}
        for k, v in checkpoint["channel_values"].items():
            if isinstance(v, _DeltaSnapshot):
                blob_values[k] = copy["channel_values"].pop(k)
                copy["channel_values"][k] = True
            elif v is None or isinstance(v, (str, int, float, bool)):
                pass
            else:
                blob_values[k] = copy["channel_values"].pop(k)
        blob_versions = {k: v for k, v in new_versions.items() if k in blob_values}
        blobs = self._dump_blobs(thread_id, checkpoint_ns, blob_values, blob_versions)
        run = deferred.get()
        if run is not None:
            run.latest = None
        pending = run.take(thread_id, checkpoint_ns) if run is not None else None
        params: list[Any] = list(pending[2]) if pending is not None else []
        params += [value for blob in blobs for value in blob]
        params += [thread_id, checkpoint_ns, checkpoint["id"], checkpoint_id, Jsonb(copy),
                   Jsonb(get_serializable_checkpoint_metadata(config, metadata))]
        if pending is None:
            return next_config, put_sql(len(blobs), run is not None), params
        return next_config, put_sql(len(blobs), True, pending[0], pending[1]), params

    def writes_statement(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                         task_path: str = "") -> tuple[str, list[Any]] | None:
        """aput_writes's SQL and parameters, or None when there is nothing to send now.

        In a run (:data:`deferred`), the writes wait for the namespace's next checkpoint; what is
        returned then is an earlier batch of the namespace that was still waiting (sent first, so
        that a later write of the same row still wins), or None.
        """
        upsert = all(w[0] in WRITES_IDX_MAP for w in writes)
        c = config["configurable"]
        rows = self._dump_writes(c["thread_id"], c["checkpoint_ns"], c["checkpoint_id"], task_id, task_path, writes)
        if upsert:
            # executemany upserted row by row (the last write of an idx wins); one statement may not
            # touch a row twice, so keep the last of each idx.
            rows = list({r[5]: r for r in rows}.values())
        if not rows:
            return None
        params = [value for row in rows for value in row]
        run = deferred.get()
        if run is None:
            return writes_sql(len(rows), upsert), params
        run.saver = self
        run.latest = None
        earlier = run.pending.get((c["thread_id"], c["checkpoint_ns"]))
        run.pending[(c["thread_id"], c["checkpoint_ns"])] = (len(rows), upsert, params)
        return None if earlier is None else (writes_sql(earlier[0], earlier[1], True), earlier[2])

    async def _load_checkpoint_tuple(self, value: DictRow) -> CheckpointTuple:
        return CheckpointTuple(
            {"configurable": {"thread_id": value["thread_id"], "checkpoint_ns": value["checkpoint_ns"],
                              "checkpoint_id": value["checkpoint_id"]}},
            {  # type: ignore[typeddict-item]
                **value["checkpoint"],
                "channel_values": {
                    **(value["checkpoint"].get("channel_values") or {}),
                    **self._load_blobs(value["channel_values"]),
                },
            },
            value["metadata"],
            (
                {"configurable": {"thread_id": value["thread_id"], "checkpoint_ns": value["checkpoint_ns"],
                                  "checkpoint_id": value["parent_checkpoint_id"]}}
                if value["parent_checkpoint_id"]
                else None
            ),
            self._load_writes(value["pending_writes"]),
        )
