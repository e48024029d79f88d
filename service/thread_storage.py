"""Whole-thread operations over the thread row and its checkpoints: copy, prune, sweep, storage size.

The checkpoint tables are LangGraph's (``checkpoints``, ``checkpoint_blobs``,
``checkpoint_writes``); a copy writes the new thread's row and every one of its checkpoint rows
in one transaction, so a copy is either whole or absent. Pruning idle threads (the prune job,
and the pods' sweep when langgraph.json sets ``checkpointer.ttl``) deletes the rows first, only
those still idle and still past the cutoff, then their checkpoints through the checkpointer.
The pods' sweep also applies the threads' own TTLs (``thread_ttl``, set by ``ttl`` on create
and patch), as the LangGraph Server sweeps them on an interval.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from service.errors import Conflict
from service.logging import get_logger
from service.settings import CheckpointerTTLSettings
from service.threads import _THREAD_COLUMNS, LIVE_HOLDER, _thread_json, new_thread_id

# The new thread takes the source's metadata, values and interrupts; a busy source copies as idle
# (the copy has no run).
_COPY_THREAD_SQL = f"""
INSERT INTO threads AS t (thread_id, metadata, status, values, interrupts, error)
SELECT %(new)s, s.metadata, CASE WHEN s.status = 'busy' THEN 'idle' ELSE s.status END, s.values, s.interrupts,
       s.error
FROM threads s WHERE s.thread_id = %(old)s
RETURNING {_THREAD_COLUMNS}
"""
# Checkpoint metadata may carry the thread id (from the run's configurable): it names the copy.
_COPY_CHECKPOINTS_SQL = """
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
SELECT %(new)s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint,
       CASE WHEN metadata ? 'thread_id' THEN jsonb_set(metadata, '{thread_id}', to_jsonb(%(new)s::text))
            ELSE metadata END
FROM checkpoints WHERE thread_id = %(old)s
"""
_COPY_BLOBS_SQL = """
INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT %(new)s, checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs WHERE thread_id = %(old)s
"""
_COPY_WRITES_SQL = """
INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT %(new)s, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
FROM checkpoint_writes WHERE thread_id = %(old)s
"""

# prune strategy=delete: the threads no live run holds or waits for, with their checkpoints.
_PRUNE_DELETE_SQL = f"""
DELETE FROM threads t WHERE t.thread_id = ANY(%(ids)s) AND NOT ({LIVE_HOLDER})
  AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.thread_id = t.thread_id AND r.status = 'pending'
                  AND r.lease_expires_at > now())
RETURNING t.thread_id
"""
_EXISTING_SQL = "SELECT thread_id FROM threads WHERE thread_id = ANY(%(ids)s)"
_DELETE_CHECKPOINT_ROWS = (
    "DELETE FROM checkpoints WHERE thread_id = ANY(%(ids)s)",
    "DELETE FROM checkpoint_blobs WHERE thread_id = ANY(%(ids)s)",
    "DELETE FROM checkpoint_writes WHERE thread_id = ANY(%(ids)s)",
)

# Idle threads past a cutoff, oldest first, in keyset pages; deleted only if still idle and old.
_IDLE_SQL = f"""
SELECT t.thread_id, t.updated_at FROM threads t
WHERE t.updated_at < %(cutoff)s AND NOT ({LIVE_HOLDER})
  AND (t.updated_at, t.thread_id) > (%(after_ts)s, %(after_id)s)
ORDER BY t.updated_at, t.thread_id LIMIT %(batch)s
"""
_DELETE_IDLE_SQL = f"""
DELETE FROM threads t WHERE t.thread_id = ANY(%(ids)s) AND t.updated_at < %(cutoff)s
  AND NOT ({LIVE_HOLDER})
  AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.thread_id = t.thread_id AND r.status = 'pending'
                  AND r.lease_expires_at > now())
  -- A thread with a cron is kept however long it has been idle (deleting it would delete the cron).
  AND NOT EXISTS (SELECT 1 FROM crons c WHERE c.thread_id = t.thread_id)
RETURNING t.thread_id
"""

# A thread its TTL applies to now (the strategy's): expired, idle for its TTL, no run holds it or waits for it.
_SWEEPABLE = f"""tt.strategy = %(strategy)s AND tt.expires_at <= now()
  AND t.updated_at + tt.ttl_minutes * interval '1 minute' <= now()
  AND NOT ({LIVE_HOLDER})
  AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.thread_id = t.thread_id AND r.status = 'pending'
                  AND r.lease_expires_at > now())"""
# Threads whose own TTL (thread_ttl) is past, counted both from when it was set and from the
# thread's last update; not those a run holds or waits for. Their rows are locked in one order
# (expiry, then id) and skipped when another sweeper or a run has them (SKIP LOCKED: sweepers
# never wait for each other, so they cannot deadlock and never take a thread twice).
_EXPIRED_SQL = f"""
SELECT t.thread_id FROM thread_ttl tt JOIN threads t ON t.thread_id = tt.thread_id
WHERE {_SWEEPABLE}
ORDER BY tt.expires_at, t.thread_id LIMIT %(batch)s
FOR UPDATE OF t SKIP LOCKED
"""
# The same checks again, under a snapshot taken once the rows are locked. The TTL itself: another
# sweeper may have applied it and committed after the first statement's snapshot but before its
# lock (``FOR UPDATE OF t`` locks the thread row, which a keep_latest sweep does not change, so the
# lock is taken without a re-check and the re-armed TTL is unseen). A run queued on a thread (its
# insert only key-share locks the thread row, so the row is not re-read), or a thread taken, between
# that snapshot and the lock. After the lock nothing of the kind can commit: a run's insert or take,
# or another sweeper's batch, waits for the sweep's transaction.
_STILL_FREE_SQL = f"""
SELECT t.thread_id FROM threads t JOIN thread_ttl tt ON tt.thread_id = t.thread_id
WHERE t.thread_id = ANY(%(ids)s) AND {_SWEEPABLE}
"""
_DELETE_EXPIRED_SQL = "DELETE FROM threads WHERE thread_id = ANY(%(ids)s)"
# keep_latest keeps the thread: its TTL starts again from now.
_REARM_TTL_SQL = ("UPDATE thread_ttl SET expires_at = now() + ttl_minutes * interval '1 minute' "
                  "WHERE thread_id = ANY(%(ids)s)")
# keep_latest holds its batch's row locks while the checkpointer prunes them one thread at a time,
# so a run that wants one of these threads waits for the batch: a small batch keeps that wait short.
KEEP_LATEST_BATCH = 50

log = get_logger("service.thread_storage")

# Bytes as stored (pg_column_size: after compression, TOAST included).
_STORAGE_SQL = """
SELECT
  (SELECT count(*) FROM checkpoints WHERE thread_id = %(id)s) AS checkpoints,
  (SELECT coalesce(sum(pg_column_size(checkpoint) + pg_column_size(metadata)), 0)
     FROM checkpoints WHERE thread_id = %(id)s) AS checkpoint_bytes,
  (SELECT count(*) FROM checkpoint_writes WHERE thread_id = %(id)s) AS writes,
  (SELECT coalesce(sum(pg_column_size(blob)), 0) FROM checkpoint_writes WHERE thread_id = %(id)s) AS write_bytes
"""
_CHANNELS_SQL = """
SELECT channel, count(*) AS versions, coalesce(sum(pg_column_size(blob)), 0) AS bytes
FROM checkpoint_blobs WHERE thread_id = %(id)s GROUP BY channel ORDER BY channel
"""


class ThreadStorage:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def copy(self, thread_id: str) -> dict[str, Any]:
        """A new thread with the source's row and every checkpoint, blob and write (one transaction)."""
        params = {"old": thread_id, "new": new_thread_id()}
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_COPY_THREAD_SQL, params)
            row = await cur.fetchone()
            if row is None:
                raise Conflict(f"thread {thread_id} not found: nothing to copy")
            for statement in (_COPY_CHECKPOINTS_SQL, _COPY_BLOBS_SQL, _COPY_WRITES_SQL):
                await conn.execute(statement, params)
        return _thread_json(row)

    async def prune(self, thread_ids: Sequence[str], strategy: str, checkpointer: Any) -> int:
        """``delete``: remove the threads (not those a run holds); ``keep_latest``: keep only the latest checkpoint."""
        ids = list(dict.fromkeys(thread_ids))
        if not ids:
            return 0
        if strategy == "delete":
            async with self.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(_PRUNE_DELETE_SQL, {"ids": ids})
                deleted = [r["thread_id"] for r in await cur.fetchall()]
                for statement in _DELETE_CHECKPOINT_ROWS:
                    await conn.execute(statement, {"ids": deleted})
            return len(deleted)
        async with self.pool.connection() as conn:
            cur = await conn.execute(_EXISTING_SQL, {"ids": ids})
            existing = [r["thread_id"] for r in await cur.fetchall()]
        if existing:
            await checkpointer.aprune(existing, strategy="keep_latest")
        return len(existing)

    async def storage(self, thread_id: str) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_STORAGE_SQL, {"id": thread_id})
            totals = await cur.fetchone()
            cur = await conn.execute(_CHANNELS_SQL, {"id": thread_id})
            channels = await cur.fetchall()
        assert totals is not None
        by_channel = {r["channel"]: {"versions": int(r["versions"]), "bytes": int(r["bytes"])} for r in channels}
        blob_bytes = sum(c["bytes"] for c in by_channel.values())
        checkpoint_bytes, write_bytes = int(totals["checkpoint_bytes"]), int(totals["write_bytes"])
        return {
            "thread_id": thread_id,
            "total_bytes": checkpoint_bytes + blob_bytes + write_bytes,
            "checkpoints": {"count": int(totals["checkpoints"]), "bytes": checkpoint_bytes},
            "channel_values": {"count": sum(c["versions"] for c in by_channel.values()), "bytes": blob_bytes,
                               "by_channel": by_channel},
            "pending_writes": {"count": int(totals["writes"]), "bytes": write_bytes},
        }


async def prune_idle(pool: AsyncConnectionPool[Any], checkpointer: Any, cutoff: dt.datetime, strategy: str,
                     batch: int = 500) -> int:
    """Prune every thread idle since before ``cutoff``; the number pruned."""
    pruned = 0
    after: tuple[dt.datetime, str] = (dt.datetime.min.replace(tzinfo=dt.UTC), "")
    while True:
        async with pool.connection() as conn:
            cur = await conn.execute(_IDLE_SQL, {"cutoff": cutoff, "after_ts": after[0], "after_id": after[1],
                                                 "batch": batch})
            rows = await cur.fetchall()
            if not rows:
                return pruned
            after = (rows[-1]["updated_at"], rows[-1]["thread_id"])
            ids = [r["thread_id"] for r in rows]
            if strategy == "delete":
                cur = await conn.execute(_DELETE_IDLE_SQL, {"ids": ids, "cutoff": cutoff})
                ids = [r["thread_id"] for r in await cur.fetchall()]
        if ids:
            await checkpointer.aprune(ids, strategy=strategy)
            pruned += len(ids)
            log.info("prune_batch", threads=len(ids), strategy=strategy)


async def sweep_expired(pool: AsyncConnectionPool[Any], checkpointer: Any, batch: int = 500) -> dict[str, int]:
    """Apply every expired thread TTL: ``delete`` removes the thread (its runs, crons and TTL go with
    the row; its checkpoints in the same transaction), ``keep_latest`` keeps only its latest
    checkpoint and starts its TTL again. The number of threads per strategy.

    Each batch is one transaction that holds its threads' row locks until it is done: several
    sweepers (every pod, the prune job) take disjoint batches, and no run takes a thread while its
    TTL is applied. ``keep_latest`` needs a second connection of the pool (the checkpointer's prune
    runs beside the locking transaction): with ``DB_POOL_MAX_SIZE=1`` it is skipped, with a warning."""
    done = {"delete": 0, "keep_latest": 0}
    while True:
        async with pool.connection() as conn, conn.transaction():
            locked = await _lock_expired(conn, "delete", batch)
            ids = await _still_free(conn, "delete", locked)
            if ids:
                await conn.execute(_DELETE_EXPIRED_SQL, {"ids": ids})
                for statement in _DELETE_CHECKPOINT_ROWS:
                    await conn.execute(statement, {"ids": ids})
        done["delete"] += len(ids)
        if len(locked) < batch:
            break
    if pool.max_size < 2:  # the prune would wait for a second connection while holding the only one
        log.warning("thread_ttl_keep_latest_skipped", reason="the pool has one connection, the prune needs two")
        return done
    keep_batch = min(batch, KEEP_LATEST_BATCH)
    while True:
        async with pool.connection() as conn, conn.transaction():
            locked = await _lock_expired(conn, "keep_latest", keep_batch)
            ids = await _still_free(conn, "keep_latest", locked)
            if ids:
                await checkpointer.aprune(ids, strategy="keep_latest")
                await conn.execute(_REARM_TTL_SQL, {"ids": ids})
        done["keep_latest"] += len(ids)
        if len(locked) < keep_batch:
            return done


async def _lock_expired(conn: Any, strategy: str, batch: int) -> list[str]:
    cur = await conn.execute(_EXPIRED_SQL, {"strategy": strategy, "batch": batch})
    return [r["thread_id"] for r in await cur.fetchall()]


async def _still_free(conn: Any, strategy: str, ids: list[str]) -> list[str]:
    if not ids:
        return []
    cur = await conn.execute(_STILL_FREE_SQL, {"strategy": strategy, "ids": ids})
    return [r["thread_id"] for r in await cur.fetchall()]


async def sweep_threads(pool: AsyncConnectionPool[Any], checkpointer: Any,
                        ttl: CheckpointerTTLSettings | None) -> None:
    """Every pod, every ``checkpointer.ttl.sweep_interval_minutes`` (default 5): apply the threads'
    own expired TTLs, and with ``checkpointer.ttl.default_ttl`` prune threads idle for longer than
    it. Every pod may sweep: the statements are idempotent DML."""
    interval = 60 * ((ttl.sweep_interval_minutes if ttl is not None else None) or 5)
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await sweep_expired(pool, checkpointer)
            pruned = 0
            if ttl is not None and ttl.default_ttl is not None:
                cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=ttl.default_ttl)
                pruned = await prune_idle(pool, checkpointer, cutoff, ttl.strategy)
        except Exception as exc:  # the next sweep tries again; one line, no traceback
            log.warning("thread_sweep_failed", error_type=type(exc).__name__,
                        error=(str(exc).splitlines() or [""])[0][:200])
            continue
        if any(expired.values()):
            log.info("thread_ttls_expired", deleted=expired["delete"], kept_latest=expired["keep_latest"])
        if pruned and ttl is not None:
            log.info("threads_swept", threads=pruned, strategy=ttl.strategy)
