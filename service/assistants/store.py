"""Assistant rows: the current version of each assistant and every version it has had.

PostgreSQL holds them for every pod (``assistants`` and ``assistant_versions``, created by
``python -m migrate``); ``CHECKPOINTER=memory`` keeps them in the process. Each configured graph
has a system assistant whose id is the graph id's UUIDv5, as the LangGraph Server derives it.
Serving pods never run DDL, but each inserts the system assistants the first time it touches the
table, with ``ON CONFLICT DO NOTHING``: pods starting together insert each row once, and one that
an operator patched keeps its changes. One that was deleted comes back when a pod next starts,
as on the LangGraph Server.

Reads are scoped to the configured graphs: an assistant of a graph this deployment does not
serve is not found, as the LangGraph Server hides it.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service.auth.filters import clause, compile_filter, matches, named
from service.errors import Conflict, NotFound
from service.graphs import GraphEntry, assistant_id_for

SYSTEM_METADATA: dict[str, Any] = {"created_by": "system"}
SORT_COLUMNS: dict[str, str] = {
    "assistant_id": "assistant_id", "graph_id": "lower(graph_id)", "name": "lower(name)",
    "created_at": "created_at", "updated_at": "updated_at",
}
FIELDS = ("assistant_id", "graph_id", "name", "description", "config", "context", "created_at", "updated_at",
          "metadata", "version")


@dataclass(frozen=True)
class Assistant:
    assistant_id: str
    graph_id: str
    name: str
    description: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    updated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "assistant_id": self.assistant_id, "graph_id": self.graph_id, "name": self.name,
            "description": self.description, "config": self.config, "context": self.context,
            "metadata": self.metadata, "version": self.version,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class Change:
    """A patch: every field None is kept from the current version (metadata is merged into it)."""

    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None

    def apply(self, current: Assistant, version: int) -> Assistant:
        # The LangGraph Server's rules: an empty config keeps the current one; metadata merges.
        return replace(
            current,
            graph_id=self.graph_id if self.graph_id is not None else current.graph_id,
            config=self.config if self.config else current.config,
            context=self.context if self.context is not None else current.context,
            metadata={**current.metadata, **(self.metadata or {})},
            name=self.name if self.name is not None else current.name,
            description=self.description if self.description is not None else current.description,
            version=version,
        )


@dataclass(frozen=True)
class Filters:
    graph_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] | None = None
    # What the caller's auth handler allows (service.auth.filters), over the assistant's metadata.
    auth: dict[str, Any] | None = None


AuthFilter = dict[str, Any] | None


class AssistantStore(Protocol):
    graph_ids: list[str]

    async def create(self, assistant: Assistant, if_exists: Literal["raise", "do_nothing"],
                     auth: AuthFilter = None) -> Assistant: ...
    async def get(self, assistant_id: str, auth: AuthFilter = None) -> Assistant: ...
    async def for_run(self, assistant_id: str, fresh: bool = False) -> tuple[Assistant, str | None]: ...
    async def patch(self, assistant_id: str, change: Change, auth: AuthFilter = None) -> Assistant: ...
    async def delete(self, assistant_id: str, auth: AuthFilter = None) -> None: ...
    async def versions(self, assistant_id: str, metadata: dict[str, Any] | None, limit: int,
                       offset: int) -> list[Assistant]: ...
    async def set_latest(self, assistant_id: str, version: int, auth: AuthFilter = None) -> Assistant: ...
    async def search(self, filters: Filters, limit: int, offset: int, sort_by: str | None,
                     sort_order: str | None) -> tuple[list[Assistant], bool]: ...
    async def count(self, filters: Filters) -> int: ...


def system_assistants(graphs: dict[str, GraphEntry]) -> list[Assistant]:
    """One per graph: named after the graph (its own name when it has one), as the LangGraph Server does."""
    out = []
    for graph_id, entry in graphs.items():
        name = getattr(entry.graph, "name", None)
        out.append(Assistant(assistant_id=assistant_id_for(graph_id), graph_id=graph_id,
                             name=name if name and name != "LangGraph" else graph_id,
                             metadata=dict(SYSTEM_METADATA)))
    return out


def parse_id(assistant_id: str, graphs: Iterable[str]) -> str:
    """A graph id stands for its system assistant; anything else that is no UUID names nothing (404)."""
    if assistant_id in graphs:
        return assistant_id_for(assistant_id)
    try:
        return str(uuid.UUID(assistant_id))
    except ValueError:
        raise NotFound(f"assistant {assistant_id[:100]!r} not found (neither a UUID nor a graph id)") from None


# -- PostgreSQL -----------------------------------------------------------------------------------

_COLUMNS = ("assistant_id::text AS assistant_id, graph_id, name, description, config, context, metadata, "
            "version, created_at, updated_at")

SEED_SYSTEM_SQL = """
WITH wanted AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(graph_ids)s::text[], %(names)s::text[]) AS w(assistant_id, graph_id, name)
), created AS (
    INSERT INTO assistants (assistant_id, graph_id, name, metadata)
    SELECT assistant_id, graph_id, name, %(metadata)s FROM wanted
    ON CONFLICT (assistant_id) DO NOTHING
    RETURNING assistant_id, graph_id, name, description, config, context, metadata, created_at
)
INSERT INTO assistant_versions (assistant_id, version, graph_id, name, description, config, context, metadata,
                                created_at)
SELECT assistant_id, 1, graph_id, name, description, config, context, metadata, created_at FROM created
"""

CREATE_SQL = f"""
WITH created AS (
    INSERT INTO assistants (assistant_id, graph_id, name, description, config, context, metadata)
    VALUES (%(assistant_id)s, %(graph_id)s, %(name)s, %(description)s, %(config)s, %(context)s, %(metadata)s)
    ON CONFLICT (assistant_id) DO NOTHING
    RETURNING *
), first_version AS (
    INSERT INTO assistant_versions (assistant_id, version, graph_id, name, description, config, context,
                                    metadata, created_at)
    SELECT assistant_id, 1, graph_id, name, description, config, context, metadata, created_at FROM created
)
SELECT {_COLUMNS} FROM created
"""

GET_SQL = f"SELECT {_COLUMNS} FROM assistants WHERE assistant_id = %s AND graph_id = ANY(%s)"
# With the row's revision: its xmin, new with every update of the row and every insert of its id.
REVISION_SQL = f"SELECT {_COLUMNS}, xmin::text AS revision FROM assistants WHERE assistant_id = %s " \
               "AND graph_id = ANY(%s)"
# Any graph: an existing id answers 409 on create even when its graph is not served here.
GET_ANY_SQL = f"SELECT {_COLUMNS} FROM assistants WHERE assistant_id = %s"
LOCK_SQL = GET_SQL + " FOR UPDATE"
NEXT_VERSION_SQL = "SELECT coalesce(max(version), 0) + 1 AS v FROM assistant_versions WHERE assistant_id = %s"
INSERT_VERSION_SQL = """
INSERT INTO assistant_versions (assistant_id, version, graph_id, name, description, config, context, metadata)
VALUES (%(assistant_id)s, %(version)s, %(graph_id)s, %(name)s, %(description)s, %(config)s, %(context)s,
        %(metadata)s)
"""
UPDATE_SQL = f"""
UPDATE assistants SET graph_id = %(graph_id)s, name = %(name)s, description = %(description)s,
    config = %(config)s, context = %(context)s, metadata = %(metadata)s, version = %(version)s, updated_at = now()
WHERE assistant_id = %(assistant_id)s
RETURNING {_COLUMNS}
"""
DELETE_SQL = "DELETE FROM assistants WHERE assistant_id = %s AND graph_id = ANY(%s) RETURNING assistant_id"
VERSIONS_SQL = """
SELECT v.assistant_id::text AS assistant_id, v.graph_id, v.name, v.description, v.config, v.context, v.metadata,
       v.version, v.created_at, v.created_at AS updated_at
FROM assistant_versions v JOIN assistants a ON a.assistant_id = v.assistant_id
WHERE v.assistant_id = %s AND a.graph_id = ANY(%s) AND v.metadata @> %s
ORDER BY v.version DESC LIMIT %s OFFSET %s
"""
SET_LATEST_SQL = """
UPDATE assistants a SET graph_id = v.graph_id, name = v.name, description = v.description, config = v.config,
    context = v.context, metadata = v.metadata, version = v.version, updated_at = now()
FROM assistant_versions v
WHERE a.assistant_id = %s AND a.graph_id = ANY(%s) AND v.assistant_id = a.assistant_id AND v.version = %s
RETURNING a.assistant_id::text AS assistant_id, a.graph_id, a.name, a.description, a.config, a.context,
          a.metadata, a.version, a.created_at, a.updated_at
"""
# Search and count: one WHERE with every filter, each switched off by a NULL parameter.
_WHERE = """
WHERE graph_id = ANY(%(scope)s)
  AND (%(graph_id)s::text IS NULL OR graph_id = %(graph_id)s)
  AND (%(name)s::text IS NULL OR strpos(lower(name), lower(%(name)s)) > 0)
  AND (%(metadata)s::jsonb IS NULL OR metadata @> %(metadata)s)
"""
SEARCH_SQL = f"SELECT {_COLUMNS} FROM assistants {_WHERE} ORDER BY {{column}} {{order}}, assistant_id " \
             "LIMIT %(limit)s OFFSET %(offset)s"
COUNT_SQL = f"SELECT count(*) AS n FROM assistants {_WHERE}"


def _row(row: dict[str, Any]) -> Assistant:
    return Assistant(
        assistant_id=row["assistant_id"], graph_id=row["graph_id"], name=row["name"],
        description=row["description"], config=row["config"], context=row["context"], metadata=row["metadata"],
        version=row["version"], created_at=row["created_at"], updated_at=row["updated_at"],
    )


def _params(a: Assistant) -> dict[str, Any]:
    return {"assistant_id": a.assistant_id, "graph_id": a.graph_id, "name": a.name, "description": a.description,
            "config": Jsonb(a.config), "context": Jsonb(a.context), "metadata": Jsonb(a.metadata),
            "version": a.version}


def _order(sort_by: str | None, sort_order: str | None) -> tuple[str, str]:
    column = SORT_COLUMNS.get(sort_by or "created_at", "created_at")
    return column, "ASC" if (sort_order or "").lower() == "asc" else "DESC"


class _Seeded:
    """Inserts the system assistants once per process, before the first use of the table.

    Callers arriving while an attempt runs share it (and its failure: with the database away they
    all answer 503 at once instead of retrying one after another); the next call tries again.
    """

    def __init__(self, graphs: dict[str, GraphEntry]) -> None:
        self.system = system_assistants(graphs)
        self.graph_ids = list(graphs)
        self._done = False
        self._attempt: asyncio.Future[None] | None = None

    async def _seed(self) -> None:
        raise NotImplementedError

    async def ready(self) -> None:
        if self._done:
            return
        if self._attempt is None:
            self._attempt = asyncio.ensure_future(self._seed())
        attempt = self._attempt
        try:
            await asyncio.shield(attempt)  # a caller that goes away does not cancel it for the others
        except BaseException:
            if self._attempt is attempt and attempt.done():
                self._attempt = None
            raise
        self._done = True


class PostgresAssistantStore(_Seeded):
    #: Assistants remembered for run creation (when full, the one read longest ago goes).
    REVISIONS_KEPT = 1024

    def __init__(self, pool: AsyncConnectionPool[Any], graphs: dict[str, GraphEntry]) -> None:
        super().__init__(graphs)
        self.pool = pool
        self._revisions: dict[str, tuple[Assistant, str]] = {}

    async def _seed(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(SEED_SYSTEM_SQL, {
                "ids": [a.assistant_id for a in self.system], "graph_ids": [a.graph_id for a in self.system],
                "names": [a.name for a in self.system], "metadata": Jsonb(SYSTEM_METADATA)})

    async def create(self, assistant: Assistant, if_exists: Literal["raise", "do_nothing"],
                     auth: AuthFilter = None) -> Assistant:
        await self.ready()
        async with self.pool.connection() as conn:
            cur = await conn.execute(CREATE_SQL, _params(assistant))
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(GET_ANY_SQL, (assistant.assistant_id,))
                row = await cur.fetchone()
                if row is None:  # deleted in between: nothing to return, nothing created
                    raise Conflict(f"assistant {assistant.assistant_id} was being replaced; retry")
                if if_exists == "raise" or (auth and not matches(auth, row["metadata"])):
                    raise Conflict(f"assistant {assistant.assistant_id} already exists")
        return _row(row)

    async def get(self, assistant_id: str, auth: AuthFilter = None) -> Assistant:
        await self.ready()
        where, params = clause(auth, "metadata")
        async with self.pool.connection() as conn:
            cur = await conn.execute(GET_SQL + where, (assistant_id, self.graph_ids, *params))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"assistant {assistant_id} not found")
        return _row(row)

    async def for_run(self, assistant_id: str, fresh: bool = False) -> tuple[Assistant, str | None]:
        """The assistant a run is created with, and the revision of its row that it was read at.

        From this process's memory unless ``fresh``: another pod may have changed the row since,
        so the run queue's submit checks the revision in the statement that creates the run
        (service.runs.queue, ``StaleAssistant``), and the caller reads it again when it changed.
        A run costs no statement of its own for its assistant, and never starts with an old one.
        """
        if not fresh and (hit := self._revisions.get(assistant_id)) is not None:
            return hit
        await self.ready()
        async with self.pool.connection() as conn:
            cur = await conn.execute(REVISION_SQL, (assistant_id, self.graph_ids))
            row = await cur.fetchone()
        self._revisions.pop(assistant_id, None)
        if row is None:
            raise NotFound(f"assistant {assistant_id} not found")
        if len(self._revisions) >= self.REVISIONS_KEPT:
            del self._revisions[next(iter(self._revisions))]
        found = self._revisions[assistant_id] = (_row(row), row["revision"])
        return found

    async def patch(self, assistant_id: str, change: Change, auth: AuthFilter = None) -> Assistant:
        await self.ready()
        where, params = clause(auth, "metadata")
        # The row lock orders concurrent patches, so each takes the next version number.
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(GET_SQL + where + " FOR UPDATE", (assistant_id, self.graph_ids, *params))
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"assistant {assistant_id} not found")
            cur = await conn.execute(NEXT_VERSION_SQL, (assistant_id,))
            version = await cur.fetchone()
            assert version is not None
            updated = change.apply(_row(row), int(version["v"]))
            await conn.execute(INSERT_VERSION_SQL, _params(updated))
            cur = await conn.execute(UPDATE_SQL, _params(updated))
            row = await cur.fetchone()
        assert row is not None
        return _row(row)

    async def delete(self, assistant_id: str, auth: AuthFilter = None) -> None:
        await self.ready()
        where, params = clause(auth, "metadata")
        async with self.pool.connection() as conn:
            cur = await conn.execute(DELETE_SQL.replace(" RETURNING", where + " RETURNING"),
                                     (assistant_id, self.graph_ids, *params))
            if await cur.fetchone() is None:
                raise NotFound(f"assistant {assistant_id} not found")

    async def versions(self, assistant_id: str, metadata: dict[str, Any] | None, limit: int,
                       offset: int) -> list[Assistant]:
        await self.ready()
        async with self.pool.connection() as conn:
            cur = await conn.execute(VERSIONS_SQL, (assistant_id, self.graph_ids, Jsonb(metadata or {}), limit,
                                                    offset))
            rows = await cur.fetchall()
        return [_row(r) for r in rows]

    async def set_latest(self, assistant_id: str, version: int, auth: AuthFilter = None) -> Assistant:
        await self.ready()
        await self.get(assistant_id, auth)  # 404 for the assistant itself first (or one the caller may not change)
        async with self.pool.connection() as conn:
            cur = await conn.execute(SET_LATEST_SQL, (assistant_id, self.graph_ids, version))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"version {version} of assistant {assistant_id} not found")
        return _row(row)

    def _filter_params(self, filters: Filters) -> tuple[str, dict[str, Any]]:
        params = {"scope": self.graph_ids, "graph_id": filters.graph_id, "name": filters.name,
                  "metadata": Jsonb(filters.metadata) if filters.metadata else None}
        if not filters.auth:
            return "", params
        where, auth_params = named(compile_filter(filters.auth, "metadata"))
        return f"  AND ({where})\n", {**params, **auth_params}

    async def search(self, filters: Filters, limit: int, offset: int, sort_by: str | None,
                     sort_order: str | None) -> tuple[list[Assistant], bool]:
        await self.ready()
        column, order = _order(sort_by, sort_order)
        where, params = self._filter_params(filters)
        params = {**params, "limit": limit + 1, "offset": offset}
        sql = SEARCH_SQL.replace(_WHERE, _WHERE + where)
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql.format(column=column, order=order), params)  # whitelisted
            rows = await cur.fetchall()
        return [_row(r) for r in rows[:limit]], len(rows) > limit

    async def count(self, filters: Filters) -> int:
        await self.ready()
        where, params = self._filter_params(filters)
        async with self.pool.connection() as conn:
            cur = await conn.execute(COUNT_SQL + where, params)
            row = await cur.fetchone()
        return int(row["n"]) if row else 0


# -- in memory (CHECKPOINTER=memory: local experiments and benchmarks only) -----------------------

def _contains(container: Any, part: Any) -> bool:
    if isinstance(part, dict):
        return isinstance(container, dict) and all(k in container and _contains(container[k], v)
                                                   for k, v in part.items())
    if isinstance(part, list):
        return isinstance(container, list) and all(any(_contains(c, p) for c in container) for p in part)
    return bool(container == part)


class MemoryAssistantStore(_Seeded):
    def __init__(self, graphs: dict[str, GraphEntry]) -> None:
        super().__init__(graphs)
        self.rows: dict[str, Assistant] = {}
        self.history: dict[str, dict[int, Assistant]] = {}

    async def _seed(self) -> None:
        for assistant in self.system:
            self._insert(assistant)

    def _insert(self, assistant: Assistant) -> bool:
        if assistant.assistant_id in self.rows:
            return False
        now = dt.datetime.now(dt.UTC)
        assistant = replace(copy.deepcopy(assistant), version=1, created_at=now, updated_at=now)
        self.rows[assistant.assistant_id] = assistant
        self.history[assistant.assistant_id] = {1: assistant}
        return True

    def _get(self, assistant_id: str, auth: AuthFilter = None) -> Assistant:
        found = self.rows.get(assistant_id)
        if found is None or found.graph_id not in self.graph_ids or (auth and not matches(auth, found.metadata)):
            raise NotFound(f"assistant {assistant_id} not found")
        return found

    async def create(self, assistant: Assistant, if_exists: Literal["raise", "do_nothing"],
                     auth: AuthFilter = None) -> Assistant:
        await self.ready()
        if not self._insert(assistant) and (
                if_exists == "raise" or (auth and not matches(auth, self.rows[assistant.assistant_id].metadata))):
            raise Conflict(f"assistant {assistant.assistant_id} already exists")
        return self.rows[assistant.assistant_id]

    async def get(self, assistant_id: str, auth: AuthFilter = None) -> Assistant:
        await self.ready()
        return self._get(assistant_id, auth)

    async def for_run(self, assistant_id: str, fresh: bool = False) -> tuple[Assistant, str | None]:
        return await self.get(assistant_id), None  # one process: always the current row

    async def patch(self, assistant_id: str, change: Change, auth: AuthFilter = None) -> Assistant:
        await self.ready()
        current = self._get(assistant_id, auth)
        version = max(self.history[assistant_id]) + 1
        updated = replace(change.apply(current, version), updated_at=dt.datetime.now(dt.UTC))
        self.history[assistant_id][version] = replace(updated, created_at=updated.updated_at)
        self.rows[assistant_id] = updated
        return updated

    async def delete(self, assistant_id: str, auth: AuthFilter = None) -> None:
        await self.ready()
        self._get(assistant_id, auth)
        del self.rows[assistant_id]
        del self.history[assistant_id]

    async def versions(self, assistant_id: str, metadata: dict[str, Any] | None, limit: int,
                       offset: int) -> list[Assistant]:
        await self.ready()
        if assistant_id not in self.rows or self.rows[assistant_id].graph_id not in self.graph_ids:
            return []
        found = [replace(v, updated_at=v.created_at)
                 for _, v in sorted(self.history[assistant_id].items(), reverse=True)
                 if _contains(v.metadata, metadata or {})]
        return found[offset:offset + limit]

    async def set_latest(self, assistant_id: str, version: int, auth: AuthFilter = None) -> Assistant:
        await self.ready()
        current = self._get(assistant_id, auth)
        chosen = self.history[assistant_id].get(version)
        if chosen is None:
            raise NotFound(f"version {version} of assistant {assistant_id} not found")
        self.rows[assistant_id] = replace(chosen, created_at=current.created_at, updated_at=dt.datetime.now(dt.UTC))
        return self.rows[assistant_id]

    def _match(self, filters: Filters) -> list[Assistant]:
        return [a for a in self.rows.values()
                if a.graph_id in self.graph_ids
                and (filters.graph_id is None or a.graph_id == filters.graph_id)
                and (filters.name is None or filters.name.lower() in a.name.lower())
                and (not filters.metadata or _contains(a.metadata, filters.metadata))
                and (not filters.auth or matches(filters.auth, a.metadata))]

    async def search(self, filters: Filters, limit: int, offset: int, sort_by: str | None,
                     sort_order: str | None) -> tuple[list[Assistant], bool]:
        await self.ready()
        key = sort_by if sort_by in SORT_COLUMNS else "created_at"
        _, order = _order(sort_by, sort_order)

        def sort_key(a: Assistant) -> tuple[Any, str]:
            value = getattr(a, key)
            return (value.lower() if isinstance(value, str) and key in ("name", "graph_id") else value,
                    a.assistant_id)

        rows = sorted(self._match(filters), key=sort_key, reverse=order == "DESC")
        return rows[offset:offset + limit], len(rows) > offset + limit

    async def count(self, filters: Filters) -> int:
        await self.ready()
        return len(self._match(filters))


def select_fields(body: dict[str, Any], select: Sequence[str] | None) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k in select} if select else body
