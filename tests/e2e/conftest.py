from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.service import ServiceProcess


@pytest.fixture
def two_pods(migrated_db: str) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two service processes on two ports over one migrated database."""
    a, b = ServiceProcess(migrated_db), ServiceProcess(migrated_db)
    a.start(wait=None)
    b.start(wait=None)
    try:
        a.wait_for("/ready")
        b.wait_for("/ready")
        yield a, b
    finally:
        a.stop()
        b.stop()
