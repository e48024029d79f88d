"""A real PostgreSQL for tests: the embedded server by default, any server via DATABASE_URL.

``TEST_PG_BIN_DIR`` picks other server binaries for the embedded server (CI also runs the
integration tests on Debian's PostgreSQL 15 with ``/usr/lib/postgresql/15/bin``).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from service.db import normalize_url, with_params
from service.embedded import EmbeddedPostgres

TEST_SETTINGS = {
    "max_connections": "300",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "deadlock_timeout": "200ms",
    "log_lock_waits": "on",
}


# The admin password of the embedded test server; tests assert it never appears in any output.
# A server whose WAL writer nearly sleeps (it flushes by itself every 10 s) and that writes no WAL in
# the background: what is on disk right after a commit is what that commit flushed.
QUIET_WAL_SETTINGS = {"wal_writer_delay": "10000ms", "wal_writer_flush_after": "1GB", "autovacuum": "off",
                      "checkpoint_timeout": "1h"}


def wal_flushed(admin: str) -> bool:
    """Whether the WAL is on disk as far as it was written (a read: it writes no WAL itself)."""
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()").fetchone()
    return bool(row and row[0])


ADMIN_PASSWORD = "s3cret-admin-pw-" + uuid.uuid4().hex[:8]


class PgServer:
    """An admin connection string plus, for the embedded server, control over its process."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        external = os.environ.get("DATABASE_URL", "").strip()
        self.embedded: EmbeddedPostgres | None = None
        if external:
            self.admin = normalize_url(external)
        else:
            bin_dir = os.environ.get("TEST_PG_BIN_DIR")
            data = Path(tempfile.mkdtemp(prefix="lgpg-test-")) / "pgdata"
            self.embedded = EmbeddedPostgres(
                data, bin_dir=Path(bin_dir) if bin_dir else None,
                settings=TEST_SETTINGS if settings is None else settings,
                password=ADMIN_PASSWORD,
            )
            self.admin = self.embedded.start()

    def version(self) -> int:
        with psycopg.connect(self.admin) as conn:
            return int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return with_params(self.admin, dbname=name)

    def drop_database(self, conninfo: str) -> None:
        name = psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"]
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))

    def allow_connections(self, conninfo: str, allow: bool) -> None:
        name = psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"]
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(str(name)), sql.SQL("true" if allow else "false")))

    @contextmanager
    def database(self, prefix: str = "t") -> Iterator[str]:
        conninfo = self.create_database(prefix)
        try:
            yield conninfo
        finally:
            self.drop_database(conninfo)

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.destroy()
