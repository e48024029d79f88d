"""Which schema versions this code needs, and how to read the versions a database has.

Three components, each a versioned list of statements and a table recording the versions
applied (the same tables LangGraph's own ``setup()`` methods use, so a database migrated
by either is understood by both):

* ``checkpointer``: ``AsyncPostgresSaver.MIGRATIONS``, recorded in ``checkpoint_migrations``;
* ``store``: ``AsyncPostgresStore.MIGRATIONS``, recorded in ``store_migrations``;
* ``app``: this product's own tables, recorded in ``langgraph_service_migrations``.

A component's version is the highest ``v`` recorded, -1 when nothing is. The service is
ready when every component is at or beyond its required version; a newer database is fine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.postgres.base import BasePostgresSaver
from langgraph.store.postgres.base import BasePostgresStore

APP_MIGRATIONS: tuple[str, ...] = (
    # Thread metadata, status and the latest values, so listing threads never reads checkpoints.
    """
    CREATE TABLE IF NOT EXISTS threads (
        thread_id   text PRIMARY KEY,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        metadata    jsonb NOT NULL DEFAULT '{}',
        status      text NOT NULL DEFAULT 'idle'
                    CHECK (status IN ('idle', 'busy', 'interrupted', 'error')),
        values      jsonb NOT NULL DEFAULT '{}',
        interrupts  jsonb NOT NULL DEFAULT '{}',
        error       jsonb,
        -- The run that holds the thread, until its lease expires (its pod renews it while it runs).
        run_id            uuid,
        lease_expires_at  timestamptz
    )
    """,
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS threads_metadata_idx ON threads USING gin (metadata jsonb_path_ops)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS threads_status_updated_idx ON threads (status, updated_at DESC)",
    # Runs: the queue and the lease that keep one run per thread at a time across all pods.
    """
    CREATE TABLE IF NOT EXISTS runs (
        run_id              uuid PRIMARY KEY,
        thread_id           text NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
        assistant_id        text NOT NULL,
        status              text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'running', 'success', 'error', 'interrupted',
                                              'timeout', 'cancelled')),
        multitask_strategy  text NOT NULL DEFAULT 'enqueue',
        metadata            jsonb NOT NULL DEFAULT '{}',
        pod                 text,
        lease_expires_at    timestamptz NOT NULL,
        created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
        updated_at          timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_active_idx ON runs (thread_id, created_at) "
    "WHERE status IN ('pending', 'running')",
    # issue 10: the durable run queue. A run's body (kwargs) is stored, so any pod's workers can
    # claim it; rows without kwargs are the request-bound runs of the previous version, which the
    # workers leave to the pods that made them (both kinds share the thread row's lease).
    """
    ALTER TABLE runs
        ADD COLUMN IF NOT EXISTS kwargs jsonb,
        ADD COLUMN IF NOT EXISTS not_before timestamptz,
        ADD COLUMN IF NOT EXISTS started_at timestamptz,
        ADD COLUMN IF NOT EXISTS ended_at timestamptz,
        ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS cancel_action text,
        ADD COLUMN IF NOT EXISTS error jsonb
    """,
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_claim_idx ON runs (created_at, run_id) "
    "WHERE status IN ('pending', 'running') AND kwargs IS NOT NULL",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_thread_created_idx ON runs (thread_id, created_at DESC)",
    # Stream events of runs, for joining a stream from any pod and resuming it (Last-Event-ID).
    """
    CREATE TABLE IF NOT EXISTS run_events (
        run_id      uuid NOT NULL,
        seq         integer NOT NULL,
        event       text NOT NULL,
        data        bytea NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, seq)
    )
    """,
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS run_events_created_idx ON run_events (created_at)",
    # issue 11: assistants. The current version of each assistant, and every version it has had
    # (patch adds one, POST /assistants/{id}/latest makes an older one current again).
    """
    CREATE TABLE IF NOT EXISTS assistants (
        assistant_id  uuid PRIMARY KEY,
        graph_id      text NOT NULL,
        name          text NOT NULL,
        description   text,
        config        jsonb NOT NULL DEFAULT '{}',
        context       jsonb NOT NULL DEFAULT '{}',
        metadata      jsonb NOT NULL DEFAULT '{}',
        version       integer NOT NULL DEFAULT 1,
        created_at    timestamptz NOT NULL DEFAULT now(),
        updated_at    timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS assistant_versions (
        assistant_id  uuid NOT NULL REFERENCES assistants (assistant_id) ON DELETE CASCADE,
        version       integer NOT NULL,
        graph_id      text NOT NULL,
        name          text NOT NULL,
        description   text,
        config        jsonb NOT NULL DEFAULT '{}',
        context       jsonb NOT NULL DEFAULT '{}',
        metadata      jsonb NOT NULL DEFAULT '{}',
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (assistant_id, version)
    )
    """,
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS assistants_graph_created_idx ON assistants (graph_id, created_at DESC)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS assistants_metadata_idx ON assistants USING gin (metadata jsonb_path_ops)",
)

_INDEX_RE = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s+ON\s+(\w+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Component:
    name: str
    table: str
    steps: tuple[str, ...]
    # The checkpointer's first step creates its own version table; the others need it made first.
    creates_own_table: bool = False

    @property
    def required_version(self) -> int:
        return len(self.steps) - 1

    def version_table_ddl(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} "
            "(v INTEGER PRIMARY KEY)"
        )


@dataclass(frozen=True)
class IndexSpec:
    name: str
    table: str
    component: str
    version: int
    statement: str
    concurrent: bool


COMPONENTS: tuple[Component, ...] = (
    Component("checkpointer", "checkpoint_migrations", tuple(BasePostgresSaver.MIGRATIONS),
              creates_own_table=True),
    Component("store", "store_migrations", tuple(BasePostgresStore.MIGRATIONS)),
    Component("app", "langgraph_service_migrations", APP_MIGRATIONS),
)


def required_versions() -> dict[str, int]:
    return {c.name: c.required_version for c in COMPONENTS}


def index_of(statement: str) -> IndexSpec | None:
    match = _INDEX_RE.search(statement)
    if match is None:
        return None
    return IndexSpec(match.group(2), match.group(3), "", -1, statement.strip(), bool(match.group(1)))


def expected_indexes(components: Sequence[Component] = COMPONENTS) -> list[IndexSpec]:
    """Every index the components' statements define, with the statement that builds it."""
    specs = []
    for component in components:
        for version, statement in enumerate(component.steps):
            spec = index_of(statement)
            if spec is not None:
                specs.append(IndexSpec(spec.name, spec.table, component.name, version, spec.statement,
                                       spec.concurrent))
    return specs


TABLES_SQL = "SELECT name, to_regclass(tbl) IS NOT NULL AS present FROM unnest(%s::text[], %s::text[]) AS t(name, tbl)"


def tables_params() -> tuple[list[str], list[str]]:
    return [c.name for c in COMPONENTS], [c.table for c in COMPONENTS]


def versions_sql(present: Sequence[str]) -> str | None:
    """The statement reading each present component's version (None when none is present).

    Tables are looked up with to_regclass first (TABLES_SQL), so an empty database reads as
    -1 without an error and without aborting the caller's transaction.
    """
    parts = [
        f"SELECT '{c.name}' AS name, coalesce(max(v), -1) AS version FROM {c.table}"
        for c in COMPONENTS
        if c.name in present
    ]
    return " UNION ALL ".join(parts) or None


def read_versions(conn: Any) -> dict[str, int]:
    """Each component's version on a synchronous psycopg connection (-1 where missing)."""
    rows = conn.execute(TABLES_SQL, tables_params()).fetchall()
    present = [_get(r, "name", 0) for r in rows if _get(r, "present", 1)]
    versions = dict.fromkeys((c.name for c in COMPONENTS), -1)
    sql = versions_sql(present)
    if sql is not None:
        versions.update(parse_versions(conn.execute(sql).fetchall()))
    return versions


async def aread_versions(conn: Any) -> dict[str, int]:
    """The same as :func:`read_versions` on an asynchronous psycopg connection."""
    cur = await conn.execute(TABLES_SQL, tables_params())
    present = [_get(r, "name", 0) for r in await cur.fetchall() if _get(r, "present", 1)]
    versions = dict.fromkeys((c.name for c in COMPONENTS), -1)
    sql = versions_sql(present)
    if sql is not None:
        cur = await conn.execute(sql)
        versions.update(parse_versions(await cur.fetchall()))
    return versions


def _get(row: Any, key: str, index: int) -> Any:
    return row[key] if isinstance(row, dict) else row[index]


def parse_versions(rows: Sequence[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[str(_get(row, "name", 0))] = int(_get(row, "version", 1))
    return out


def missing(versions: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Components behind what this code needs: name -> (have, need)."""
    return {
        c.name: (versions.get(c.name, -1), c.required_version)
        for c in COMPONENTS
        if versions.get(c.name, -1) < c.required_version
    }


def describe_missing(gaps: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{name} at v{have} needs v{need}" for name, (have, need) in gaps.items())


INDEX_STATE_SQL = """
SELECT c.relname AS name, i.indisvalid AS valid, i.indisready AS ready
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname = ANY(%s) AND pg_catalog.pg_table_is_visible(c.oid)
"""
