from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.support.pgbouncer import pgbouncer
from tests.support.service import ServiceProcess


@pytest.fixture(params=["direct", "pgbouncer"])
def two_pods(request: pytest.FixtureRequest, migrated_db: str) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two service processes on two ports over one migrated database, directly or through
    PgBouncer in transaction pooling mode (PGBOUNCER=true)."""
    with ExitStack() as stack:
        conninfo, env = migrated_db, {}
        if request.param == "pgbouncer":
            conninfo, env = stack.enter_context(pgbouncer(migrated_db)), {"PGBOUNCER": "true"}
        a, b = ServiceProcess(conninfo, **env), ServiceProcess(conninfo, **env)
        stack.callback(a.stop)
        stack.callback(b.stop)
        a.start(wait=None)
        b.start(wait=None)
        a.wait_for("/ready")
        b.wait_for("/ready")
        yield a, b
