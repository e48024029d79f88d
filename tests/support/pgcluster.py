"""A primary and a streaming standby of Debian's PostgreSQL 15, on loopback, for failover tests.

The primary is initialised with ``initdb``, the standby cloned from it with ``pg_basebackup -R``
(so it streams from the primary); both run in temporary directories on free ports. With
``synchronous=True`` the primary waits for the standby's flush before a COMMIT returns
(``synchronous_standby_names`` names the standby's ``cluster_name``), so an acknowledged write
is on both. The standby's own ``synchronous_standby_names`` stays empty, as a cluster manager
(Patroni) sets it after a failover: otherwise the promoted server would wait for a standby that
does not exist.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from service.db import with_params
from service.embedded import EmbeddedPostgres
from tests.support.tcpproxy import TcpProxy

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
STANDBY_NAME = "standby1"


def require_pg15() -> None:
    if not (PG15_BIN / "postgres").exists() or not (PG15_BIN / "pg_basebackup").exists():
        import pytest

        pytest.skip(f"LOUD SKIP: Debian's PostgreSQL 15 is not installed in {PG15_BIN} (make tools installs it)")


class Cluster:
    """A primary and one standby; ``url()`` is the multi-host URL an HA cluster documents."""

    def __init__(self, *, synchronous: bool = True, bin_dir: Path = PG15_BIN, link_proxy: bool = False) -> None:
        """``link_proxy``: the standby streams through a TCP proxy (``self.link``) that can stall."""
        self.root = Path(tempfile.mkdtemp(prefix="lgpg-cluster-"))
        self.synchronous = synchronous
        self.link: TcpProxy | None = None
        self._link_proxy = link_proxy
        common = {"max_connections": "100", "fsync": "off", "full_page_writes": "on", "wal_level": "replica",
                  "max_wal_senders": "5", "wal_keep_size": "128MB", "hot_standby": "on",
                  "deadlock_timeout": "200ms"}
        primary = {**common, "synchronous_commit": "on",
                   "synchronous_standby_names": STANDBY_NAME if synchronous else "''",
                   "cluster_name": "primary1"}
        self.primary = EmbeddedPostgres(self.root / "primary", bin_dir=bin_dir, settings=primary)
        self.standby = EmbeddedPostgres(self.root / "standby", bin_dir=bin_dir,
                                        settings={**common, "cluster_name": STANDBY_NAME,
                                                  "synchronous_standby_names": "''"})

    def start(self) -> Cluster:
        self.primary.start()
        data = self.standby.data_dir
        data.mkdir(parents=True)
        if self.standby._user is not None:  # running as root: the server runs as its own user
            self.standby._prepare_for_system_user()
        self.standby._run(["pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
                           "-D", str(data), "-X", "stream", "-R", "-c", "fast", "--no-sync"])
        if self._link_proxy:
            self.link = TcpProxy("127.0.0.1", self.primary.port).start()
            auto = data / "postgresql.auto.conf"
            auto.write_text(auto.read_text().replace(f"port={self.primary.port}", f"port={self.link.port}"))
        self.standby.start()
        self.wait_streaming()
        return self

    # -- connection strings --------------------------------------------------------------------
    def url(self, dbname: str = "postgres", target_session_attrs: str | None = "read-write") -> str:
        """``host=127.0.0.1,127.0.0.1 port=<primary>,<standby>``: the primary first, then the standby."""
        params = {"host": "127.0.0.1,127.0.0.1", "port": f"{self.primary.port},{self.standby.port}",
                  "user": "postgres", "dbname": dbname}
        if target_session_attrs:
            params["target_session_attrs"] = target_session_attrs
        return with_params("", **params)

    def create_database(self) -> str:
        name = f"f_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.primary.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.wait_replayed()
        return name

    # -- observation ---------------------------------------------------------------------------
    def wait_streaming(self, timeout: float = 60) -> None:
        """Until the primary sees the standby streaming (and, if synchronous, as its sync standby)."""
        want = "sync" if self.synchronous else "async"
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            with psycopg.connect(self.primary.url(), autocommit=True) as conn:
                last = conn.execute("SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
                                    (STANDBY_NAME,)).fetchone()
            if last == ("streaming", want):
                return
            time.sleep(0.1)
        raise AssertionError(f"the standby is not streaming ({want}) after {timeout}s: {last}")

    def wait_replayed(self, timeout: float = 60) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary.url(), autocommit=True) as conn:
            lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg.connect(self.standby.url(), autocommit=True) as conn:
                done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()
            if done and done[0]:
                return
            time.sleep(0.1)
        raise AssertionError(f"the standby did not replay up to {lsn} in {timeout}s")

    def replay_lag_bytes(self) -> int:
        """WAL the standby has received but not replayed yet."""
        with psycopg.connect(self.standby.url(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint"
                               ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def standby_in_recovery(self) -> bool:
        with psycopg.connect(self.standby.url(), autocommit=True) as conn:
            return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])  # type: ignore[index]

    # -- faults --------------------------------------------------------------------------------
    def pause_replay(self) -> None:
        with psycopg.connect(self.standby.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def stop_primary(self, mode: str = "fast") -> None:
        self.primary.stop(mode)

    def promote(self) -> None:
        """``pg_ctl promote -w``: returns once the standby accepts writes (paused replay ends first)."""
        self.standby._run(["pg_ctl", "promote", "-w", "-t", "120", "-D", str(self.standby.data_dir)])

    def close(self) -> None:
        for server in (self.standby, self.primary):
            server.stop("immediate")
        if self.link is not None:
            self.link.close()
        shutil.rmtree(self.root, ignore_errors=True)
