"""service.pool.Pool against a real PostgreSQL: its queue keeps psycopg_pool's promises."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from service.pool import Pool


def run(conninfo: str, scenario: Callable[[Pool], Awaitable[Any]], max_size: int = 2, timeout: float = 5,
        autocommit: bool = True) -> Any:
    async def main() -> Any:
        pool = Pool(conninfo, min_size=max_size, max_size=max_size, timeout=timeout, open=False,
                    kwargs={"autocommit": autocommit, "row_factory": dict_row})
        await pool.open(wait=True)
        try:
            return await scenario(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


async def hold_all_and_queue_one(pool: Pool) -> tuple[list[Any], asyncio.Task[Any]]:
    """Takes every connection of the pool, then starts a checkout and waits until it is queued."""
    held = [await pool.getconn() for _ in range(pool.max_size)]
    waiter = asyncio.create_task(pool.getconn())
    while pool.get_stats()["requests_waiting"] < 1:
        await asyncio.sleep(0.001)
    return held, waiter


class TestQueue:
    def test_should_serve_waiting_callers_in_arrival_order(self, fresh_db: str) -> None:
        async def scenario(pool: Pool) -> list[int]:
            order: list[int] = []
            held = [await pool.getconn(), await pool.getconn()]

            async def caller(i: int) -> None:
                async with pool.connection() as conn:
                    order.append(i)
                    await conn.execute("SELECT 1")

            callers = []
            for i in range(6):
                callers.append(asyncio.create_task(caller(i)))
                while pool.get_stats()["requests_waiting"] < i + 1:  # queued before the next arrives
                    await asyncio.sleep(0.001)
            assert pool.get_stats()["requests_waiting"] == 6
            for conn in held:
                await pool.putconn(conn)
            await asyncio.gather(*callers)
            return order

        assert run(fresh_db, scenario) == [0, 1, 2, 3, 4, 5]

    def test_should_time_out_with_pool_timeout_and_lose_no_slot(self, fresh_db: str) -> None:
        async def scenario(pool: Pool) -> tuple[float, int]:
            held = [await pool.getconn(), await pool.getconn()]
            started = time.monotonic()
            with pytest.raises(PoolTimeout, match=r"couldn.t get a connection after 0\.30 sec"):
                await pool.getconn(timeout=0.3)
            waited = time.monotonic() - started
            for conn in held:
                await pool.putconn(conn)
            # Every slot is free again: max_size callers at once get a connection immediately.
            conns = [await pool.getconn(timeout=1) for _ in range(2)]
            for conn in conns:
                await pool.putconn(conn)
            return waited, pool.get_stats()["requests_waiting"]

        waited, waiting = run(fresh_db, scenario, timeout=30)
        assert 0.3 <= waited < 2
        assert waiting == 0

    def test_should_free_the_slot_of_a_caller_cancelled_while_waiting(self, fresh_db: str) -> None:
        async def scenario(pool: Pool) -> int:
            held, waiter = await hold_all_and_queue_one(pool)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            for conn in held:
                await pool.putconn(conn)
            async with pool.connection(timeout=1), pool.connection(timeout=1) as conn:
                await conn.execute("SELECT 1")
            return pool.get_stats()["requests_waiting"]

        assert run(fresh_db, scenario) == 0

    def test_should_pass_on_a_slot_handed_to_a_caller_cancelled_before_it_woke(self, fresh_db: str) -> None:
        async def scenario(pool: Pool) -> int:
            held, waiter = await hold_all_and_queue_one(pool)
            await pool.putconn(held.pop())  # its slot goes to the waiter, which has not run yet
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await pool.putconn(held.pop())
            async with pool.connection(timeout=1), pool.connection(timeout=1) as conn:  # no slot was lost
                await conn.execute("SELECT 1")
            return pool.get_stats()["requests_waiting"]

        assert run(fresh_db, scenario) == 0

    def test_should_refuse_a_connection_returned_twice(self, fresh_db: str) -> None:
        async def scenario(pool: Pool) -> None:
            conn = await pool.getconn()
            await pool.putconn(conn)
            with pytest.raises(ValueError, match="doesn't come from any pool"):
                await pool.putconn(conn)
            async with pool.connection(timeout=1) as a, pool.connection(timeout=1) as b:
                await a.execute("SELECT 1")
                await b.execute("SELECT 1")

        run(fresh_db, scenario)


class TestCheckout:
    def test_should_hand_out_the_connection_returned_last(self, fresh_db: str) -> None:
        async def scenario(pool: Pool) -> tuple[list[int], list[int]]:
            conns = [await pool.getconn() for _ in range(3)]
            returned = [conns[0].info.backend_pid, conns[2].info.backend_pid, conns[1].info.backend_pid]
            for i in (0, 2, 1):
                await pool.putconn(conns[i])
            again = [await pool.getconn() for _ in range(3)]
            pids = [c.info.backend_pid for c in again]
            for conn in again:
                await pool.putconn(conn)
            return returned, pids

        returned, taken = run(fresh_db, scenario, max_size=3)
        assert taken == returned[::-1]

    def test_should_roll_back_a_transaction_an_error_left_open(self, fresh_db: str) -> None:
        async def fail_in_transaction(pool: Pool) -> None:
            async with pool.connection() as conn:
                await conn.execute("BEGIN")
                await conn.execute("INSERT INTO t VALUES (1)")
                assert conn.info.transaction_status == TransactionStatus.INTRANS
                raise ZeroDivisionError

        async def scenario(pool: Pool) -> tuple[Any, Any]:
            async with pool.connection() as conn:
                await conn.execute("CREATE TABLE t (x int)")
            with pytest.raises(ZeroDivisionError):
                await fail_in_transaction(pool)
            async with pool.connection() as conn, pool.connection() as other:
                statuses = conn.info.transaction_status, other.info.transaction_status
                rows = await (await conn.execute("SELECT count(*) AS n FROM t")).fetchone()
            return statuses, rows

        statuses, rows = run(fresh_db, scenario)
        assert statuses == (TransactionStatus.IDLE, TransactionStatus.IDLE)
        assert rows == {"n": 0}

    def test_should_replace_a_connection_that_broke_in_use(self, fresh_db: str) -> None:
        async def scenario(pool: Pool) -> int:
            with pytest.raises(psycopg.OperationalError):
                async with pool.connection() as conn:
                    await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            for _ in range(4):  # both slots serve again, on working connections
                async with pool.connection(timeout=5) as conn:
                    await conn.execute("SELECT 1")
            return pool.get_stats()["requests_waiting"]

        assert run(fresh_db, scenario) == 0

    def test_should_commit_like_a_connection_context_when_not_in_autocommit_mode(self, fresh_db: str) -> None:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")

        async def fail_midway(pool: Pool) -> None:
            async with pool.connection() as conn:
                await conn.execute("INSERT INTO t VALUES (2)")
                raise ZeroDivisionError

        async def scenario(pool: Pool) -> None:
            async with pool.connection() as conn:
                await conn.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(ZeroDivisionError):
                await fail_midway(pool)

        run(fresh_db, scenario, autocommit=False)
        with psycopg.connect(fresh_db) as conn:
            assert conn.execute("SELECT array_agg(x) FROM t").fetchone() == ([1],)

