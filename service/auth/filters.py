"""What an ``@auth.on`` handler returns, as SQL over a metadata column (and as a Python test).

The LangGraph Server's filter language: ``{"key": value}`` and ``{"key": {"$eq": value}}`` (the
metadata value equals ``value``), ``{"key": {"$contains": v}}`` (the metadata value is a list that
holds ``v``, or every item of ``v`` when it is a list), ``{"$or": [f1, f2, ...]}`` and
``{"$and": [...]}`` with at most two levels of nesting. Keys and values always travel as query
parameters; only the column expression (a constant of the caller) is part of the SQL text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from service.errors import ServiceError

MAX_DEPTH = 2


class InvalidFilter(ServiceError):
    """The auth handler returned something that is not a filter (the handler's bug, not the caller's)."""

    status = 500
    title = "Internal Server Error"


@dataclass(frozen=True)
class Predicate:
    """A boolean SQL expression with ``%s`` placeholders and its parameters, in order."""

    sql: str
    params: tuple[Any, ...]


def _operator(key: str, value: Any) -> tuple[str, Any]:
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise InvalidFilter(f"auth filter for {key!r} must be a value or an object with one operator")
        op, operand = next(iter(value.items()))
        if op not in ("$eq", "$contains"):
            raise InvalidFilter("auth filter operators are $eq and $contains")
        return op, operand
    return "$eq", value


def _branches(value: Any, op: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(b, Mapping) for b in value):
        raise InvalidFilter(f"auth filter {op} must be a list of at least two filter objects")
    return value


def compile_filter(filters: Mapping[str, Any], column: str, _depth: int = 0) -> Predicate:
    """``filters`` as a predicate over the jsonb ``column`` (e.g. ``t.metadata``); TRUE when empty."""
    parts: list[str] = []
    params: list[Any] = []
    for key, value in filters.items():
        if key in ("$or", "$and"):
            if _depth >= MAX_DEPTH:
                raise InvalidFilter(f"auth filters nest at most {MAX_DEPTH} levels")
            compiled = [compile_filter(b, column, _depth + 1) for b in _branches(value, key)]
            joiner = " OR " if key == "$or" else " AND "
            parts.append("(" + joiner.join(f"({c.sql})" for c in compiled) + ")")
            for c in compiled:
                params.extend(c.params)
            continue
        if not isinstance(key, str) or key.startswith("$"):
            raise InvalidFilter("auth filter keys are metadata keys, $or or $and")
        op, operand = _operator(key, value)
        if op == "$eq":
            parts.append(f"({column} -> %s) = %s")
            params.extend((key, Jsonb(operand)))
        else:
            parts.append(f"({column} -> %s) @> %s")
            params.extend((key, Jsonb(operand if isinstance(operand, list) else [operand])))
    return Predicate(" AND ".join(parts) or "TRUE", tuple(params))


def matches(filters: Mapping[str, Any], metadata: Mapping[str, Any], _depth: int = 0) -> bool:
    """The same test in Python, for a row already read (what ``compile_filter`` says in SQL)."""
    for key, value in filters.items():
        if key in ("$or", "$and"):
            if _depth >= MAX_DEPTH:
                raise InvalidFilter(f"auth filters nest at most {MAX_DEPTH} levels")
            results = [matches(b, metadata, _depth + 1) for b in _branches(value, key)]
            if not (any(results) if key == "$or" else all(results)):
                return False
            continue
        if not isinstance(key, str) or key.startswith("$"):
            raise InvalidFilter("auth filter keys are metadata keys, $or or $and")
        op, operand = _operator(key, value)
        if key not in metadata:
            return False
        have = metadata[key]
        if op == "$eq":
            if have != operand:
                return False
        else:
            wanted = operand if isinstance(operand, list) else [operand]
            if not isinstance(have, list) or not all(w in have for w in wanted):
                return False
    return True


def named(predicate: Predicate, prefix: str = "auth") -> tuple[str, dict[str, Any]]:
    """The predicate with named placeholders, for statements that use ``%(name)s`` parameters."""
    pieces = predicate.sql.split("%s")
    names = [f"{prefix}_{i}" for i in range(len(pieces) - 1)]
    sql = pieces[0] + "".join(f"%({n})s" + piece for n, piece in zip(names, pieces[1:], strict=True))
    return sql, dict(zip(names, predicate.params, strict=True))


def clause(filters: Mapping[str, Any] | None, column: str) -> tuple[str, tuple[Any, ...]]:
    """`` AND <predicate>`` (positional parameters), or nothing when there is no filter."""
    if not filters:
        return "", ()
    p = compile_filter(filters, column)
    return f" AND ({p.sql})", p.params
