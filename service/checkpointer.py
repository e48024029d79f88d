"""The checkpointer the service uses: LangGraph's AsyncPostgresSaver, without its process lock.

The stock saver funnels every database call of a process through one ``asyncio.Lock`` (it
was written for a single shared connection), so a pod gets no more checkpoint throughput
from a pool of 16 connections than from one. Over a pool, each call takes its own pooled
connection, so the lock buys nothing: :class:`PooledPostgresSaver` drops it there and
keeps it for a single connection. Tables, rows and SQL are the stock saver's own, so a stock
saver reads what this one writes and the other way round.

It also refuses ``setup()``: the service never runs DDL (``python -m migrate`` does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool


class SchemaManagedElsewhere(RuntimeError):
    """Raised by setup(): the schema belongs to the migration job."""


class PooledPostgresSaver(AsyncPostgresSaver):
    """AsyncPostgresSaver whose concurrency is bounded by its pool, not by one lock."""

    async def setup(self) -> None:
        raise SchemaManagedElsewhere("the service never runs DDL; run `python -m migrate`")

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        if not isinstance(self.conn, AsyncConnectionPool) or self.pipe is not None:
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        async with self.conn.connection() as conn:
            if pipeline and self.supports_pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            elif pipeline:
                async with conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
