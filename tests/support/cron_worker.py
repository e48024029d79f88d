"""A cron scheduler as its own OS process, for the race tests: ``python -m tests.support.cron_worker CONNINFO``.

Its Submit inserts a row into ``cron_fired`` (made by :func:`prepare`) in the claim's transaction,
with the transaction id, so a test can join every fired row to the claim that fired it (the trigger
of :func:`prepare` logs each change of ``crons.next_run_date`` with its transaction id and old value).

``--naive`` swaps the claim for the check-then-act version that a first attempt would write: read the
due cron, create the run, then move ``next_run_date`` unconditionally. The race tests show that it
fires a slot more than once where the real scheduler never does.
``--slow-submit SECONDS`` makes Submit sleep inside the transaction (a pod that dies mid-firing).
``--pgbouncer``: the connection string goes through PgBouncer in transaction mode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from service import db
from service.pool import Pool
from service.runs.crons import CronScheduler, next_after, run_payload

PREPARE_SQL = """
CREATE TABLE IF NOT EXISTS cron_fired (
    id       bigserial PRIMARY KEY,
    txid     bigint NOT NULL,
    cron_id  uuid NOT NULL,
    thread_id text,
    pid      int NOT NULL,
    payload  jsonb NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS cron_claims (txid bigint NOT NULL, cron_id uuid NOT NULL, slot timestamptz);
CREATE OR REPLACE FUNCTION log_cron_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cron_claims VALUES (txid_current(), OLD.cron_id, OLD.next_run_date);
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS log_cron_claim ON crons;
CREATE TRIGGER log_cron_claim AFTER UPDATE OF next_run_date ON crons FOR EACH ROW EXECUTE FUNCTION log_cron_claim();
"""

# Every fired row with the slot (old next_run_date) its transaction claimed.
FIRED_SLOTS_SQL = """
SELECT f.id, f.pid, f.cron_id, c.slot FROM cron_fired f
LEFT JOIN cron_claims c ON c.txid = f.txid AND c.cron_id = f.cron_id
WHERE f.cron_id = %s ORDER BY f.id
"""


def prepare(conn: Any) -> None:
    """Create the test's run table and the claim log (a synchronous psycopg connection)."""
    conn.execute(PREPARE_SQL)


def make_submit(slow: float) -> Any:
    async def submit(conn: AsyncConnection[Any], thread_id: str | None, payload: dict[str, Any]) -> str:
        from psycopg.types.json import Jsonb

        if slow:
            await conn.execute("SELECT pg_sleep(%s)", (slow,))
        cur = await conn.execute(
            "INSERT INTO cron_fired (txid, cron_id, thread_id, pid, payload) "
            "VALUES (txid_current(), %s, %s, %s, %s) RETURNING id",
            (payload["metadata"]["cron_id"], thread_id, os.getpid(), Jsonb(payload)))
        row = await cur.fetchone()
        assert row is not None
        return str(row["id"])

    return submit


class NaiveScheduler(CronScheduler):
    """Check, then act: what the exactly-once claim replaces (for the tests only)."""

    async def fire(self, row: dict[str, Any]) -> bool:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT cron_id, assistant_id, thread_id, payload, metadata, on_run_completed, "
                              "schedule, timezone, now() AS now FROM crons "
                              "WHERE cron_id = %s AND enabled AND next_run_date <= now()", (row["cron_id"],))
            cron = await cur.fetchone()
        if cron is None:
            return False
        nxt = next_after(cron["schedule"], cron["timezone"], cron["now"])
        if row["end_time"] is not None and nxt > row["end_time"]:
            nxt = None
        async with self.pool.connection() as conn, conn.transaction():
            await self.submit(conn, cron["thread_id"], run_payload(cron))
            await conn.execute("UPDATE crons SET next_run_date = %s WHERE cron_id = %s", (nxt, cron["cron_id"]))
        return True


async def main(conninfo: str, naive: bool, slow: float, max_sleep: float, pgbouncer: bool) -> None:
    pool = Pool(conninfo, min_size=1, max_size=4, kwargs=db.pool_kwargs(pgbouncer=pgbouncer), open=False)
    await pool.open(wait=True, timeout=30)
    cls = NaiveScheduler if naive else CronScheduler
    scheduler = cls(pool, make_submit(slow), max_sleep=max_sleep)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    scheduler.start()
    print("cron_worker_ready", flush=True)
    await stop.wait()
    await scheduler.stop()
    await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("conninfo")
    parser.add_argument("--naive", action="store_true")
    parser.add_argument("--slow-submit", type=float, default=0.0)
    parser.add_argument("--max-sleep", type=float, default=5.0)
    parser.add_argument("--pgbouncer", action="store_true", help="the conninfo goes through PgBouncer")
    args = parser.parse_args()
    asyncio.run(main(args.conninfo, args.naive, args.slow_submit, args.max_sleep, args.pgbouncer))
