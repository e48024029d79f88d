"""A run taken at once reads its thread's latest checkpoint in the statement that creates it.

``RunQueue.submit(prefetch=True)`` returns the thread's latest root checkpoint row (the stock
saver's columns) with the run; the run's ``Deferred.latest`` hands it to the saver's first
``aget_tuple`` of that thread instead of a statement. These tests read it through a saver whose pool
is closed, so any statement would fail: the tuple must equal what the stock saver reads, a new
thread must read as empty, and a write of the run (or a read of another checkpoint) must go to the
database.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed

from service.checkpointer import Deferred, PooledPostgresSaver, deferred
from service.graphs import assistant_id_for
from service.graphs.support import graph as support
from service.runs.queue import RunQueue, Submitted

QUESTION = {"messages": [{"role": "user", "content": "Will my investment returns be guaranteed?"}]}


def open_pool(conninfo: str) -> AsyncConnectionPool[Any]:
    return AsyncConnectionPool(conninfo, min_size=1, max_size=2, open=False,
                               kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": 0})


async def submit(conninfo: str, thread_id: str, *, create: bool, run_now: bool = True) -> Submitted:
    pool = open_pool(conninfo)
    await pool.open()
    try:
        queue = RunQueue(pool, pod="test", lease=3600)
        return await queue.submit(thread_id=thread_id, assistant_id=assistant_id_for("support"),
                                  kwargs={"input": None}, metadata={}, strategy="enqueue", run_now=run_now,
                                  create={} if create else None, thread_metadata={}, prefetch=True)
    finally:
        await pool.close()


async def conversation(conninfo: str, thread_id: str) -> None:
    """A thread with history: a paused run of the example graph, and pending writes on its checkpoint."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO threads (thread_id, metadata) VALUES (%s, '{}')", (thread_id,))
    pool = open_pool(conninfo)
    await pool.open()
    try:
        saver = PooledPostgresSaver(pool)
        graph = support.copy(update={"checkpointer": saver})
        config: Any = {"configurable": {"thread_id": thread_id}}
        await graph.ainvoke(QUESTION, config)
        latest = await saver.aget_tuple(config)
        assert latest is not None
        await saver.aput_writes(latest.config, [("approved_reply", "ok"), ("reviewed_by", "ana")], "task-1")
    finally:
        await pool.close()


async def read_prefetched(latest: tuple[str, dict[str, Any] | None] | None, config: Any,
                          write_first: bool = False) -> Any:
    """aget_tuple in a run whose Deferred holds ``latest``, through a saver that cannot reach the database."""
    closed = open_pool("dbname=unreachable")  # never opened: every checkout raises PoolClosed
    saver = PooledPostgresSaver(closed)
    run = Deferred(latest)
    deferred.set(run)
    if write_first:
        saver.writes_statement({"configurable": {**config["configurable"], "checkpoint_id": "x"}},
                               [("messages", [])], "task-2")
    return await saver.aget_tuple(config)


class TestPrefetch:
    def test_should_hand_the_run_the_checkpoint_the_stock_saver_reads(self, migrated_db: str) -> None:
        thread_id = str(uuid.uuid4())
        config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}

        async def scenario() -> tuple[Any, Any, Submitted]:
            await conversation(migrated_db, thread_id)
            async with await AsyncConnection.connect(migrated_db, autocommit=True, row_factory=dict_row) as conn:
                stock = await AsyncPostgresSaver(conn).aget_tuple(config)  # type: ignore[arg-type]
            submitted = await submit(migrated_db, thread_id, create=False)
            got = await read_prefetched((thread_id, submitted.latest), config)
            return stock, got, submitted

        stock, got, submitted = asyncio.run(scenario())
        assert submitted.taken and submitted.prefetched and submitted.latest is not None
        assert not any(k.startswith("cp_") for k in submitted.row)  # the run's row as before
        assert got is not None and stock is not None
        assert got.config == stock.config and got.parent_config == stock.parent_config
        assert got.checkpoint == stock.checkpoint and got.metadata == stock.metadata
        assert sorted(got.pending_writes) == sorted(stock.pending_writes)
        assert len(got.pending_writes) == 2
        assert got.checkpoint["channel_values"]["messages"] == stock.checkpoint["channel_values"]["messages"]

    def test_should_read_a_new_thread_as_empty_without_a_statement(self, migrated_db: str) -> None:
        thread_id = str(uuid.uuid4())

        async def scenario() -> tuple[Submitted, Any]:
            submitted = await submit(migrated_db, thread_id, create=True)
            got = await read_prefetched((thread_id, submitted.latest),
                                        {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
            return submitted, got

        submitted, got = asyncio.run(scenario())
        assert submitted.taken and submitted.prefetched and submitted.latest is None
        assert got is None

    @pytest.mark.parametrize("case", ["after-a-write", "another-checkpoint", "another-thread"])
    def test_should_read_from_the_database_otherwise(self, case: str) -> None:
        thread_id = str(uuid.uuid4())
        config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        if case == "another-checkpoint":
            config["configurable"]["checkpoint_id"] = "1f000000-0000-6000-8000-000000000000"
        if case == "another-thread":
            config["configurable"]["thread_id"] = str(uuid.uuid4())
        with pytest.raises(PoolClosed):  # it asked the database
            asyncio.run(read_prefetched((thread_id, None), config, write_first=case == "after-a-write"))

    def test_should_not_prefetch_for_a_run_queued_for_later(self, migrated_db: str) -> None:
        thread_id = str(uuid.uuid4())

        async def scenario() -> Submitted:
            await conversation(migrated_db, thread_id)
            return await submit(migrated_db, thread_id, create=False, run_now=False)

        submitted = asyncio.run(scenario())
        assert not submitted.taken and not submitted.prefetched and submitted.latest is None
