from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pg import PgServer


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    yield server
    server.close()


@pytest.fixture
def fresh_db(pg_server: PgServer) -> Iterator[str]:
    """A new, empty database for one test (conninfo), dropped afterwards."""
    with pg_server.database() as conninfo:
        yield conninfo


@pytest.fixture
def migrated_db(fresh_db: str) -> str:
    """A new database with the schema applied by the migration job's own code."""
    from migrate.runner import Options, run

    run(Options(conninfo=fresh_db))
    return fresh_db
