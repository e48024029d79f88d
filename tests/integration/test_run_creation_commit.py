"""A runs/wait's creation commits without waiting for the disk; every other run's waits as before.

``RunQueue.submit(defer=True)`` (what a runs/wait asks for) sets ``synchronous_commit`` off in the
statement that writes a run it takes at once, as the run's checkpoint writes do: the run's end
commits as usual and flushes the WAL through it. Observed on a server whose WAL writer nearly
sleeps (it flushes on its own every 10 s): right after such a commit, the WAL is not flushed as far
as it was written; after a plain submit, a queued one, or ``flush()``, it is. The naive flush
(``SELECT pg_current_xact_id()``: a transaction id, but no WAL) commits without waiting for the disk.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from service.graphs import assistant_id_for
from service.runs.queue import RunQueue
from tests.support.pg import QUIET_WAL_SETTINGS, PgServer, wal_flushed


@pytest.fixture(scope="module")
def quiet_wal() -> Iterator[PgServer]:
    server = PgServer(settings=QUIET_WAL_SETTINGS)
    yield server
    server.close()


@pytest.fixture
def database(quiet_wal: PgServer) -> Iterator[str]:
    from migrate.runner import Options, run

    with quiet_wal.database() as conninfo:
        run(Options(conninfo=conninfo))
        yield conninfo


def submit_then_look(conninfo: str, admin: str, *, defer: bool, create: bool, run_now: bool = True,
                     flush: bool | str = False) -> tuple[dict[str, Any], bool]:
    """One submit (after a commit that flushes, so that the WAL writer has no reason to); the run's
    row and whether the WAL was flushed right after it."""
    thread_id = str(uuid.uuid4())

    async def go() -> tuple[dict[str, Any], bool]:
        async with AsyncConnectionPool(conninfo, min_size=1, max_size=1, open=False,
                                       kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
            queue = RunQueue(pool, pod="test", lease=3600)
            async with pool.connection() as conn:  # a commit that flushes: the WAL writer has nothing to do
                await conn.execute("CREATE TABLE IF NOT EXISTS flushed_before (n int)")
            if not create:
                async with pool.connection() as conn:
                    await conn.execute("INSERT INTO threads (thread_id, metadata) VALUES (%s, '{}')", (thread_id,))
            submitted = await queue.submit(
                thread_id=thread_id, assistant_id=assistant_id_for("support"), kwargs={"input": None},
                metadata={}, strategy="enqueue", run_now=run_now, create={} if create else None,
                thread_metadata={}, defer=defer)
            if flush == "naive":
                async with pool.connection() as conn:
                    await conn.execute("SELECT pg_current_xact_id()")
            elif flush:
                await queue.flush(str(submitted.row["run_id"]))
            return submitted.row, wal_flushed(admin)

    return asyncio.run(go())


class TestRunCreationCommit:
    @pytest.mark.parametrize("create", [True, False], ids=["new-thread", "thread"])
    def test_should_not_wait_for_the_disk_for_a_run_taken_at_once(self, quiet_wal: PgServer, database: str,
                                                                   create: bool) -> None:
        row, on_disk = submit_then_look(database, quiet_wal.admin, defer=True, create=create)
        assert row["status"] == "running"
        assert not on_disk

    @pytest.mark.parametrize("create", [True, False], ids=["new-thread", "thread"])
    def test_should_wait_for_the_disk_otherwise(self, quiet_wal: PgServer, database: str, create: bool) -> None:
        row, on_disk = submit_then_look(database, quiet_wal.admin, defer=False, create=create)
        assert row["status"] == "running"
        assert on_disk

    def test_should_wait_for_the_disk_for_a_run_queued_for_later(self, quiet_wal: PgServer, database: str) -> None:
        row, on_disk = submit_then_look(database, quiet_wal.admin, defer=True, create=False, run_now=False)
        assert row["status"] == "pending"
        assert on_disk

    def test_should_be_on_disk_after_a_flush(self, quiet_wal: PgServer, database: str) -> None:
        row, on_disk = submit_then_look(database, quiet_wal.admin, defer=True, create=True, flush=True)
        assert row["status"] == "running"
        assert on_disk

    def test_should_not_be_on_disk_after_the_naive_flush(self, quiet_wal: PgServer, database: str) -> None:
        _, on_disk = submit_then_look(database, quiet_wal.admin, defer=True, create=True, flush="naive")
        assert not on_disk
