"""Thread-TTL sweepers and a run submitter as OS processes, for the race tests:
``python -m tests.support.ttl_sweeper MODE CONNINFO``.

``sweep`` runs one pass of the pods' sweep (``service.thread_storage.sweep_expired``), as a pod or
the prune job does. ``naive`` is the check-then-act sweep a first attempt would write: read the
expired threads that no run holds or waits for, then delete (or prune to the latest checkpoint and
re-arm) each one by id, without keeping any lock between the check and the act. ``released`` is
the sweep as it was first written: it deletes as ``sweep`` does, but for ``keep_latest`` it locks
the expired rows in a statement of their own, so the locks are gone before the checkpointer
prunes (another sweeper, or a run, gets the same threads meanwhile). ``runner`` goes
over the threads of ``ttl_race_targets`` in random order and gives each one a run: taken at once
(``run_now``), or queued for later (a pending run the thread waits for), through the run queue's own
``submit`` (a thread deleted under it is NotFound, as the API answers 404; any other error
fails the process); in the same transaction it records the thread and its checkpoint count in
``ttl_race_taken`` (made by :func:`prepare`). A sweeper prints its counts as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from service.checkpointer import PooledPostgresSaver
from service.errors import NotFound
from service.runs.queue import RunQueue
from service.thread_storage import _EXPIRED_SQL, sweep_expired
from service.threads import LIVE_HOLDER

PREPARE_SQL = """
CREATE TABLE IF NOT EXISTS ttl_race_targets (thread_id text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS ttl_race_taken (thread_id text PRIMARY KEY, how text NOT NULL, checkpoints int NOT NULL);
"""

_NAIVE_EXPIRED_SQL = f"""
SELECT t.thread_id FROM thread_ttl tt JOIN threads t ON t.thread_id = tt.thread_id
WHERE tt.strategy = %(strategy)s AND tt.expires_at <= now()
  AND t.updated_at + tt.ttl_minutes * interval '1 minute' <= now()
  AND NOT ({LIVE_HOLDER})
  AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.thread_id = t.thread_id AND r.status = 'pending'
                  AND r.lease_expires_at > now())
ORDER BY tt.expires_at, t.thread_id
"""


def prepare(conn: psycopg.Connection[Any], targets: list[str]) -> None:
    """The runner's target list and its log (a synchronous psycopg connection)."""
    conn.execute(PREPARE_SQL)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO ttl_race_targets VALUES (%s)", [(t,) for t in targets])


async def naive_sweep(pool: AsyncConnectionPool[Any], saver: PooledPostgresSaver) -> dict[str, int]:
    done = {"delete": 0, "keep_latest": 0}
    for strategy in ("delete", "keep_latest"):
        async with pool.connection() as conn:
            cur = await conn.execute(_NAIVE_EXPIRED_SQL, {"strategy": strategy})
            ids = [r["thread_id"] for r in await cur.fetchall()]
        for thread_id in ids:
            if strategy == "delete":
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute("DELETE FROM threads WHERE thread_id = %s", (thread_id,))
                    for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
                        await conn.execute(f"DELETE FROM {table} WHERE thread_id = %s", (thread_id,))
            else:
                await saver.aprune([thread_id], strategy="keep_latest")
                async with pool.connection() as conn:
                    await conn.execute("UPDATE thread_ttl SET expires_at = now() + ttl_minutes * interval '1 minute' "
                                       "WHERE thread_id = %s", (thread_id,))
            done[strategy] += 1
    return done


async def released_sweep(pool: AsyncConnectionPool[Any], saver: PooledPostgresSaver, batch: int) -> dict[str, int]:
    done = {"delete": 0, "keep_latest": 0}
    while True:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_EXPIRED_SQL, {"strategy": "delete", "batch": batch})
            ids = [r["thread_id"] for r in await cur.fetchall()]
            if ids:
                await conn.execute("DELETE FROM threads WHERE thread_id = ANY(%s)", (ids,))
                for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
                    await conn.execute(f"DELETE FROM {table} WHERE thread_id = ANY(%s)", (ids,))
        done["delete"] += len(ids)
        if len(ids) < batch:
            break
    while True:
        async with pool.connection() as conn:  # autocommit: the row locks end with the statement
            cur = await conn.execute(_EXPIRED_SQL, {"strategy": "keep_latest", "batch": batch})
            ids = [r["thread_id"] for r in await cur.fetchall()]
        if ids:
            await saver.aprune(ids, strategy="keep_latest")
            async with pool.connection() as conn:
                await conn.execute("UPDATE thread_ttl SET expires_at = now() + ttl_minutes * interval '1 minute' "
                                   "WHERE thread_id = ANY(%s)", (ids,))
        done["keep_latest"] += len(ids)
        if len(ids) < batch:
            return done


async def run_threads(pool: AsyncConnectionPool[Any], seed: int) -> dict[str, int]:
    queue = RunQueue(pool, pod="ttl-race-runner", lease=3600)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT thread_id FROM ttl_race_targets ORDER BY thread_id")
        targets = [r["thread_id"] for r in await cur.fetchall()]
    random.Random(seed).shuffle(targets)
    counts = {"taken": 0, "queued": 0, "gone": 0}
    for i, thread_id in enumerate(targets):
        how = "taken" if i % 2 == 0 else "queued"
        try:
            async with pool.connection() as conn, conn.transaction():
                await queue.submit(thread_id=thread_id, assistant_id="agent", kwargs={"input": None},
                                   metadata={}, strategy="enqueue", run_now=how == "taken", create=None,
                                   thread_metadata={}, after_seconds=3600 if how == "queued" else None, conn=conn)
                await conn.execute("INSERT INTO ttl_race_taken SELECT %s, %s, count(*) FROM checkpoints "
                                   "WHERE thread_id = %s", (thread_id, how, thread_id))
            counts[how] += 1
        except NotFound:  # swept before (or while) the run came
            counts["gone"] += 1
    return counts


async def main(mode: str, conninfo: str, batch: int, seed: int) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo, min_size=1, max_size=3, open=False, kwargs={"autocommit": True, "row_factory": dict_row})
    await pool.open(wait=True, timeout=60)
    try:
        saver = PooledPostgresSaver(pool)
        if mode == "sweep":
            result = await sweep_expired(pool, saver, batch=batch)
        elif mode == "naive":
            result = await naive_sweep(pool, saver)
        elif mode == "released":
            result = await released_sweep(pool, saver, batch)
        else:
            result = await run_threads(pool, seed)
    finally:
        await pool.close()
    print(json.dumps({"event": f"ttl_race_{mode}", **result}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sweep", "naive", "released", "runner"])
    parser.add_argument("conninfo")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--seed", type=int, default=int(uuid.uuid4().int % 1000))
    args = parser.parse_args()
    asyncio.run(main(args.mode, args.conninfo, args.batch, args.seed))
