"""A run answered with ``durability: sync`` is on disk, though its steps' commits do not wait for it.

The run's checkpoint writes commit with ``synchronous_commit`` off (service/checkpointer.py) and
its end commits as usual, which flushes the WAL through every earlier write. The check: answer
a runs/wait, crash PostgreSQL at once (``pg_ctl stop -m immediate``: the WAL still in its
buffers is lost), start it again, and find the run, the thread and every checkpoint there. Right
after the answer, the WAL must also be flushed as far as it was written (the WAL writer, which
flushes by itself every ``wal_writer_delay``, sleeps 10 s here). The naive way to save the fsyncs
(``synchronous_commit`` off for the whole database) fails that: its answered run is not flushed.

A runs/wait's creation commits without waiting for the disk too (its end's flush covers it); a run
that outlasts the heartbeat is answered 200 early, with its run id, so its creation is made durable
first: crashed right after those headers, PostgreSQL still has the run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.support.pg import QUIET_WAL_SETTINGS, PgServer, wal_flushed
from tests.support.service import ServiceProcess

QUESTION = {"messages": [{"role": "user", "content": "My invoice shows the wrong amount"}]}
# Durable (fsync and synchronous_commit on, as in production); the WAL writer nearly asleep; nothing
# else writing WAL in the background.
SETTINGS = {"max_connections": "100", **QUIET_WAL_SETTINGS}


@pytest.fixture
def crashable() -> Iterator[PgServer]:
    server = PgServer(settings=SETTINGS)
    if server.embedded is None:
        pytest.skip("needs the embedded PostgreSQL (the test crashes the server)")
    yield server
    server.close()


def stored(conninfo: str, thread_id: str) -> dict[str, object]:
    """The run, thread and checkpoints of ``thread_id`` (reads only: no commit record, no flush)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        run_row = conn.execute("SELECT status FROM runs WHERE thread_id = %s", (thread_id,)).fetchone()
        thread = conn.execute("SELECT status, values FROM threads WHERE thread_id = %s", (thread_id,)).fetchone()
        checkpoints = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread_id,)).fetchone()
    return {"run": run_row[0] if run_row else None, "thread": thread[0] if thread else None,
            "values": bool(thread and thread[1]), "checkpoints": checkpoints[0] if checkpoints else 0}


def answered_then_crash(server: PgServer, conninfo: str) -> tuple[bool, dict[str, object], dict[str, object]]:
    """One runs/wait on a new thread, answered 200; then PostgreSQL crashes and starts again.
    Returns whether the WAL was flushed as far as written at the answer, and what was stored
    before the crash and after it."""
    from migrate.runner import Options, run

    run(Options(conninfo=conninfo))
    service = ServiceProcess(conninfo)
    thread_id = str(uuid.uuid4())
    try:
        service.start()
        response = httpx.post(f"{service.url}/threads/{thread_id}/runs/wait", timeout=30, json={
            "assistant_id": "support", "input": QUESTION, "durability": "sync", "if_not_exists": "create"})
        assert response.status_code == 200, response.text
        assert response.json()["messages"][-1]["type"] == "ai"
        flushed = wal_flushed(server.admin)
        before = stored(conninfo, thread_id)
        assert server.embedded is not None
        server.embedded.stop("immediate")  # a crash: the WAL buffers are gone
    finally:
        service.stop()
    server.embedded.start()
    try:
        after = stored(conninfo, thread_id)
    except psycopg.errors.UndefinedTable:  # the naive way lost even the schema the migration created
        after = {}
    return flushed, before, after


class TestDurability:
    def test_should_keep_an_answered_run_through_a_crash(self, crashable: PgServer) -> None:
        conninfo = crashable.create_database("durable")
        flushed, before, after = answered_then_crash(crashable, conninfo)
        assert flushed
        assert before["run"] == "success" and before["thread"] == "idle" and before["values"]
        assert int(before["checkpoints"]) >= 5  # type: ignore[call-overload]  # the input and one per node
        assert after == before

    def test_should_fail_the_check_when_nothing_waits_for_the_disk(self, crashable: PgServer) -> None:
        """The naive version (no commit waits for the flush) answers a run that is not on disk yet."""
        conninfo = crashable.create_database("naive")
        name = psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"]
        with psycopg.connect(crashable.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(str(name))))
        flushed, before, _ = answered_then_crash(crashable, conninfo)
        assert before["run"] == "success"
        assert not flushed

    def test_should_keep_a_long_runs_creation_once_its_early_answer_went_out(self, crashable: PgServer) -> None:
        from migrate.runner import Options, run

        conninfo = crashable.create_database("early")
        run(Options(conninfo=conninfo))
        service = ServiceProcess(conninfo, STREAM_HEARTBEAT_SECONDS="0.2", DRAIN_TIMEOUT="1")
        thread_id = str(uuid.uuid4())
        try:
            service.start()
            with httpx.stream("POST", f"{service.url}/threads/{thread_id}/runs/wait", timeout=30, json={
                    "assistant_id": "slow", "input": {"delay": 60}, "if_not_exists": "create"}) as response:
                assert response.status_code == 200
                run_id = response.headers["content-location"].rsplit("/runs/", 1)[1].split("/")[0]
                assert crashable.embedded is not None
                crashable.embedded.stop("immediate")  # the WAL writer sleeps 10 s: only a flush saved it
        finally:
            service.stop()
        crashable.embedded.start()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            row = conn.execute("SELECT thread_id FROM runs WHERE run_id = %s", (run_id,)).fetchone()
        assert row == (thread_id,)
