"""Several sweepers of threads' own TTLs over the same expired threads while runs take some of them.

Separate OS processes (tests/support/ttl_sweeper.py) against one real PostgreSQL database,
released together by the gated proxy of tests/support/race.py: four sweepers (what every pod and
the prune job run) and a runner that gives runs to a third of the threads through the run queue's
own ``submit``, half taken at once and half queued for later. Every thread is past its TTL when
they start, half of them with more than one checkpoint and the ``keep_latest`` strategy.

After the race: a thread a run took or waits for has exactly the checkpoints it had when the run
came (none deleted, none pruned), every other thread was deleted or cut to its latest checkpoint,
each exactly once by the sweepers' own counts, and no process failed (no deadlock, no
serialization failure). Two naive sweeps break these rules, which shows that the test can see
the race: check-then-act (read the expired threads no run holds, then act on each by id), and the
sweep as first written, whose ``keep_latest`` row locks ended before the checkpointer pruned (a
second sweeper's prune of the same thread failed with a serialization failure, and a thread a run
had meanwhile taken or queued on lost its history).

A sweeper whose lock statement took its snapshot before another sweeper's batch committed still
gets that batch's thread rows (a keep_latest sweep only locked them), so the sweep re-checks the
TTL after the lock; one test replays that order deterministically with a cursor.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row

from service.thread_storage import _EXPIRED_SQL, _still_free
from tests.support import ttl_sweeper
from tests.support.race import ROOT, Finished, parse_json_lines, python_env, run_together

SWEEPERS = 4
DELETE_THREADS = 240
KEEP_THREADS = 40
KEEP_CHECKPOINTS = 3


def seed(conninfo: str) -> dict[str, str]:
    """The expired threads with their checkpoints; the latest checkpoint id of each keep_latest thread."""
    deleted = [f"del-{i:03d}" for i in range(DELETE_THREADS)]
    kept = [f"keep-{i:03d}" for i in range(KEEP_THREADS)]
    latest: dict[str, str] = {}
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO threads (thread_id, updated_at) VALUES (%s, now() - interval '2 hours')",
                            [(t,) for t in deleted + kept])
            cur.executemany("INSERT INTO thread_ttl (thread_id, strategy, ttl_minutes, expires_at) "
                            "VALUES (%s, %s, 60, now() - interval '2 hours')",
                            [(t, "delete") for t in deleted] + [(t, "keep_latest") for t in kept])
        saver = PostgresSaver(conn)  # type: ignore[arg-type]
        for thread_id in deleted + kept:
            config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
            checkpoint = empty_checkpoint()
            for step in range(KEEP_CHECKPOINTS if thread_id in kept else 1):
                checkpoint = create_checkpoint(checkpoint, None, step)
                checkpoint["channel_values"] = {"n": step}
                checkpoint["channel_versions"] = {"n": step + 1}
                config = saver.put(config, checkpoint, {"step": step}, {"n": step + 1})
            latest[thread_id] = checkpoint["id"]
        ttl_sweeper.prepare(conn, (deleted + kept)[::3])
    return latest


def race(conninfo: str, mode: str) -> list[Finished]:
    def build(db: str) -> list[list[str]]:
        sweeper = [sys.executable, "-m", "tests.support.ttl_sweeper", mode, db, "--batch", "10"]
        return [sweeper] * SWEEPERS + [[sys.executable, "-m", "tests.support.ttl_sweeper", "runner", db]]

    results, _ = run_together(conninfo, build, timeout=240)
    return results


def violations(conninfo: str, latest: dict[str, str], results: list[Finished]) -> list[str]:
    """Every rule of the module docstring that the race broke, one line each."""
    found = []
    for i, finished in enumerate(results):
        if finished.returncode != 0 or "Traceback" in finished.stderr:
            lines = finished.stderr.strip().splitlines()
            found.append(f"process {i} failed ({finished.returncode}): {lines[-1] if lines else ''}")
    sweeps = [e for f in results[:SWEEPERS] for e in parse_json_lines(f.stdout)]
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        taken = {r["thread_id"]: r for r in conn.execute("SELECT * FROM ttl_race_taken")}
        counts = {r["thread_id"]: r["n"] for r in conn.execute(
            "SELECT t.thread_id, count(c.checkpoint_id) AS n FROM threads t "
            "LEFT JOIN checkpoints c ON c.thread_id = t.thread_id GROUP BY t.thread_id")}
        saver = PostgresSaver(conn)  # type: ignore[arg-type]
        for thread_id, run in sorted(taken.items()):
            if thread_id not in counts:
                found.append(f"{thread_id}: deleted although a run {run['how']} it")
            elif counts[thread_id] != run["checkpoints"]:
                found.append(f"{thread_id}: pruned from {run['checkpoints']} to {counts[thread_id]} checkpoints "
                             f"although a run {run['how']} it")
        for thread_id, checkpoint_id in sorted(latest.items()):
            if thread_id in taken:
                continue
            if thread_id.startswith("del-"):
                if thread_id in counts:
                    found.append(f"{thread_id}: expired and free, but not deleted")
                continue
            left = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
            if counts.get(thread_id) != 1 or left is None or left.checkpoint["id"] != checkpoint_id:
                found.append(f"{thread_id}: {counts.get(thread_id)} checkpoints left, not just the latest")
            elif left.checkpoint["channel_values"] != {"n": KEEP_CHECKPOINTS - 1}:
                found.append(f"{thread_id}: the latest checkpoint lost its values")
    if len(sweeps) == SWEEPERS:
        deleted = sum(1 for t in latest if t.startswith("del-") and t not in counts)
        pruned = sum(1 for t in latest if t.startswith("keep-") and counts.get(t) == 1)
        said_deleted = sum(int(str(e["delete"])) for e in sweeps)
        said_pruned = sum(int(str(e["keep_latest"])) for e in sweeps)
        if said_deleted != deleted:
            found.append(f"the sweepers deleted {said_deleted} threads, {deleted} are gone")
        if said_pruned != pruned:
            found.append(f"the sweepers pruned {said_pruned} threads to the latest checkpoint, {pruned} were")
    return found


def runner_counts(results: list[Finished]) -> dict[str, Any]:
    lines = parse_json_lines(results[-1].stdout)
    return lines[0] if lines else {}


def test_should_sweep_each_expired_thread_once_and_leave_the_threads_runs_took(migrated_db: str) -> None:
    latest = seed(migrated_db)
    results = race(migrated_db, "sweep")
    assert violations(migrated_db, latest, results) == []
    ran = runner_counts(results)
    # The race happened: the runner got to threads before the sweepers did, and came too late for others.
    assert ran["taken"] > 0 and ran["queued"] > 0, ran
    assert ran["gone"] > 0, ran


async def lock_after_another_sweep(conninfo: str) -> tuple[list[str], list[str]]:
    """The sweep's lock statement with its snapshot taken before another sweeper's whole pass and its
    rows locked after it (a cursor's snapshot is its DECLARE's; its row locks are taken as it is
    fetched): the threads it locked, and those of them still to sweep by the sweep's re-check."""
    async with await psycopg.AsyncConnection.connect(conninfo, row_factory=dict_row) as conn:
        cursor = conn.cursor(name="second_sweeper")
        await cursor.execute(_EXPIRED_SQL, {"strategy": "keep_latest", "batch": 500})
        other = subprocess.run([sys.executable, "-m", "tests.support.ttl_sweeper", "sweep", conninfo,
                                "--batch", "500"], cwd=ROOT, env=python_env(), capture_output=True,
                               text=True, timeout=120, check=False)
        assert other.returncode == 0, other.stderr
        assert parse_json_lines(other.stdout)[0]["keep_latest"] == KEEP_THREADS, other.stdout
        locked = [r["thread_id"] for r in await cursor.fetchall()]
        return locked, await _still_free(conn, "keep_latest", locked)


def test_should_not_sweep_again_a_thread_another_sweeper_swept_after_the_lock_statements_snapshot(
        migrated_db: str) -> None:
    seed(migrated_db)
    locked, still_free = asyncio.run(lock_after_another_sweep(migrated_db))
    # The lock statement alone would sweep every keep_latest thread a second time (the other
    # sweeper's pass only locked their rows, so the lock is taken without a re-check)...
    assert sorted(locked) == [f"keep-{i:03d}" for i in range(KEEP_THREADS)]
    # ...which the re-check under a snapshot taken after the lock sees: their TTLs start again from now.
    assert still_free == []


@pytest.mark.parametrize("mode", ["naive", "released"])
def test_should_show_that_a_naive_sweep_breaks_the_rules(pg_server: Any, mode: str) -> None:
    from migrate.runner import Options, run

    for _ in range(3):
        with pg_server.database() as conninfo:
            run(Options(conninfo=conninfo))
            latest = seed(conninfo)
            found = violations(conninfo, latest, race(conninfo, mode))
        if found:
            return
    raise AssertionError(f"the {mode} sweep never broke a rule in 3 rounds")
