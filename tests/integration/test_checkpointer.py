"""PooledPostgresSaver: same rows as the stock saver, concurrency bounded by the pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from service.checkpointer import Deferred, PooledPostgresSaver, SchemaManagedElsewhere, deferred
from service.graphs.support import graph as support

QUESTION = {"messages": [{"role": "user", "content": "Will my investment returns be guaranteed?"}]}


def open_pool(conninfo: str, max_size: int = 4, autocommit: bool = True) -> AsyncConnectionPool[Any]:
    return AsyncConnectionPool(conninfo, min_size=1, max_size=max_size, open=False,
                               kwargs={"autocommit": autocommit, "row_factory": dict_row, "prepare_threshold": 0})


@asynccontextmanager
async def stock_saver(conninfo: str) -> AsyncIterator[AsyncPostgresSaver]:
    async with await AsyncConnection.connect(conninfo, autocommit=True, row_factory=dict_row,
                                             prepare_threshold=0) as conn:
        yield AsyncPostgresSaver(conn)  # type: ignore[arg-type]


class TestCompatibility:
    @pytest.mark.parametrize("writer", ["pooled", "stock"])
    def test_should_read_what_the_other_saver_wrote(self, migrated_db: str, writer: str) -> None:
        async def scenario() -> None:
            pool = open_pool(migrated_db)
            await pool.open()
            pooled = PooledPostgresSaver(pool)
            try:
                async with stock_saver(migrated_db) as stock:
                    write_with, read_with = (pooled, stock) if writer == "pooled" else (stock, pooled)
                    config = {"configurable": {"thread_id": f"compat-{writer}"}}
                    w = support.copy(update={"checkpointer": write_with})
                    r = support.copy(update={"checkpointer": read_with})
                    await w.ainvoke(QUESTION, config)  # type: ignore[arg-type]
                    written = await w.aget_state(config)  # type: ignore[arg-type]
                    read = await r.aget_state(config)  # type: ignore[arg-type]
                    assert read.values == written.values
                    assert read.next == ("human_approval",)
                    assert [s.config async for s in r.aget_state_history(config)] == [  # type: ignore[arg-type]
                        s.config async for s in w.aget_state_history(config)]  # type: ignore[arg-type]
                    # The reader continues the thread the writer paused.
                    await r.aupdate_state(config, {"approved_reply": "ok by compliance"})  # type: ignore[arg-type]
                    final = await r.ainvoke(None, config)  # type: ignore[arg-type]
                    assert final["messages"][-1].content == "ok by compliance"
                    assert (await w.aget_state(config)).values["messages"][-1].content == "ok by compliance"  # type: ignore[arg-type]
            finally:
                await pool.close()

        asyncio.run(scenario())

    def test_should_commit_its_writes_over_a_pool_not_in_autocommit_mode(self, migrated_db: str) -> None:
        async def scenario() -> None:
            pool = open_pool(migrated_db, autocommit=False)
            await pool.open()
            try:
                config = {"configurable": {"thread_id": "not-autocommit"}}
                await support.copy(update={"checkpointer": PooledPostgresSaver(pool)}).ainvoke(
                    QUESTION, config)  # type: ignore[arg-type]
            finally:
                await pool.close()
            async with stock_saver(migrated_db) as stock:
                state = await support.copy(update={"checkpointer": stock}).aget_state(config)  # type: ignore[arg-type]
            assert state.next == ("human_approval",)
            assert state.values["messages"][0].content == QUESTION["messages"][0]["content"]

        asyncio.run(scenario())

    def test_should_refuse_to_run_ddl(self, migrated_db: str) -> None:
        async def scenario() -> None:
            pool = open_pool(migrated_db)
            await pool.open()
            try:
                with pytest.raises(SchemaManagedElsewhere):
                    await PooledPostgresSaver(pool).setup()
            finally:
                await pool.close()

        asyncio.run(scenario())


class _CountingPool(AsyncConnectionPool[Any]):
    """Counts how many connections are checked out at once; holds each a little longer."""

    active = 0
    peak = 0

    async def getconn(self, timeout: float | None = None) -> Any:
        conn = await super().getconn(timeout)
        type(self).active += 1
        type(self).peak = max(type(self).peak, type(self).active)
        await asyncio.sleep(0.02)
        return conn

    async def putconn(self, conn: Any) -> None:
        type(self).active -= 1
        await super().putconn(conn)


class TestConcurrency:
    @pytest.mark.parametrize(("saver_cls", "bounded_by_pool"), [(PooledPostgresSaver, True),
                                                                 (AsyncPostgresSaver, False)])
    def test_should_use_the_pool_concurrently_where_the_stock_saver_serialises(
        self, migrated_db: str, saver_cls: type[AsyncPostgresSaver], bounded_by_pool: bool
    ) -> None:
        async def scenario() -> int:
            _CountingPool.active = _CountingPool.peak = 0
            pool = _CountingPool(migrated_db, min_size=4, max_size=4, open=False,
                                 kwargs={"autocommit": True, "row_factory": dict_row})
            await pool.open()
            try:
                saver = saver_cls(pool)
                await asyncio.gather(*(saver.aget_tuple({"configurable": {"thread_id": f"t{i}"}})
                                       for i in range(16)))
            finally:
                await pool.close()
            return _CountingPool.peak

        peak = asyncio.run(scenario())
        assert peak == (4 if bounded_by_pool else 1)


class TestDeferredWrites:
    """In a run (service.checkpointer.deferred set), pending writes go with the next checkpoint."""

    @staticmethod
    def rows(conninfo: str, thread_id: str) -> tuple[int, int]:
        with psycopg.connect(conninfo) as conn:
            writes = conn.execute("SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s",
                                  (thread_id,)).fetchone()
            checkpoints = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s",
                                       (thread_id,)).fetchone()
        assert writes is not None and checkpoints is not None
        return int(writes[0]), int(checkpoints[0])

    def test_should_send_pending_writes_with_the_next_checkpoint_or_before_a_read(self, migrated_db: str) -> None:
        async def scenario() -> None:
            pool = open_pool(migrated_db)
            await pool.open()
            saver = PooledPostgresSaver(pool)
            deferred.set(Deferred())
            try:
                config: Any = {"configurable": {"thread_id": "deferred", "checkpoint_ns": ""}}
                first = await saver.aput(config, empty_checkpoint(), {"source": "input", "step": -1}, {})
                await saver.aput_writes(first, [("messages", "hello")], "task-1")
                assert self.rows(migrated_db, "deferred") == (0, 1)  # kept back
                nxt = await saver.aput(first, create_checkpoint(empty_checkpoint(), None, 0),
                                       {"source": "loop", "step": 0}, {})
                assert self.rows(migrated_db, "deferred") == (1, 2)  # both in one statement
                await saver.aput_writes(nxt, [("messages", "again")], "task-2")
                assert self.rows(migrated_db, "deferred") == (1, 2)
                found = await saver.aget_tuple(nxt)  # a read of the thread sends them first
                assert found is not None and [w[1:] for w in found.pending_writes or []] == [("messages", "again")]
                assert self.rows(migrated_db, "deferred") == (2, 2)
                await saver.aput_writes(nxt, [("messages", "last")], "task-3")
                run = deferred.get()
                assert run is not None
                await run.flush()  # the run's end
                assert self.rows(migrated_db, "deferred") == (3, 2)
            finally:
                await pool.close()

        asyncio.run(scenario())

    def test_should_store_a_run_as_the_stock_saver_does(self, migrated_db: str) -> None:
        """The same graph run with and without deferral leaves the same rows, interrupt included."""
        question = {"messages": [{"role": "user", "content": "Will my investment returns be guaranteed?"}]}

        async def scenario() -> None:
            pool = open_pool(migrated_db)
            await pool.open()
            saver = PooledPostgresSaver(pool)
            graph = support.copy(update={"checkpointer": saver})
            try:
                async def run(thread_id: str, defer: bool) -> Any:
                    if defer:
                        deferred.set(Deferred())
                    config: Any = {"configurable": {"thread_id": thread_id}}
                    await graph.ainvoke(question, config)
                    run_ = deferred.get()
                    if run_ is not None:
                        await run_.flush()
                    return await graph.aget_state(config)

                plain = await asyncio.create_task(run("plain", False))
                kept = await asyncio.create_task(run("kept", True))
                assert kept.next == plain.next == ("human_approval",)
                assert [t.interrupts for t in kept.tasks] == [t.interrupts for t in plain.tasks]
                assert kept.values["messages"][-1].content == plain.values["messages"][-1].content
                assert self.rows(migrated_db, "kept") == self.rows(migrated_db, "plain")
            finally:
                await pool.close()

        asyncio.run(scenario())
