"""Stream events of runs: published by the executing pod, replayed and followed from any pod.

Each event gets a sequence number per run (the SSE ``id:``; ``Last-Event-ID`` resumes after it).
The executing pod keeps its run's events in memory (:class:`Hub`), so a client streaming from the
same pod never reads the database; a background or streamed run also writes them to
``run_events`` in batches (one INSERT and one ``NOTIFY`` per batch, off the graph's path), so a
client on any other pod, or one that reconnects later, reads them from there. ``run_events`` is a
logged table: replay survives a restart and a failover of the database, at the cost of WAL.
Runs/wait runs publish nothing to the table (nobody can stream what was never asked to be).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from service.logging import get_logger
from service.runs.notify import Notifier
from service.runs.queue import CHANNEL_EVENTS, FINAL

log = get_logger("service.runs.events")

INSERT_SQL = """
WITH stored AS (
    INSERT INTO run_events (run_id, seq, event, data)
    SELECT %(run_id)s::uuid, s, e, d FROM unnest(%(seqs)s::int[], %(events)s::text[], %(datas)s::bytea[]) AS x(s, e, d)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM stored) AS n,
    (SELECT count(*) FROM (SELECT pg_notify(%(channel)s::text, %(run_id)s::text)) p) AS told
"""
MAX_SEQ_SQL = "SELECT coalesce(max(seq), 0) AS seq FROM run_events WHERE run_id = %(run_id)s"
# One snapshot: when it shows the run final, every event it published is in it too.
READ_SQL = """
SELECT e.seq, e.event, e.data, NULL::text AS status FROM run_events e
WHERE e.run_id = %(run_id)s AND e.seq > %(after)s
UNION ALL
SELECT NULL, NULL, NULL, coalesce((SELECT status FROM runs WHERE run_id = %(run_id)s), 'deleted')
ORDER BY 1 NULLS LAST
"""

# Events of runs that are over, older than a cutoff, in batches (pods run it every minute with
# RUN_EVENTS_TTL_SECONDS; the prune job with its own cutoff). Uses run_events_created_idx.
EXPIRE_SQL = """
WITH doomed AS (
    SELECT e.run_id, e.seq FROM run_events e
    WHERE e.created_at < %(cutoff)s
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = e.run_id AND r.status IN ('pending', 'running'))
    ORDER BY e.created_at LIMIT %(batch)s
)
DELETE FROM run_events e USING doomed d WHERE e.run_id = d.run_id AND e.seq = d.seq
"""

Event = tuple[int, str, bytes]


@dataclass
class Hub:
    """One run's events in the executing process, for local subscribers, and its writer to the table."""

    run_id: str
    store: bool
    seq: int = 0
    events: list[Event] = field(default_factory=list)
    done: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _unwritten: list[Event] = field(default_factory=list)
    _writer: asyncio.Task[None] | None = None

    def publish(self, event: str, payload: Any) -> None:
        self.seq += 1
        item = (self.seq, event, msgspec.json.encode(payload))
        self.events.append(item)
        if self.store:
            self._unwritten.append(item)
        self._changed.set()

    def close(self) -> None:
        self.done = True
        self._changed.set()

    async def follow(self, after: int) -> AsyncIterator[Event]:
        index = 0
        while True:
            while index < len(self.events):
                item = self.events[index]
                index += 1
                if item[0] > after:
                    yield item
            if self.done:
                return
            self._changed.clear()
            if index < len(self.events) or self.done:
                continue
            await self._changed.wait()


class EventLog:
    def __init__(self, pool: AsyncConnectionPool[Any], notifier: Notifier) -> None:
        self.pool = pool
        self.notifier = notifier

    async def expire(self, older_than: float, batch: int = 5000) -> int:
        """Delete events of finished runs older than ``older_than`` seconds; return how many went."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than)
        total = 0
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(EXPIRE_SQL, {"cutoff": cutoff, "batch": batch})
            deleted = int(cur.rowcount)
            total += deleted
            if deleted < batch:
                return total

    async def last_seq(self, run_id: str) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(MAX_SEQ_SQL, {"run_id": run_id})
            row = await cur.fetchone()
        return int(row["seq"]) if row else 0

    def start_writer(self, hub: Hub) -> None:
        if hub.store:
            hub._writer = asyncio.create_task(self._write(hub))

    async def flush(self, hub: Hub) -> None:
        """Wait until every published event of ``hub`` is stored (called before the run's end is)."""
        hub.close()
        if hub._writer is not None:
            with contextlib.suppress(Exception):
                await hub._writer

    async def _write(self, hub: Hub) -> None:
        while True:
            if not hub._unwritten:
                if hub.done:
                    return
                hub._changed.clear()
                if not hub._unwritten and not hub.done:
                    await hub._changed.wait()
                continue
            batch, hub._unwritten = hub._unwritten, []
            try:
                async with self.pool.connection() as conn:
                    await conn.execute(INSERT_SQL, {
                        "run_id": hub.run_id, "seqs": [b[0] for b in batch], "events": [b[1] for b in batch],
                        "datas": [b[2] for b in batch], "channel": CHANNEL_EVENTS})
            except Exception as exc:
                # Local subscribers still get them; remote ones get what could be stored.
                log.warning("run_events_write_failed", run_id=hub.run_id, events=len(batch),
                            error_type=type(exc).__name__)
                hub._unwritten = batch + hub._unwritten
                await asyncio.sleep(0.5)
                if hub.done:
                    return

    async def follow(self, run_id: str, after: int) -> AsyncIterator[Event]:
        """Stored events of ``run_id`` after ``after``, then new ones as they come, until the run ends."""
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(READ_SQL, {"run_id": run_id, "after": after})
                rows = await cur.fetchall()
            status = rows[-1]["status"] if rows else "deleted"
            for row in rows[:-1]:
                after = row["seq"]
                yield row["seq"], row["event"], bytes(row["data"])
            if status in FINAL or status == "deleted":
                return
            if len(rows) <= 1:
                await self.notifier.wait(CHANNEL_EVENTS, run_id)
