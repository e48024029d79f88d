"""Auth filters in SQL (service.auth.filters) against a real PostgreSQL: the same rows as the Python test.

Every filter of the table is run both ways over the same metadata rows: compile_filter's SQL
(parameters only) and matches() in Python must pick exactly the same rows. Keys and values that
look like SQL stay data; malformed filters are refused, never half-applied.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from service.auth.filters import InvalidFilter, clause, compile_filter, matches, named

ROWS: list[dict[str, Any]] = [
    {"owner": "alice"},
    {"owner": "bob"},
    {"owner": "alice", "team": ["red", "blue"]},
    {"owner": "carol", "team": ["blue"], "level": 3},
    {"owner": {"id": "alice"}},
    {"owner": "alice'; DROP TABLE t; --"},
    {"it's": "x", "team": "red"},
    {},
]
FILTERS: list[dict[str, Any]] = [
    {"owner": "alice"},
    {"owner": {"$eq": "alice"}},
    {"owner": {"$eq": {"id": "alice"}}},
    {"team": {"$contains": "blue"}},
    {"team": {"$contains": ["red", "blue"]}},
    {"team": "red"},
    {"level": 3},
    {"owner": "alice", "team": {"$contains": "red"}},
    {"$or": [{"owner": "bob"}, {"owner": "carol"}]},
    {"$or": [{"owner": "alice", "team": {"$contains": "blue"}}, {"level": 3}]},
    {"$and": [{"owner": "alice"}, {"$or": [{"team": {"$contains": "red"}}, {"team": {"$contains": "x"}}]}]},
    {"owner": "alice'; DROP TABLE t; --"},
    {"it's": "x"},
    {"missing": None},
    {},
]


@pytest.fixture
def conn(fresh_db: str) -> Any:
    with psycopg.connect(fresh_db, autocommit=True, row_factory=dict_row) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, metadata jsonb NOT NULL)")
        for i, row in enumerate(ROWS):
            c.execute("INSERT INTO t VALUES (%s, %s)", (i, Jsonb(row)))
        yield c


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: repr(f)[:60])
def test_should_pick_the_rows_python_picks(conn: Any, filters: dict[str, Any]) -> None:
    predicate = compile_filter(filters, "t.metadata")
    rows = conn.execute(f"SELECT id FROM t WHERE {predicate.sql} ORDER BY id", predicate.params).fetchall()
    in_sql = [r["id"] for r in rows]
    in_python = [i for i, row in enumerate(ROWS) if matches(filters, row)]
    assert in_sql == in_python
    where, params = named(predicate)
    again = conn.execute(f"SELECT id FROM t WHERE {where} ORDER BY id", params).fetchall()
    assert [r["id"] for r in again] == in_sql
    extra, positional = clause(filters, "t.metadata")
    assert [r["id"] for r in conn.execute(f"SELECT id FROM t WHERE TRUE{extra} ORDER BY id", positional)] == in_sql
    assert conn.execute("SELECT count(*) AS n FROM t").fetchone()["n"] == len(ROWS)  # nothing was executed


def test_should_pick_the_owners_rows_only(conn: Any) -> None:
    predicate = compile_filter({"owner": "alice"}, "t.metadata")
    ids = [r["id"] for r in conn.execute(f"SELECT id FROM t WHERE {predicate.sql} ORDER BY id", predicate.params)]
    assert ids == [0, 2]


@pytest.mark.parametrize("bad", [
    {"owner": {"$ne": "alice"}}, {"owner": {"$eq": "a", "$contains": "b"}}, {"$or": [{"owner": "a"}]},
    {"$or": "owner"}, {"$nor": [{"a": 1}, {"b": 2}]},
    {"$or": [{"$or": [{"$or": [{"a": 1}, {"a": 2}]}, {"a": 3}]}, {"a": 4}]},
])
def test_should_refuse_what_is_not_a_filter(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidFilter):
        compile_filter(bad, "t.metadata")
    with pytest.raises(InvalidFilter):
        matches(bad, {"a": 1, "owner": "alice"})
