"""``python -m service.prune --older-than-days N``: remove threads idle for longer than N days.

Run by the chart's optional CronJob. Threads are taken oldest first in batches: each batch's
thread rows are deleted (only those still idle and still older than the cutoff, so a thread
that got a run meanwhile is kept), then their checkpoints, blobs and writes go through the
checkpointer's own ``aprune``. With ``--strategy keep_latest`` the threads stay and only their
checkpoint history is cut down to the latest checkpoint.

Exit 0 on success; otherwise one line on stderr and a non-zero code (2 bad arguments or
settings, 4 database unreachable, 5 the server is a read-only standby, 1 anything else).
``DATABASE_URL`` takes every form libpq does, several hosts with ``target_session_attrs`` too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from service import db
from service import logging as service_logging
from service.checkpointer import PooledPostgresSaver
from service.runs.events import EXPIRE_SQL as EXPIRE_EVENTS_SQL
from service.runs.queue import PRUNE_SQL as PRUNE_RUNS_SQL
from service.settings import ConfigError, DatabaseSettings
from service.threads import LIVE_HOLDER

log = service_logging.get_logger("service.prune")

_SELECT_SQL = f"""
SELECT t.thread_id, t.updated_at FROM threads t
WHERE t.updated_at < %(cutoff)s AND NOT ({LIVE_HOLDER})
  AND (t.updated_at, t.thread_id) > (%(after_ts)s, %(after_id)s)
ORDER BY t.updated_at, t.thread_id LIMIT %(batch)s
"""
_DELETE_SQL = f"""
DELETE FROM threads t WHERE t.thread_id = ANY(%(ids)s) AND t.updated_at < %(cutoff)s
  AND NOT ({LIVE_HOLDER})
  AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.thread_id = t.thread_id AND r.status = 'pending'
                  AND r.lease_expires_at > now())
RETURNING t.thread_id
"""


class StandbyServer(Exception):
    """The database is in recovery (a standby): nothing can be deleted there."""


async def prune(conninfo: str, older_than_days: float, strategy: str, batch: int) -> int:
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db.with_params(conninfo, application_name=db.application_name("langgraph-prune")),
        min_size=1, max_size=2, open=False, kwargs={"autocommit": True, "row_factory": dict_row})
    await pool.open(wait=True, timeout=30)
    saver = PooledPostgresSaver(pool)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT pg_is_in_recovery() AS standby")
        row = await cur.fetchone()
    if row is not None and row["standby"]:
        await pool.close()
        raise StandbyServer(f"{db.describe(conninfo)} is a read-only standby, not the primary: point "
                            "DATABASE_URL at the primary, or list every host with target_session_attrs=read-write")
    pruned = 0
    after: tuple[dt.datetime, str] = (dt.datetime.min.replace(tzinfo=dt.UTC), "")
    try:
        while True:
            async with pool.connection() as conn:
                cur = await conn.execute(_SELECT_SQL, {"cutoff": cutoff, "after_ts": after[0], "after_id": after[1],
                                                       "batch": batch})
                rows = await cur.fetchall()
                if not rows:
                    return pruned
                after = (rows[-1]["updated_at"], rows[-1]["thread_id"])
                ids = [r["thread_id"] for r in rows]
                if strategy == "delete":
                    cur = await conn.execute(_DELETE_SQL, {"ids": ids, "cutoff": cutoff})
                    ids = [r["thread_id"] for r in await cur.fetchall()]
            if ids:
                await saver.aprune(ids, strategy=strategy)
                pruned += len(ids)
                log.info("prune_batch", threads=len(ids), strategy=strategy)
    finally:
        with contextlib.suppress(Exception):
            await _prune_runs(pool, cutoff, batch)
        await pool.close()


async def _prune_runs(pool: AsyncConnectionPool[Any], cutoff: dt.datetime, batch: int) -> None:
    """Finished runs (and their stream events) not updated since the cutoff, of threads that stay."""
    runs = events = 0
    async with pool.connection() as conn:
        while (cur := await conn.execute(PRUNE_RUNS_SQL, {"cutoff": cutoff, "batch": batch})).rowcount:
            runs += cur.rowcount
        while (cur := await conn.execute(EXPIRE_EVENTS_SQL, {"cutoff": cutoff, "batch": batch})).rowcount:
            events += cur.rowcount
    log.info("prune_runs", runs=runs, orphan_events=events)


def main(argv: list[str] | None = None) -> int:
    service_logging.configure()
    parser = argparse.ArgumentParser(prog="python -m service.prune", description=__doc__.splitlines()[0])
    parser.add_argument("--older-than-days", type=float, required=True,
                        help="remove threads not updated for this many days")
    parser.add_argument("--strategy", choices=["delete", "keep_latest"], default="delete",
                        help="delete the threads, or keep them with only their latest checkpoint")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    if args.older_than_days <= 0 or args.batch_size < 1:
        print("prune: error: --older-than-days must be positive and --batch-size at least 1", file=sys.stderr)
        return 2
    try:
        database = DatabaseSettings.from_env()
    except ConfigError as exc:
        print(f"prune: error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        count = asyncio.run(prune(database.conninfo, args.older_than_days, args.strategy, args.batch_size))
    except StandbyServer as exc:
        print(f"prune: error: standby: {exc}", file=sys.stderr)
        return 5
    except (psycopg.Error, OSError, TimeoutError) as exc:
        failure = db.classify(exc) if isinstance(exc, psycopg.Error) else db.Failure.UNREACHABLE
        print(f"prune: error: {failure.value}: {db.first_line(exc)} ({db.describe(database.conninfo)})",
              file=sys.stderr)
        if failure is db.Failure.STANDBY:
            return 5
        return 4 if failure in (db.Failure.UNREACHABLE, db.Failure.STARTING, db.Failure.TOO_MANY) else 1
    except Exception as exc:  # psycopg_pool.PoolTimeout and friends: one line, no traceback
        print(f"prune: error: {type(exc).__name__}: {db.first_line(exc)}", file=sys.stderr)
        return 4 if "pool" in type(exc).__name__.lower() else 1
    log.info("prune_finished", threads=count, strategy=args.strategy, older_than_days=args.older_than_days,
             seconds=round(time.monotonic() - started, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
