"""The run queue: every run is a row of ``runs``, claimed by any pod's workers, leased while it runs.

A run is inserted ``pending`` with its body (``kwargs``), or, when the thread is free and the
creating pod runs it at once, inserted ``running`` with the thread taken in the same statement.
Workers claim pending runs with ``FOR UPDATE ... SKIP LOCKED`` over the run *and* its thread row,
so two pods never claim runs of one thread at once, and a claim takes the thread row's lease
(the same mutex the previous version used, so both versions share threads during an upgrade).
The oldest live run of a thread goes first. A running run renews its lease; one whose lease
expired (its pod died) is claimed again and continues from the thread's last checkpoint, up to
``MAX_ATTEMPTS`` times.

Rows without ``kwargs`` are request-bound runs of the previous version: workers never claim them,
but respect their place in their thread's order while their pods keep them alive. Pending runs of
this version carry an infinite lease, so the previous version's pods wait behind them too.

Wake-ups go through ``NOTIFY`` (see :mod:`service.runs.notify`), never in the hot path of a run
that a request executes where it arrived: only when a thread frees with runs waiting for it,
when a background run is created, and when a run that someone may wait for elsewhere ends.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service.auth.filters import compile_filter, named
from service.errors import Conflict, NotFound
from service.runs.execution import Outcome
from service.threads import LIVE_HOLDER

MAX_ATTEMPTS = 3
FINAL = ("success", "error", "interrupted", "timeout", "cancelled")
CHANNEL_RUNS = "langgraph_runs"        # a run became claimable: workers look
CHANNEL_CANCEL = "langgraph_cancel"    # payload run_id: its executing pod stops it
CHANNEL_DONE = "langgraph_run_done"    # payload run_id: it reached a final status
CHANNEL_EVENTS = "langgraph_run_events"  # payload run_id: new stream events are stored
CHANNEL_CRONS = "langgraph_crons"      # a cron was created or patched: schedulers look again

CancelAction = Literal["interrupt", "rollback"]

_RUN_COLUMNS = """run_id::text AS run_id, thread_id, assistant_id, status, multitask_strategy, metadata, kwargs,
    created_at, updated_at, started_at, ended_at, attempt, cancel_action, error, pod, not_before"""

# A live run of thread t other than r that must go before r: pending or running, and either kept
# alive by its pod or one of ours (which a worker will run again when its lease has expired).
_AHEAD = """
    SELECT 1 FROM runs o WHERE o.thread_id = {r}.thread_id AND o.run_id <> {r}.run_id
      AND o.status IN ('pending', 'running') AND (o.lease_expires_at > now() OR o.kwargs IS NOT NULL)
      AND (o.created_at, o.run_id) < ({r}.created_at, {r}.run_id)
"""

# Whether the assistant's row is still at the revision the run was built from (service.assistants,
# ``for_run``): nothing is written when it is not; with no revision given, no check.
_GUARD = """guard AS (
    SELECT %(assistant_revision)s::text IS NULL OR EXISTS (
        SELECT 1 FROM assistants a WHERE a.assistant_id = %(assistant_key)s::uuid
          AND a.xmin::text = %(assistant_revision)s) AS current
)"""

# With %(defer)s, a run taken to execute at once (a runs/wait) commits its creation without waiting
# for the disk, as its checkpoint writes do (service.checkpointer): its end commits as usual, and that
# commit's WAL flush covers the creation too, so a run answered is on disk as before. Evaluated in
# the statement, before its commit reads the setting; a run queued for later commits as usual.
_DEFER_COMMIT = "set_config('synchronous_commit', 'off', true)"

# The thread's latest checkpoint of the root namespace, as the stock saver's aget_tuple reads it
# (SELECT_SQL of the pinned langgraph-checkpoint-postgres, columns prefixed "cp_"), read in the submit
# of a run taken at once: the run's first read of its thread costs no statement of its own
# (service.checkpointer, Deferred.latest). The run holds the thread from that statement on, so no
# other writer changes its checkpoints in between (a state update of a busy thread is refused).
def _latest_checkpoint(thread: str, when: str) -> str:
    return f"""LEFT JOIN LATERAL (
    SELECT c.checkpoint AS cp_checkpoint, c.checkpoint_id AS cp_checkpoint_id,
           c.parent_checkpoint_id AS cp_parent_checkpoint_id, c.metadata AS cp_metadata,
           (SELECT array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
            FROM jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
            JOIN checkpoint_blobs bl ON bl.thread_id = c.thread_id AND bl.checkpoint_ns = c.checkpoint_ns
             AND bl.channel = v.key AND bl.version = v.value) AS cp_channel_values,
           (SELECT array_agg(array[cw.task_id::text::bytea, cw.channel::bytea, cw.type::bytea, cw.blob,
                                   convert_to(cw.task_path, 'UTF8'), cw.idx::text::bytea])
            FROM checkpoint_writes cw WHERE cw.thread_id = c.thread_id AND cw.checkpoint_ns = c.checkpoint_ns
             AND cw.checkpoint_id = c.checkpoint_id) AS cp_pending_writes
    FROM checkpoints c WHERE c.thread_id = {thread} AND c.checkpoint_ns = ''
    ORDER BY c.checkpoint_id DESC LIMIT 1
) cp ON {when}"""


_CP_COLUMNS = ("cp_checkpoint", "cp_checkpoint_id", "cp_parent_checkpoint_id", "cp_metadata", "cp_channel_values",
               "cp_pending_writes")

# Create a run on an existing thread; with run_now, take the thread in the same statement when it
# is free (the lease condition on the thread row's own columns is re-checked after a row-lock
# wait, which makes it a mutex). 'reject' inserts nothing unless the thread was taken.
SUBMIT_SQL = f"""
WITH {_GUARD}, thread AS (
    SELECT t.thread_id, ({LIVE_HOLDER}) OR EXISTS (
        SELECT 1 FROM runs o WHERE o.thread_id = t.thread_id AND o.status IN ('pending', 'running')
          AND (o.lease_expires_at > now() OR o.kwargs IS NOT NULL)) AS busy
    FROM threads t WHERE t.thread_id = %(thread_id)s
), taken AS (
    UPDATE threads AS t SET run_id = %(run_id)s, lease_expires_at = now() + %(lease)s, status = 'busy',
        updated_at = now(),
        metadata = CASE WHEN t.metadata @> %(thread_metadata)s THEN t.metadata
                        ELSE t.metadata || %(thread_metadata)s END
    WHERE t.thread_id = %(thread_id)s AND %(run_now)s AND (SELECT current FROM guard) AND NOT ({LIVE_HOLDER})
      AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.thread_id = t.thread_id AND o.status IN ('pending', 'running')
                      AND (o.lease_expires_at > now() OR o.kwargs IS NOT NULL))
    RETURNING t.thread_id
), inserted AS (
    INSERT INTO runs (run_id, thread_id, assistant_id, status, multitask_strategy, metadata, pod,
                      lease_expires_at, kwargs, not_before, started_at, attempt, created_at, updated_at)
    SELECT %(run_id)s, th.thread_id, %(assistant_id)s,
           CASE WHEN EXISTS (SELECT 1 FROM taken) THEN 'running' ELSE 'pending' END,
           %(strategy)s, %(metadata)s, CASE WHEN EXISTS (SELECT 1 FROM taken) THEN %(pod)s::text END,
           CASE WHEN EXISTS (SELECT 1 FROM taken) THEN now() + %(lease)s ELSE 'infinity' END,
           %(kwargs)s, %(not_before)s::timestamptz,
           CASE WHEN EXISTS (SELECT 1 FROM taken) THEN clock_timestamp() END,
           CASE WHEN EXISTS (SELECT 1 FROM taken) THEN 1 ELSE 0 END, clock_timestamp(), clock_timestamp()
    FROM thread th
    WHERE (SELECT current FROM guard) AND (EXISTS (SELECT 1 FROM taken) OR %(strategy)s <> 'reject'
       OR (NOT %(run_now)s AND NOT th.busy))  -- delayed or queued on purpose: 'reject' only when busy
    RETURNING {_RUN_COLUMNS}
)
SELECT (SELECT current FROM guard) AS current, (SELECT busy FROM thread) AS busy,
       EXISTS (SELECT 1 FROM taken) AS taken, i.*,
       CASE WHEN %(defer)s AND EXISTS (SELECT 1 FROM taken) THEN {_DEFER_COMMIT} END AS deferred,
       %(prefetch)s AND EXISTS (SELECT 1 FROM taken) AS prefetched, cp.*
FROM (SELECT 1) AS one LEFT JOIN inserted i ON TRUE
{_latest_checkpoint("%(thread_id)s", "%(prefetch)s AND EXISTS (SELECT 1 FROM taken)")}
"""

# The first run of a thread that does not exist yet: the thread is created already held by it.
SUBMIT_NEW_THREAD_SQL = f"""
WITH {_GUARD}, created AS (
    INSERT INTO threads (thread_id, metadata, status, run_id, lease_expires_at)
    SELECT %(thread_id)s::text, %(create_metadata)s::jsonb, 'busy', %(run_id)s::uuid, now() + %(lease)s
    WHERE (SELECT current FROM guard)
    ON CONFLICT DO NOTHING
    RETURNING thread_id
), inserted AS (
    INSERT INTO runs (run_id, thread_id, assistant_id, status, multitask_strategy, metadata, pod, lease_expires_at,
                      kwargs, started_at, attempt, created_at, updated_at)
    SELECT %(run_id)s, thread_id, %(assistant_id)s, 'running', %(strategy)s, %(metadata)s, %(pod)s,
           now() + %(lease)s, %(kwargs)s, clock_timestamp(), 1, clock_timestamp(), clock_timestamp()
    FROM created
    RETURNING {_RUN_COLUMNS}
)
SELECT i.*, TRUE AS current, FALSE AS busy, TRUE AS taken,
       CASE WHEN %(defer)s THEN {_DEFER_COMMIT} END AS deferred, %(prefetch)s AS prefetched, cp.*
FROM inserted i
{_latest_checkpoint("i.thread_id", "%(prefetch)s")}
"""

# The graph of a run queued for later on an existing thread (SUBMIT_SQL records it only when it takes
# the thread), so that the thread's state reads through that graph before the run starts.
TAG_THREAD_SQL = "UPDATE threads SET metadata = metadata || %(thread_metadata)s " \
                 "WHERE thread_id = %(thread_id)s AND NOT metadata @> %(thread_metadata)s"

CREATE_THREAD_SQL = "INSERT INTO threads (thread_id, metadata) VALUES (%(thread_id)s, %(create_metadata)s::jsonb) " \
                    "ON CONFLICT DO NOTHING"

# Claim up to %(limit)s runs: pending ones that are due and first on their thread, and running ones
# whose pod stopped renewing the lease. Locks the run and its thread row, skipping locked ones.
CLAIM_SQL = f"""
WITH candidate AS (
    SELECT r.run_id, r.thread_id, r.status AS prior_status
    FROM runs r JOIN threads t ON t.thread_id = r.thread_id
    WHERE r.kwargs IS NOT NULL
      AND ((r.status = 'pending' AND (r.not_before IS NULL OR r.not_before <= now()))
           OR (r.status = 'running' AND r.lease_expires_at <= now()))
      AND NOT ({LIVE_HOLDER})
      AND NOT EXISTS ({_AHEAD.format(r="r")})
    ORDER BY r.created_at, r.run_id
    LIMIT %(limit)s
    FOR UPDATE OF r, t SKIP LOCKED
), taken AS (
    UPDATE threads t SET run_id = c.run_id, lease_expires_at = now() + %(lease)s, status = 'busy',
        updated_at = now()
    FROM candidate c WHERE t.thread_id = c.thread_id
    RETURNING t.thread_id
)
UPDATE runs r SET status = 'running', pod = %(pod)s, lease_expires_at = now() + %(lease)s,
    started_at = coalesce(r.started_at, clock_timestamp()), attempt = r.attempt + 1, updated_at = now()
FROM candidate c WHERE r.run_id = c.run_id
RETURNING r.run_id::text AS run_id, r.thread_id, r.assistant_id, r.status, r.multitask_strategy, r.metadata,
    r.kwargs, r.created_at, r.updated_at, r.started_at, r.ended_at, r.attempt, r.cancel_action, r.error, r.pod,
    r.not_before, c.prior_status, extract(epoch FROM (r.started_at - r.created_at)) AS queued_seconds
"""

# Runs that died too often: failed for good (their thread is freed: its lease has expired).
GIVE_UP_SQL = """
UPDATE runs SET status = 'error', ended_at = now(), updated_at = now(),
    error = jsonb_build_object('error', 'RunLeaseExpired',
                               'message', 'the run was taken over ' || attempt || ' times and abandoned')
WHERE status = 'running' AND kwargs IS NOT NULL AND lease_expires_at <= now() AND attempt >= %(max)s
RETURNING run_id::text AS run_id
"""

# When to look again by itself: the next delayed run's time, or the next lease that may expire.
# Due runs that wait for a busy thread are not in it: the holder's end wakes the pods (NOTIFY).
NEXT_DUE_SQL = """
SELECT extract(epoch FROM (min(CASE WHEN status = 'pending' AND not_before > now() THEN not_before
                                    WHEN status = 'running' THEN lease_expires_at END) - now())) AS wait
FROM runs WHERE status IN ('pending', 'running') AND kwargs IS NOT NULL
"""

HEARTBEAT_SQL = """
WITH thread AS (
    UPDATE threads SET lease_expires_at = now() + %(lease)s WHERE run_id = %(run_id)s
)
UPDATE runs SET lease_expires_at = now() + %(lease)s
WHERE run_id = %(run_id)s AND status = 'running' AND attempt = %(attempt)s
RETURNING cancel_action
"""

# The run's end and the thread's new state in one statement; wakes workers when another run of the
# thread is waiting, and waiters elsewhere when asked to.
FINISH_SQL = """
WITH finished AS (
    UPDATE runs SET status = %(status)s, updated_at = now(), ended_at = now(), lease_expires_at = now(),
        error = %(error)s::jsonb
    WHERE run_id = %(run_id)s AND attempt = %(attempt)s AND status = 'running'
    RETURNING run_id
), released AS (
    UPDATE threads SET status = %(thread_status)s, values = coalesce(%(values)s::jsonb, values),
        interrupts = %(interrupts)s, error = %(thread_error)s::jsonb, run_id = NULL, lease_expires_at = NULL,
        updated_at = now()
    WHERE thread_id = %(thread_id)s AND run_id = %(run_id)s AND EXISTS (SELECT 1 FROM finished)
)
SELECT EXISTS (SELECT 1 FROM finished) AS finished,
    (SELECT count(*) FROM (
        SELECT pg_notify('langgraph_runs', '') FROM runs p
        WHERE p.thread_id = %(thread_id)s AND p.status = 'pending' AND p.kwargs IS NOT NULL LIMIT 1) w) AS woke,
    CASE WHEN %(notify)s THEN (SELECT count(*) FROM (SELECT pg_notify('langgraph_run_done', %(run_id)s::text)) n)
    END AS told
"""

GET_SQL = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = %(run_id)s AND (%(thread_id)s::text IS NULL " \
          "OR thread_id = %(thread_id)s)"

LIST_SQL = f"""
SELECT {_RUN_COLUMNS} FROM runs
WHERE thread_id = %(thread_id)s AND (%(status)s::text IS NULL OR status = %(status)s
                                     OR (%(status)s = 'interrupted' AND status = 'cancelled'))
ORDER BY created_at DESC, run_id DESC LIMIT %(limit)s OFFSET %(offset)s
"""

STATUS_SQL = "SELECT status, thread_id FROM runs WHERE run_id = %(run_id)s"

# The thread stream: where to begin (its oldest live run, else now), and the run after a cursor.
THREAD_START_SQL = """
SELECT coalesce((SELECT min(created_at) FROM runs WHERE thread_id = %(thread_id)s
                 AND status IN ('pending', 'running')) - interval '1 microsecond', now()) AS after_ts,
       EXISTS (SELECT 1 FROM threads WHERE thread_id = %(thread_id)s) AS found
"""
NEXT_RUN_SQL = """
SELECT run_id::text AS run_id, created_at FROM runs
WHERE thread_id = %(thread_id)s AND (created_at, run_id) > (%(after_ts)s, %(after_id)s::uuid)
ORDER BY created_at, run_id LIMIT 1
"""

DELETE_SQL = """
WITH gone AS (
    DELETE FROM runs WHERE run_id = %(run_id)s AND thread_id = %(thread_id)s
      AND status NOT IN ('pending', 'running') RETURNING run_id
), events AS (
    DELETE FROM run_events WHERE run_id IN (SELECT run_id FROM gone)
)
SELECT EXISTS (SELECT 1 FROM gone) AS deleted,
       EXISTS (SELECT 1 FROM runs WHERE run_id = %(run_id)s AND thread_id = %(thread_id)s) AS found
"""

# Cancel: pending runs end at once (interrupt) or vanish (rollback); running ones are flagged, and
# their pods are told. Returns the running ones, which their executors finish.
CANCEL_SQL = """
WITH target AS (
    SELECT run_id, status FROM runs
    WHERE status IN ('pending', 'running')
      AND (%(run_ids)s::uuid[] IS NULL OR run_id = ANY(%(run_ids)s::uuid[]))
      AND (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
      AND (%(status)s::text IS NULL OR %(status)s = 'all' OR status = %(status)s)
    FOR UPDATE OF runs
), flagged AS (
    UPDATE runs r SET cancel_action = %(action)s, updated_at = now()
    FROM target WHERE r.run_id = target.run_id AND target.status = 'running'
    RETURNING r.run_id, pg_notify('langgraph_cancel', r.run_id::text)
), ended AS (
    UPDATE runs r SET status = 'interrupted', cancel_action = %(action)s, updated_at = now(), ended_at = now(),
        lease_expires_at = now()
    FROM target WHERE r.run_id = target.run_id AND target.status = 'pending' AND %(action)s = 'interrupt'
    RETURNING r.run_id
), dropped AS (
    DELETE FROM runs r USING target WHERE r.run_id = target.run_id AND target.status = 'pending'
      AND %(action)s = 'rollback'
    RETURNING r.run_id
)
SELECT run_id::text AS run_id, status, (SELECT count(*) FROM flagged) AS flagged,
    (SELECT count(*) FROM ended) + (SELECT count(*) FROM dropped) AS ended
FROM target
"""

# Where an auth filter narrows CANCEL_SQL to the caller's threads (parameters only, service.auth.filters).
CANCEL_SCOPE = "AND (%(status)s::text IS NULL OR %(status)s = 'all' OR status = %(status)s)"

# multitask_strategy interrupt/rollback: a new run on a busy thread cancels the runs before it.
CANCEL_AHEAD_SQL = """
SELECT run_id::text AS run_id FROM runs
WHERE thread_id = %(thread_id)s AND run_id <> %(run_id)s AND status IN ('pending', 'running')
  AND created_at < (SELECT created_at FROM runs WHERE run_id = %(run_id)s)
"""

# Rollback: the run's checkpoints and writes go, then the run itself (its events with it).
ROLLBACK_SQL = """
WITH gone AS (
    DELETE FROM checkpoints WHERE thread_id = %(thread_id)s AND metadata->>'run_id' = %(run_id)s::text
    RETURNING checkpoint_ns, checkpoint_id
), writes AS (
    DELETE FROM checkpoint_writes w USING gone g
    WHERE w.thread_id = %(thread_id)s AND w.checkpoint_ns = g.checkpoint_ns AND w.checkpoint_id = g.checkpoint_id
), events AS (
    DELETE FROM run_events WHERE run_id = %(run_id)s::uuid
), run AS (
    DELETE FROM runs WHERE run_id = %(run_id)s::uuid
)
UPDATE threads SET status = 'idle', run_id = NULL, lease_expires_at = NULL, interrupts = '{}', error = NULL,
    updated_at = now()
WHERE thread_id = %(thread_id)s AND run_id = %(run_id)s::uuid
"""

HAS_CHECKPOINT_SQL = """
SELECT EXISTS (SELECT 1 FROM checkpoints WHERE thread_id = %(thread_id)s AND metadata->>'run_id' = %(run_id)s)
    AS resumed
"""

# Due runs only: a run delayed with after_seconds is not a backlog.
DEPTH_SQL = """
SELECT status, count(*) AS n FROM runs
WHERE status IN ('pending', 'running') AND (not_before IS NULL OR not_before <= now()) GROUP BY status
"""

NOTIFY_RUNS_SQL = "SELECT pg_notify('langgraph_runs', '')"

# A transaction that writes WAL (a new version of the run's row, changing nothing), committed with the
# server's synchronous_commit: returns once the WAL is on disk up to it, and so every transaction
# committed before it (service.checkpointer). A transaction that writes no WAL (``SELECT
# pg_current_xact_id()``, which only takes an xid) commits without a flush.
FLUSH_SQL = "UPDATE runs SET status = status WHERE run_id = %(run_id)s RETURNING 1 AS written"

# The prune job: finished runs not updated since the cutoff, in batches (their events with them).
PRUNE_SQL = """
WITH doomed AS (
    SELECT run_id FROM runs WHERE status NOT IN ('pending', 'running') AND updated_at < %(cutoff)s
    ORDER BY updated_at LIMIT %(batch)s
), events AS (
    DELETE FROM run_events e USING doomed d WHERE e.run_id = d.run_id
)
DELETE FROM runs r USING doomed d WHERE r.run_id = d.run_id
"""


def public_status(status: str) -> str:
    """The status as the API names it: a cancelled run is ``interrupted`` there."""
    return "interrupted" if status == "cancelled" else status


def run_json(row: dict[str, Any]) -> dict[str, Any]:
    """A run as the LangGraph Server API shapes it."""
    return {
        "run_id": str(row["run_id"]),
        "thread_id": row["thread_id"],
        "assistant_id": row["assistant_id"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "status": public_status(row["status"]),
        "metadata": row["metadata"] or {},
        "kwargs": {k: v for k, v in (row["kwargs"] or {}).items() if not k.startswith("_")},
        "multitask_strategy": row["multitask_strategy"],
    }


class StaleAssistant(Exception):
    """The assistant's row changed after the run was built from it: nothing was written."""


@dataclass
class Submitted:
    row: dict[str, Any]
    taken: bool
    #: With ``prefetch``, for a run taken at once: the thread's latest checkpoint row (the stock
    #: saver's columns) or None for a thread without one; service.checkpointer.Deferred.latest.
    latest: dict[str, Any] | None = None
    prefetched: bool = False


class RunQueue:
    """SQL of the run queue over the shared pool."""

    def __init__(self, pool: AsyncConnectionPool[Any], pod: str, lease: float) -> None:
        self.pool = pool
        self.pod = pod
        self.lease = dt.timedelta(seconds=lease)

    async def submit(self, *, thread_id: str, assistant_id: str, kwargs: dict[str, Any], metadata: dict[str, Any],
                     strategy: str, run_now: bool, create: dict[str, Any] | None, thread_metadata: dict[str, Any],
                     after_seconds: float | None = None, conn: Any = None,
                     assistant_revision: str | None = None, defer: bool = False,
                     prefetch: bool = False) -> Submitted:
        """Insert a run (and take its thread when ``run_now`` and free); NotFound/Conflict as the API answers.

        With ``assistant_revision``, only if the assistant's row is still at that revision (else
        StaleAssistant, and nothing written). ``defer``: a run taken at once commits without waiting
        for the disk (see _DEFER_COMMIT); its end's commit must follow before anything is acknowledged.
        ``prefetch``: a run taken at once also gets its thread's latest checkpoint (``Submitted.latest``).
        """
        params = {
            "run_id": str(uuid.uuid4()), "thread_id": thread_id, "assistant_id": assistant_id,
            "kwargs": Jsonb(kwargs), "metadata": Jsonb(metadata), "strategy": strategy, "pod": self.pod,
            "lease": self.lease, "run_now": run_now and after_seconds is None, "defer": defer,
            "prefetch": prefetch,
            "thread_metadata": Jsonb(thread_metadata), "assistant_revision": assistant_revision,
            "assistant_key": assistant_id if assistant_revision is not None else None,
            "create_metadata": Jsonb(create) if create is not None else None,
            "not_before": (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=after_seconds)
                           if after_seconds is not None else None),
        }
        if conn is None:
            async with self.pool.connection() as own:
                return await self._submit(own, params, create)
        return await self._submit(conn, params, create)

    async def _submit(self, conn: Any, params: dict[str, Any], create: dict[str, Any] | None) -> Submitted:
        row = None
        if create is not None:
            if params["run_now"]:
                cur = await conn.execute(SUBMIT_NEW_THREAD_SQL, params)
                row = await cur.fetchone()
            else:
                await conn.execute(CREATE_THREAD_SQL, params)
        if row is None:
            try:
                cur = await conn.execute(SUBMIT_SQL, params)
            except psycopg.errors.ForeignKeyViolation:
                # The thread was there at the statement's start, and deleted (a TTL sweep, a prune,
                # DELETE /threads) before the run's row was checked against it: gone, as before.
                raise NotFound(f"thread {params['thread_id']} not found") from None
            row = await cur.fetchone()
        assert row is not None
        if not row["current"]:
            raise StaleAssistant(params["assistant_id"])
        if row["busy"] is None:
            raise NotFound(f"thread {params['thread_id']} not found")
        if row["run_id"] is None:
            raise Conflict(f"thread {params['thread_id']} is busy", thread_id=params["thread_id"])
        prefetched = bool(row.pop("prefetched", False))
        latest = {k[3:]: row.pop(k) for k in _CP_COLUMNS if k in row}
        if not prefetched or latest.get("checkpoint_id") is None:
            return Submitted(row, bool(row["taken"]), None, prefetched)
        latest.update(thread_id=row["thread_id"], checkpoint_ns="")
        return Submitted(row, bool(row["taken"]), latest, True)

    async def claim(self, limit: int) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(CLAIM_SQL, {"limit": limit, "lease": self.lease, "pod": self.pod})
            return list(await cur.fetchall())

    async def give_up(self) -> list[str]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(GIVE_UP_SQL, {"max": MAX_ATTEMPTS})
            return [r["run_id"] for r in await cur.fetchall()]

    async def next_due(self) -> float | None:
        """Seconds until the next delayed run is due or a lease expires (None: nothing pending)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(NEXT_DUE_SQL)
            row = await cur.fetchone()
        return None if row is None or row["wait"] is None else float(row["wait"])

    async def heartbeat(self, run_id: str, attempt: int) -> tuple[bool, str | None]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(HEARTBEAT_SQL, {"run_id": run_id, "attempt": attempt, "lease": self.lease})
            row = await cur.fetchone()
        return (row is not None, row["cancel_action"] if row else None)

    async def resumed(self, thread_id: str, run_id: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(HAS_CHECKPOINT_SQL, {"thread_id": thread_id, "run_id": run_id})
            row = await cur.fetchone()
        return bool(row and row["resumed"])

    async def finish(self, row: dict[str, Any], outcome: Outcome, *, notify: bool) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(FINISH_SQL, {
                "status": outcome.run_status, "run_id": str(row["run_id"]), "attempt": row["attempt"],
                "thread_id": row["thread_id"], "thread_status": outcome.thread_status,
                "values": Jsonb(outcome.values) if outcome.values is not None else None,
                "interrupts": Jsonb(outcome.interrupts),
                "error": Jsonb(outcome.error) if outcome.error is not None else None,
                "thread_error": Jsonb(outcome.error) if outcome.error is not None else None,
                "notify": notify,
            })
            result = await cur.fetchone()
        return bool(result and result["finished"])

    async def rollback(self, row: dict[str, Any]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(ROLLBACK_SQL, {"thread_id": row["thread_id"], "run_id": str(row["run_id"])})

    async def get(self, run_id: str, thread_id: str | None = None) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(GET_SQL, {"run_id": _uuid(run_id), "thread_id": thread_id})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return dict(row)

    async def of_thread(self, thread_id: str, status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(LIST_SQL, {"thread_id": thread_id, "status": status, "limit": limit,
                                                "offset": offset})
            return list(await cur.fetchall())

    async def status(self, run_id: str) -> str | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(STATUS_SQL, {"run_id": run_id})
            row = await cur.fetchone()
        return None if row is None else str(row["status"])

    async def thread_start(self, thread_id: str) -> Any:
        async with self.pool.connection() as conn:
            cur = await conn.execute(THREAD_START_SQL, {"thread_id": thread_id})
            row = await cur.fetchone()
        if row is None or not row["found"]:
            raise NotFound(f"thread {thread_id} not found")
        return row["after_ts"]

    async def next_run(self, thread_id: str, after_ts: Any, after_id: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(NEXT_RUN_SQL, {"thread_id": thread_id, "after_ts": after_ts,
                                                    "after_id": after_id})
            row = await cur.fetchone()
        return dict(row) if row else None

    async def delete(self, thread_id: str, run_id: str) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(DELETE_SQL, {"run_id": _uuid(run_id), "thread_id": thread_id})
            row = await cur.fetchone()
        assert row is not None
        if not row["found"]:
            raise NotFound(f"run {run_id} not found")
        if not row["deleted"]:
            raise Conflict(f"run {run_id} is still pending or running; cancel it first")

    async def cancel(self, *, action: CancelAction, run_ids: list[str] | None = None, thread_id: str | None = None,
                     status: str | None = None, conn: Any = None,
                     auth: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``auth``: an auth handler's filter; only runs of threads whose metadata it matches are cancelled."""
        params = {"action": action, "run_ids": [_uuid(r) for r in run_ids] if run_ids is not None else None,
                  "thread_id": thread_id, "status": status}
        if auth:
            where, named_params = named(compile_filter(auth, "t.metadata"))
            params.update(named_params)
            sql = CANCEL_SQL.replace(CANCEL_SCOPE, CANCEL_SCOPE + f" AND EXISTS (SELECT 1 FROM threads t "
                                     f"WHERE t.thread_id = runs.thread_id AND ({where}))")
            async with self.pool.connection() as own, own.transaction():
                cur = await own.execute(sql, params)
                return list(await cur.fetchall())
        if conn is not None:
            cur = await conn.execute(CANCEL_SQL, params)
            return list(await cur.fetchall())
        async with self.pool.connection() as own, own.transaction():
            cur = await own.execute(CANCEL_SQL, params)
            return list(await cur.fetchall())

    async def cancel_ahead(self, thread_id: str, run_id: str, action: CancelAction) -> list[dict[str, Any]]:
        """The runs created before ``run_id`` on its thread, cancelled (multitask interrupt/rollback)."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(CANCEL_AHEAD_SQL, {"thread_id": thread_id, "run_id": run_id})
            ahead = [r["run_id"] for r in await cur.fetchall()]
            if not ahead:
                return []
            return await self.cancel(action=action, run_ids=ahead, conn=conn)

    async def wake(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(NOTIFY_RUNS_SQL)

    async def flush(self, run_id: str) -> None:
        """Return once everything committed so far is on disk (through a write to ``run_id``'s row)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(FLUSH_SQL, {"run_id": _uuid(run_id)})
            if await cur.fetchone() is None:
                raise NotFound(f"run {run_id} not found")  # nothing written: nothing flushed

    async def depth(self) -> dict[str, int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(DEPTH_SQL)
            return {r["status"]: int(r["n"]) for r in await cur.fetchall()}


def _uuid(value: str) -> str:
    """A run id from a URL: a malformed one is simply not found (never a database error)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise NotFound(f"run {value} not found") from None
