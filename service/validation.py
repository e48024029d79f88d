"""Input the database cannot store is refused up front with 422, never found out as a 500.

PostgreSQL's text and jsonb reject NUL characters, no UTF-8 encoding exists for unpaired
surrogates (JSON's "\\udb9c" escapes decode to them), and integers past 64 bits have no JSON
encoding the database accepts. Deep nesting is refused too, so that no
walk over a request's JSON, here or in a graph, runs out of stack.
"""

from __future__ import annotations

from typing import Any

from service.errors import Unprocessable

MAX_DEPTH = 64


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise Unprocessable(f"{where}: text may not contain NUL (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Unprocessable(f"{where}: text is not valid Unicode (an unpaired surrogate)") from None


def storable(value: Any, where: str) -> None:
    """Raise Unprocessable unless ``value`` can be stored as jsonb (and is not nested too deeply)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Unprocessable(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, int) and not isinstance(item, bool) and not -(2**63) <= item < 2**64:
            raise Unprocessable(f"{where}: integer out of the 64-bit range")
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(str(key), where)
                stack.append((child, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
