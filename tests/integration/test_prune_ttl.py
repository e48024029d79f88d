"""``python -m service.prune`` applies the threads' own TTLs (one pass of the pods' sweep).

Real PostgreSQL, the job as its own process and no service running: a deployment whose pods
never get to sweep (scaled to zero, or a long ``sweep_interval_minutes``) still expires threads
through the CronJob. The runs that hold or wait for threads come from the run queue's own ``submit``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import psycopg
from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from service.checkpointer import PooledPostgresSaver
from service.db import to_url
from service.runs.queue import RunQueue
from service.thread_storage import sweep_expired
from tests.support.race import ROOT, parse_json_lines, python_env

# thread id -> (strategy, minutes from now to its TTL's expiry, checkpoints); None: no TTL of its own.
THREADS: dict[str, tuple[str, int, int] | None] = {
    "expired": ("delete", -120, 1),
    "trimmed": ("keep_latest", -120, 3),
    "fresh": ("delete", 60, 1),
    "held": ("delete", -120, 2),
    "waited": ("keep_latest", -120, 2),
    "plain": None,
}


def seed(conninfo: str) -> dict[str, str]:
    """THREADS, last updated 40 days ago; the latest checkpoint id of each."""
    latest = {}
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        saver = PostgresSaver(conn)  # type: ignore[arg-type]
        for thread_id, ttl in THREADS.items():
            conn.execute("INSERT INTO threads (thread_id, updated_at) VALUES (%s, now() - interval '40 days')",
                         (thread_id,))
            if ttl is not None:
                conn.execute("INSERT INTO thread_ttl (thread_id, strategy, ttl_minutes, expires_at) "
                             "VALUES (%s, %s, 60, now() + %s * interval '1 minute')", (thread_id, ttl[0], ttl[1]))
            config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
            checkpoint = empty_checkpoint()
            for step in range(ttl[2] if ttl is not None else 2):
                checkpoint = create_checkpoint(checkpoint, None, step)
                checkpoint["channel_values"] = {"n": step}
                checkpoint["channel_versions"] = {"n": step + 1}
                config = saver.put(config, checkpoint, {"step": step}, {"n": step + 1})
            latest[thread_id] = checkpoint["id"]
    asyncio.run(give_runs(conninfo))
    return latest


async def give_runs(conninfo: str) -> None:
    """A run takes ``held``; a run queued for later waits for ``waited``."""
    async with AsyncConnectionPool(conninfo, min_size=1, max_size=1,
                                   kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        queue = RunQueue(pool, pod="test", lease=3600)
        for thread_id, now in (("held", True), ("waited", False)):
            await queue.submit(thread_id=thread_id, assistant_id="agent", kwargs={"input": None}, metadata={},
                               strategy="enqueue", run_now=now, create=None, thread_metadata={},
                               after_seconds=None if now else 3600)


def prune(conninfo: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.prune", *args], cwd=ROOT, capture_output=True, text=True,
                          env=python_env(DATABASE_URL=to_url(conninfo)), timeout=120, check=False)


def finished(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [e for e in parse_json_lines(result.stdout) if e.get("event") == "prune_finished"]
    assert len(lines) == 1, result.stdout
    return lines[0]


def state(conninfo: str) -> dict[str, Any]:
    """Each thread still there: its checkpoint ids, and whether its TTL lies in the future."""
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT t.thread_id, array_remove(array_agg(c.checkpoint_id ORDER BY c.checkpoint_id), NULL) AS ids, "
            "bool_or(tt.expires_at > now()) AS armed FROM threads t "
            "LEFT JOIN checkpoints c ON c.thread_id = t.thread_id "
            "LEFT JOIN thread_ttl tt ON tt.thread_id = t.thread_id GROUP BY t.thread_id").fetchall()
        orphans = conn.execute("SELECT count(*) AS n FROM checkpoints c WHERE NOT EXISTS "
                               "(SELECT 1 FROM threads t WHERE t.thread_id = c.thread_id)").fetchone()
    assert orphans is not None and orphans["n"] == 0  # a deleted thread's checkpoints went with it
    return {r["thread_id"]: r for r in rows}


class TestPruneAppliesThreadTTLs:
    def test_should_apply_the_threads_own_ttls_without_a_retention(self, migrated_db: str) -> None:
        latest = seed(migrated_db)
        before = state(migrated_db)
        line = finished(prune(migrated_db))
        assert (line["ttl_deleted"], line["ttl_kept_latest"], line["threads"]) == (1, 1, 0)
        after = state(migrated_db)
        assert "expired" not in after
        assert after["trimmed"]["ids"] == [latest["trimmed"]] and after["trimmed"]["armed"]  # its TTL starts again
        for kept in ("fresh", "held", "waited", "plain"):  # not due; a run holds it; a run waits for it; no TTL
            assert after[kept]["ids"] == before[kept]["ids"], kept
        again = finished(prune(migrated_db))  # nothing is due twice
        assert (again["ttl_deleted"], again["ttl_kept_latest"]) == (0, 0)
        assert state(migrated_db) == after

    def test_should_apply_the_ttls_and_the_retention_in_one_run(self, migrated_db: str) -> None:
        seed(migrated_db)
        before = state(migrated_db)
        line = finished(prune(migrated_db, "--older-than-days", "30"))
        # Then the retention: plain, fresh and trimmed went for their 40 idle days (a TTL of a
        # thread's own is no shield against it); the threads with runs stay.
        assert (line["ttl_deleted"], line["ttl_kept_latest"], line["threads"]) == (1, 1, 3)
        after = state(migrated_db)
        assert set(after) == {"held", "waited"}
        assert after["held"]["ids"] == before["held"]["ids"] and after["waited"]["ids"] == before["waited"]["ids"]

    def test_should_refuse_a_retention_that_is_not_positive(self, migrated_db: str) -> None:
        result = prune(migrated_db, "--older-than-days", "0")
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "--older-than-days" in result.stderr and "Traceback" not in result.stderr


def test_should_skip_keep_latest_rather_than_wait_on_a_pool_of_one(migrated_db: str) -> None:
    """keep_latest holds one connection while the checkpointer prunes on another: a pool of one
    would wait for itself (and every request for the pool) until the pool timeout."""
    seed(migrated_db)

    async def sweep() -> dict[str, int]:
        async with AsyncConnectionPool(migrated_db, min_size=1, max_size=1, timeout=5,
                                       kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
            return await sweep_expired(pool, PooledPostgresSaver(pool))

    assert asyncio.run(sweep()) == {"delete": 1, "keep_latest": 0}
    assert len(state(migrated_db)["trimmed"]["ids"]) == 3  # left for a sweeper with two connections
