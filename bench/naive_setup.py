"""The two patterns the migration job replaces, for the race test and bench/migrate_race.py.

``setup``:         every process calls ``AsyncPostgresSaver.setup()`` and ``AsyncPostgresStore.setup()``.
``blocking-lock``: the same, guarded by a blocking ``pg_advisory_lock`` on the same connection.

Exit 0 on success, 1 on any error (printed as one line).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from service import db

LOCK_KEY = 4242


async def naive(conninfo: str, mode: str) -> None:
    async with await AsyncConnection.connect(
        conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row
    ) as conn:
        if mode == "blocking-lock":
            await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        await AsyncPostgresSaver(conn).setup()  # type: ignore[arg-type]
        await AsyncPostgresStore(conn).setup()  # type: ignore[arg-type]
        if mode == "blocking-lock":
            await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["setup", "blocking-lock"])
    parser.add_argument("conninfo")
    args = parser.parse_args()
    try:
        asyncio.run(naive(args.conninfo, args.mode))
    except Exception as exc:
        print(f"naive {args.mode} failed: {type(exc).__name__}: {db.first_line(exc)}", flush=True)
        return 1
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # as python -m migrate does: no interpreter teardown, a fair comparison
