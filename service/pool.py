"""The service's connection pool: psycopg_pool's, with a cheaper queue and a cheaper checkout.

Under load the pool is empty most of the time: every run writes a checkpoint and its tasks'
writes at once, and a connection is back only when the event loop next reaches the coroutine
that used it. psycopg_pool queues a caller that finds it empty on a condition variable of its
own and hands the returned connection over under the pool's lock, which costs several times a
checkout from a non-empty pool. :class:`Pool` queues callers in front of the pool instead, on
one FIFO semaphore of ``max_size`` slots, so a caller it lets through finds a connection
waiting: the same order, the same timeout and ``PoolTimeout``, a fraction of the work.

``connection()`` also returns its connection without the connection's own ``async with``:
it commits only when a transaction is open (never, in the service's autocommit pool) instead of
always going through ``commit()``; on an error ``putconn`` rolls back, as psycopg_pool always does.

Under bench/http_runs.py's load (16 runs in flight over 16 connections) nearly every checkout
used to wait in psycopg_pool's queue: 5 551 of 5 601 checkouts of 400 runs waited over 0.1 ms.

A checkout takes the connection returned last (psycopg_pool takes the one returned first). After
a burst has grown the pool, psycopg_pool's rotation hands each statement the connection idle
longest, so a lull keeps every backend of the pool waking in turn, each with cold caches. Taken
last in, first out, a lull keeps a few backends busy, the rest stay asleep, and psycopg_pool's
``max_idle`` shrink (which closes the one idle longest) still finds them. PostgreSQL's CPU per run
was lower in 9 of 10 alternated pairs of bench/per_run.py and bench/http_runs.py runs;
the service's own CPU did not move beyond the machine's noise (docs/performance.md, change 7).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout


class Pool(AsyncConnectionPool[Any]):
    """AsyncConnectionPool whose callers wait in front of it when every connection is out.

    The service never resizes its pool; the queue has ``max_size`` slots from the first checkout.
    """

    _slots: asyncio.Semaphore | None = None
    _queued = 0
    #: Called with the seconds every checkout took, a failed one included (the metrics' pool
    #: wait histogram); set on the class, so that the fast path pays no extra call.
    observe_wait: Callable[[float], None] | None = None

    async def getconn(self, timeout: float | None = None) -> Any:
        started = time.monotonic()
        slots = self._slots
        if slots is None:
            slots = self._slots = asyncio.Semaphore(self.max_size)
        if timeout is None:
            timeout = self.timeout
        try:
            if slots.locked():
                self._queued += 1
                try:
                    async with asyncio.timeout(timeout):
                        await slots.acquire()
                except TimeoutError:
                    raise PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec") from None
                finally:
                    self._queued -= 1
                timeout = max(0.0, timeout - (time.monotonic() - started))
            else:
                await slots.acquire()  # a free slot: returns at once
            try:
                return await super().getconn(timeout)
            except BaseException:
                slots.release()
                raise
        finally:
            if self.observe_wait is not None:
                self.observe_wait(time.monotonic() - started)

    async def putconn(self, conn: Any) -> None:
        if getattr(conn, "_pool", None) is not self or self._slots is None:
            await super().putconn(conn)  # not ours (or returned twice): psycopg_pool says so
            return
        try:
            await super().putconn(conn)
        finally:
            self._slots.release()

    async def _get_ready_connection(self, timeout: float | None) -> Any:
        """psycopg_pool's, but the connection returned last (see the module's text)."""
        if timeout is not None and timeout <= 0.0:
            raise PoolTimeout()
        if self._pool:
            conn = self._pool.pop()
            self._nconns_min = min(self._nconns_min, len(self._pool))
            return conn
        return await super()._get_ready_connection(timeout)  # empty: its accounting of waiters

    def connection(self, timeout: float | None = None) -> Checkout:  # type: ignore[override]
        return Checkout(self, timeout)

    def get_stats(self) -> dict[str, int]:
        stats = super().get_stats()
        stats["requests_waiting"] = stats.get("requests_waiting", 0) + self._queued
        return stats


class Checkout:
    """``async with pool.connection() as conn``: getconn on entry, putconn on exit."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: Pool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: Any | None = None

    async def __aenter__(self) -> Any:
        self._conn = await self._pool.getconn(self._timeout)
        return self._conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._conn is not None
        conn, self._conn = self._conn, None
        try:
            await commit_if_open(conn, exc_type)
        finally:
            await self._pool.putconn(conn)


async def commit_if_open(conn: Any, exc_type: type[BaseException] | None) -> None:
    """What leaving ``async with conn`` does on success, for a connection not in autocommit mode.

    A connection in autocommit mode (the service's) has no transaction open here, so this is one
    attribute read; on an error nothing is committed and ``putconn`` rolls back.
    """
    if exc_type is None and conn.pgconn.transaction_status == TransactionStatus.INTRANS:
        await conn.commit()
