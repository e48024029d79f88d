"""A server out of connection slots (``max_connections``): 503 with Retry-After, never a 500, and
``langgraph_db_connections_refused_total{reason="too_many_connections"}`` counts the refusals."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from migrate.runner import Options, run
from service.db import with_params
from service.embedded import EmbeddedPostgres
from tests.support.load import Load
from tests.support.service import ServiceProcess
from tests.support.services import scrape

MAX_CONNECTIONS = 12


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


@pytest.fixture
def small_server() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="lgpg-small-")) / "pgdata",
                              settings={"max_connections": str(MAX_CONNECTIONS), "superuser_reserved_connections": "0",
                                        "fsync": "off", "synchronous_commit": "off"})
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def refused(pod: ServiceProcess) -> float:
    samples = scrape(pod.url + "/metrics").get("langgraph_db_connections_refused_total", [])
    return sum(v for labels, v in samples if labels.get("reason") == "too_many_connections")


def fill(conninfo: str) -> list[psycopg.Connection[object]]:
    """Take every free connection slot; return the connections (the server refuses the next)."""
    held: list[psycopg.Connection[object]] = []
    error = ""
    try:
        while len(held) < MAX_CONNECTIONS:
            held.append(psycopg.connect(conninfo, autocommit=True))
    except psycopg.OperationalError as exc:
        error = str(exc)
    if "too many clients" not in error:
        raise AssertionError(f"the server did not fill up: {error!r}")
    return held


def test_should_answer_503_and_count_refusals_when_the_server_is_full(small_server: EmbeddedPostgres) -> None:
    with psycopg.connect(small_server.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE budget")
    conninfo = with_params(small_server.url(), dbname="budget")
    run(Options(conninfo=conninfo))
    pod = ServiceProcess(conninfo, DB_POOL_MIN_SIZE="2", DB_POOL_MAX_SIZE="8", DB_POOL_TIMEOUT="2").start()
    held: list[psycopg.Connection[object]] = []
    try:
        assert refused(pod) == 0  # the series exists before anything was refused
        held = fill(conninfo)  # the pod keeps its 2 connections; it cannot grow
        load = Load([pod.url], workers=6).start()
        try:
            wait_until(lambda: refused(pod) > 0 and load.ok_count() >= 10,
                       "the pool is refused more connections while requests queue for its two")
            full = len(load.calls)
            # A second pod starting now gets no connection at all: not ready, and 503 for requests.
            late = ServiceProcess(conninfo, DB_POOL_TIMEOUT="2").start(wait=None)
            try:
                late.wait_for("/ready", status=503, timeout=60)
                answer = httpx.post(late.url + "/threads", json={}, timeout=30)
                late_refused = refused(late)
            finally:
                late.stop()
            for c in held:
                c.close()
            held = []
            wait_until(lambda: load.ok_count() >= 30, "serving once connections are free again")
        finally:
            load.stop()
        failures = load.failed()
        print(f"\nserver full (max_connections {MAX_CONNECTIONS}): {len(load.calls)} requests, {len(failures)} "
              f"failed (statuses {sorted({c.status for c in failures})}), {refused(pod):g} connections refused; "
              f"a pod started meanwhile answered {answer.status_code} and counted {late_refused:g} refusals")
        assert full > 0
        for call in failures:  # requests queued for the pool's two connections; some may time out
            assert call.status == 503 and call.retry_after, call
        assert answer.status_code == 503 and answer.headers.get("retry-after"), answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert late_refused > 0
        assert load.lost(pod.url) == []
        assert "Traceback" not in pod.logs()
    finally:
        for c in held:
            c.close()
        pod.stop()
