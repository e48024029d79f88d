"""Multi-host URLs against a real primary and standby (Debian's PostgreSQL 15).

The migration job and the prune job take every URL form libpq does, find the primary with
``target_session_attrs=read-write`` whichever host comes first, and refuse a standby with one
line and their documented exit code (migrate 12, prune 5).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from service import schema
from service.db import ReplicationNotConfirmed, timed_connection_class, to_url, with_params
from tests.support.pgcluster import Cluster, require_pg15
from tests.support.race import ROOT, migrate_cmd, python_env


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require_pg15()
    c = Cluster().start()
    try:
        yield c
    finally:
        c.close()


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=python_env(**env), cwd=ROOT, capture_output=True, text=True, timeout=180,
                          check=False)


def _standby_first(cluster: Cluster, dbname: str, attrs: str | None) -> str:
    """Both hosts, the standby listed first: only target_session_attrs gets libpq to the primary."""
    params = {"host": "127.0.0.1,127.0.0.1", "port": f"{cluster.standby.port},{cluster.primary.port}",
              "user": "postgres", "dbname": dbname}
    if attrs:
        params["target_session_attrs"] = attrs
    return with_params("", **params)


def _versions(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        return schema.read_versions(conn)


class TestMigrate:
    @pytest.mark.parametrize("form", ["url", "keyvalue"])
    def test_should_migrate_the_primary_through_a_multi_host_url_with_the_standby_first(
        self, cluster: Cluster, form: str
    ) -> None:
        dbname = cluster.create_database()
        conninfo = _standby_first(cluster, dbname, "read-write")
        url = to_url(conninfo) if form == "url" else conninfo
        if form == "url":
            assert url.startswith("postgresql://postgres@127.0.0.1:") and url.count(",") == 1
        proc = _run(migrate_cmd(), MIGRATE_DATABASE_URL=url)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert schema.missing(_versions(cluster.primary.url(dbname))) == {}
        cluster.wait_replayed()
        assert schema.missing(_versions(cluster.standby.url(dbname))) == {}  # replicated, not applied there

    @pytest.mark.parametrize("where", ["standby only", "standby first, any session"])
    def test_should_refuse_a_standby_with_exit_12_and_one_line(self, cluster: Cluster, where: str) -> None:
        dbname = cluster.create_database()
        conninfo = (cluster.standby.url(dbname) if where == "standby only"
                    else _standby_first(cluster, dbname, "any"))
        proc = _run(migrate_cmd(), MIGRATE_DATABASE_URL=to_url(conninfo))
        assert proc.returncode == 12, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "read-only standby" in lines[0] and "Traceback" not in proc.stderr
        assert "target_session_attrs=read-write" in lines[0]
        assert set(_versions(cluster.primary.url(dbname)).values()) == {-1}  # nothing applied anywhere

    def test_should_check_a_standby_without_refusing_it(self, cluster: Cluster) -> None:
        # --check only reads: the schema wait of the server pods may go to any host.
        dbname = cluster.create_database()
        assert _run(migrate_cmd(), MIGRATE_DATABASE_URL=cluster.primary.url(dbname)).returncode == 0
        cluster.wait_replayed()
        proc = _run(migrate_cmd("--check"), MIGRATE_DATABASE_URL=cluster.standby.url(dbname))
        assert proc.returncode == 0, proc.stderr[-2000:]

    def test_should_give_up_with_exit_12_when_no_host_is_read_write(self, cluster: Cluster) -> None:
        dbname = cluster.create_database()
        only_standby = with_params(cluster.standby.url(dbname), target_session_attrs="read-write")
        proc = _run(migrate_cmd("--connect-timeout", "1"), MIGRATE_DATABASE_URL=only_standby)
        assert proc.returncode == 12, proc.stderr[-2000:]
        assert len(proc.stderr.strip().splitlines()) == 1


class TestPrune:
    def _prune(self, url: str) -> subprocess.CompletedProcess[str]:
        return _run([sys.executable, "-m", "service.prune", "--older-than-days", "30"], DATABASE_URL=url)

    def test_should_prune_through_a_multi_host_url(self, cluster: Cluster) -> None:
        dbname = cluster.create_database()
        assert _run(migrate_cmd(), MIGRATE_DATABASE_URL=cluster.primary.url(dbname)).returncode == 0
        with psycopg.connect(cluster.primary.url(dbname), autocommit=True) as conn:
            conn.execute("INSERT INTO threads (thread_id, updated_at) VALUES "
                         "(gen_random_uuid()::text, now() - interval '90 days'), (gen_random_uuid()::text, now())")
        proc = self._prune(to_url(_standby_first(cluster, dbname, "read-write")))
        assert proc.returncode == 0, proc.stderr[-2000:]
        with psycopg.connect(cluster.primary.url(dbname)) as conn:
            assert conn.execute("SELECT count(*) FROM threads").fetchone() == (1,)

    def test_should_refuse_a_standby_with_exit_5_and_one_line(self, cluster: Cluster) -> None:
        dbname = cluster.create_database()
        assert _run(migrate_cmd(), MIGRATE_DATABASE_URL=cluster.primary.url(dbname)).returncode == 0
        cluster.wait_replayed()
        proc = self._prune(to_url(cluster.standby.url(dbname)))
        assert proc.returncode == 5, proc.stderr[-2000:]
        assert len(proc.stderr.strip().splitlines()) == 1 and "standby" in proc.stderr
        assert conninfo_to_dict(cluster.standby.url(dbname))["port"] == str(cluster.standby.port)


class TestUnconfirmedCommit:
    """A COMMIT whose wait for the synchronous standby is cancelled reports success with a WARNING."""

    @staticmethod
    async def _insert_then_cancel(connection_class: type[psycopg.AsyncConnection[Any]], c: Cluster,
                                  dbname: str) -> BaseException | None:
        conn = await connection_class.connect(c.primary.url(dbname), autocommit=True)
        pid = conn.info.backend_pid
        insert = asyncio.create_task(conn.execute("INSERT INTO t VALUES (1)"))
        admin = await psycopg.AsyncConnection.connect(c.primary.url(dbname), autocommit=True)
        try:
            deadline = time.monotonic() + 60
            while True:  # until the backend waits for the standby
                cur = await admin.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,))
                row = await cur.fetchone()
                if row is not None and row[0] == "SyncRep":
                    break
                assert time.monotonic() < deadline, row
                await asyncio.sleep(0.05)
            await admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
            try:
                await insert
            except psycopg.Error as exc:
                return exc
            return None
        finally:
            await admin.close()
            await conn.close()

    def test_should_raise_instead_of_reporting_success(self) -> None:
        require_pg15()
        c = Cluster(synchronous=True).start()
        try:
            dbname = c.create_database()
            with psycopg.connect(c.primary.url(dbname), autocommit=True) as conn:
                conn.execute("CREATE TABLE t (x int)")
            c.standby.stop()  # commits now wait for it
            error = asyncio.run(self._insert_then_cancel(timed_connection_class(60), c, dbname))
            assert isinstance(error, ReplicationNotConfirmed), error
            # The control: a plain connection takes the cancelled wait for a successful INSERT.
            assert asyncio.run(self._insert_then_cancel(psycopg.AsyncConnection, c, dbname)) is None
            with psycopg.connect(c.primary.url(dbname)) as conn:
                assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)  # committed locally, both
        finally:
            c.close()
