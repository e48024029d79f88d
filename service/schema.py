"""Which schema versions this code needs, and how to read the versions a database has.

Three components, each a versioned list of statements and a table recording the versions
applied (the same tables LangGraph's own ``setup()`` methods use, so a database migrated
by either is understood by both):

* ``checkpointer``: ``AsyncPostgresSaver.MIGRATIONS``, recorded in ``checkpoint_migrations``;
* ``store``: ``AsyncPostgresStore.MIGRATIONS``, recorded in ``store_migrations``;
* ``app``: this product's own tables, recorded in ``langgraph_service_migrations``;
* ``store_vectors``, only when ``store.index`` is configured (semantic search):
  ``AsyncPostgresStore.VECTOR_MIGRATIONS`` rendered for that index (pgvector's extension, the
  ``store_vectors`` table of the configured dimensions, its ANN index), recorded in
  ``vector_migrations``. The migration job reads the index from the same ``LANGGRAPH_STORE`` /
  langgraph.json as the pods, so both agree on what is required.

A component's version is the highest ``v`` recorded, -1 when nothing is. The service is
ready when every component is at or beyond its required version; a newer database is fine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.postgres.base import BasePostgresSaver
from langgraph.store.postgres.base import BasePostgresStore

if TYPE_CHECKING:
    from service.settings import StoreIndexSettings

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
    # issue 10: crons
    # A schedule and the run payload it fires (service/runs/crons.py); thread_id NULL: a new thread per firing.
    """
    CREATE TABLE IF NOT EXISTS crons (
        cron_id           uuid PRIMARY KEY,
        assistant_id      text NOT NULL,
        thread_id         text REFERENCES threads (thread_id) ON DELETE CASCADE,
        schedule          text NOT NULL,
        timezone          text,
        payload           jsonb NOT NULL DEFAULT '{}',
        metadata          jsonb NOT NULL DEFAULT '{}',
        user_id           text,
        enabled           boolean NOT NULL DEFAULT true,
        on_run_completed  text CHECK (on_run_completed IN ('delete', 'keep')),
        end_time          timestamptz,
        -- The next firing; NULL once past end_time. The scheduler's claim moves it (once per firing).
        next_run_date     timestamptz,
        created_at        timestamptz NOT NULL DEFAULT now(),
        updated_at        timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS crons_next_run_idx ON crons (next_run_date) WHERE enabled",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS crons_thread_idx ON crons (thread_id) WHERE thread_id IS NOT NULL",
    # issue 11: a thread's own time to live (``ttl`` of POST /threads and PATCH /threads/{id}), in
    # minutes; every pod's sweep applies the strategy once both expires_at and the thread's last
    # update plus ttl_minutes are past (service/thread_storage.py).
    """
    CREATE TABLE IF NOT EXISTS thread_ttl (
        thread_id    text PRIMARY KEY REFERENCES threads (thread_id) ON DELETE CASCADE,
        strategy     text NOT NULL CHECK (strategy IN ('delete', 'keep_latest')),
        ttl_minutes  double precision NOT NULL CHECK (ttl_minutes >= 0),
        expires_at   timestamptz NOT NULL
    )
    """,
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS thread_ttl_expires_idx ON thread_ttl (expires_at)",
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


VECTOR_COMPONENT = "store_vectors"


def index_mapping(index: StoreIndexSettings) -> dict[str, Any]:
    """The index as LangGraph's PostgresIndexConfig (without the embedding function)."""
    out: dict[str, Any] = {"dims": index.dims, "distance_type": index.distance_type}
    if index.fields is not None:
        out["fields"] = list(index.fields)
    if index.ann_index_config is not None:
        out["ann_index_config"] = dict(index.ann_index_config)
    return out


def vector_steps(index: StoreIndexSettings) -> tuple[str, ...]:
    """``VECTOR_MIGRATIONS`` rendered for one index, as ``AsyncPostgresStore.setup()`` renders them.

    A step whose condition does not hold (no ANN index for ``kind: flat``) is a no-op that is
    still recorded, so versions stay contiguous.
    """
    holder = SimpleNamespace(index_config=index_mapping(index))
    steps = []
    for migration in BasePostgresStore.VECTOR_MIGRATIONS:
        if migration.condition is not None and not migration.condition(holder):  # type: ignore[arg-type]
            steps.append("SELECT 1 -- not needed for this index")
            continue
        if not migration.params:
            steps.append(migration.sql)
            continue
        params = {k: v(holder) if callable(v) else v for k, v in migration.params.items()}
        if "dims" in params:
            params["dims"] = int(params["dims"])
        if params.get("vector_type", "vector") not in ("vector", "halfvec"):
            raise ValueError(f"invalid vector_type {params['vector_type']!r}")
        if params.get("index_type", "hnsw") not in ("hnsw", "ivfflat"):
            raise ValueError(f"invalid index kind {params['index_type']!r}")
        steps.append(migration.sql % params)
    return tuple(steps)


def components(index: StoreIndexSettings | None = None) -> tuple[Component, ...]:
    """The components a deployment needs: the vector one only with a configured store index."""
    if index is None:
        return COMPONENTS
    return (*COMPONENTS, Component(VECTOR_COMPONENT, "vector_migrations", vector_steps(index)))


def required_versions(components: Sequence[Component] = COMPONENTS) -> dict[str, int]:
    return {c.name: c.required_version for c in components}


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


def tables_params(components: Sequence[Component] = COMPONENTS) -> tuple[list[str], list[str]]:
    return [c.name for c in components], [c.table for c in components]


def versions_sql(present: Sequence[str], components: Sequence[Component] = COMPONENTS) -> str | None:
    """The statement reading each present component's version (None when none is present).

    Tables are looked up with to_regclass first (TABLES_SQL), so an empty database reads as
    -1 without an error and without aborting the caller's transaction.
    """
    parts = [
        f"SELECT '{c.name}' AS name, coalesce(max(v), -1) AS version FROM {c.table}"
        for c in components
        if c.name in present
    ]
    return " UNION ALL ".join(parts) or None


def read_versions(conn: Any, components: Sequence[Component] = COMPONENTS) -> dict[str, int]:
    """Each component's version on a synchronous psycopg connection (-1 where missing)."""
    rows = conn.execute(TABLES_SQL, tables_params(components)).fetchall()
    present = [_get(r, "name", 0) for r in rows if _get(r, "present", 1)]
    versions = dict.fromkeys((c.name for c in components), -1)
    sql = versions_sql(present, components)
    if sql is not None:
        versions.update(parse_versions(conn.execute(sql).fetchall()))
    return versions


async def aread_versions(conn: Any, components: Sequence[Component] = COMPONENTS) -> dict[str, int]:
    """The same as :func:`read_versions` on an asynchronous psycopg connection."""
    cur = await conn.execute(TABLES_SQL, tables_params(components))
    present = [_get(r, "name", 0) for r in await cur.fetchall() if _get(r, "present", 1)]
    versions = dict.fromkeys((c.name for c in components), -1)
    sql = versions_sql(present, components)
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


def missing(versions: dict[str, int], components: Sequence[Component] = COMPONENTS) -> dict[str, tuple[int, int]]:
    """Components behind what this code needs: name -> (have, need)."""
    return {
        c.name: (versions.get(c.name, -1), c.required_version)
        for c in components
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

VECTOR_AVAILABLE_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') AS installed,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') AS available
"""
NO_PGVECTOR = ("store.index is configured but this PostgreSQL has no pgvector extension (vector): "
               "install pgvector on the server, or remove store.index")
