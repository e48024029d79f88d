"""``python -m service.prune [--older-than-days N]``: apply threads' own TTLs, prune idle threads.

It removes threads idle for longer than N days (with a retention).

Run by the chart's optional CronJob. First one pass of the sweep every pod runs on its interval
(``service.thread_storage.sweep_expired``): threads whose own ``ttl`` (POST/PATCH /threads) is past
are deleted or cut down to their latest checkpoint, as their strategy says, except those a run
holds or waits for; it takes its threads' row locks with SKIP LOCKED, so it runs beside the pods'
sweeps without taking a thread twice. Then, with a retention, idle threads go. Threads are taken
oldest first in batches: each batch's
thread rows are deleted (only those still idle and still older than the cutoff, so a thread
that got a run meanwhile is kept), then their checkpoints, blobs and writes go through the
checkpointer's own ``aprune``. With ``--strategy keep_latest`` the threads stay and only their
checkpoint history is cut down to the latest checkpoint. Without the flags, ``checkpointer.ttl``
of langgraph.json (``LANGGRAPH_CONFIG``) gives them: ``default_ttl`` (minutes) and ``strategy``;
without a retention either way, the job applies the threads' own TTLs only.

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
from service.settings import CheckpointerTTLSettings, ConfigError, DatabaseSettings
from service.thread_storage import prune_idle, sweep_expired

log = service_logging.get_logger("service.prune")


class StandbyServer(Exception):
    """The database is in recovery (a standby): nothing can be deleted there."""


async def prune(conninfo: str, older_than_days: float | None, strategy: str, batch: int) -> tuple[dict[str, int], int]:
    """The threads whose own TTL expired (per strategy), and the idle threads pruned (0 without a retention)."""
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
    try:
        expired = await sweep_expired(pool, saver, batch)
        if any(expired.values()):
            log.info("thread_ttls_expired", deleted=expired["delete"], kept_latest=expired["keep_latest"])
        if older_than_days is None:
            return expired, 0
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days)
        try:
            return expired, await prune_idle(pool, saver, cutoff, strategy, batch)
        finally:
            with contextlib.suppress(Exception):
                await _prune_runs(pool, cutoff, batch)
    finally:
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
    parser.add_argument("--older-than-days", type=float, default=None,
                        help="remove threads not updated for this many days (default: checkpointer.ttl.default_ttl "
                             "of the langgraph.json LANGGRAPH_CONFIG names, in minutes there; without "
                             "either, only the threads' own TTLs are applied)")
    parser.add_argument("--strategy", choices=["delete", "keep_latest"], default=None,
                        help="delete the threads, or keep them with only their latest checkpoint (default: "
                             "checkpointer.ttl.strategy, else delete)")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    try:
        ttl = CheckpointerTTLSettings.from_env()
        database = DatabaseSettings.from_env()
    except ConfigError as exc:
        print(f"prune: error: {exc}", file=sys.stderr)
        return 2
    if args.older_than_days is None and ttl is not None and ttl.default_ttl is not None:
        args.older_than_days = ttl.default_ttl / (24 * 60)
    if args.strategy is None:
        args.strategy = ttl.strategy if ttl is not None else "delete"
    if (args.older_than_days is not None and args.older_than_days <= 0) or args.batch_size < 1:
        print("prune: error: --older-than-days must be positive and --batch-size at least 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        expired, count = asyncio.run(prune(database.conninfo, args.older_than_days, args.strategy, args.batch_size))
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
             ttl_deleted=expired["delete"], ttl_kept_latest=expired["keep_latest"],
             seconds=round(time.monotonic() - started, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
