"""Debian's PgBouncer in transaction pooling mode, in front of the test PostgreSQL."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from service.db import with_params
from tests.support.services import free_port

BINARY = "/usr/sbin/pgbouncer"
RUN_AS = "embedded_postgres"  # PgBouncer refuses to run as root


@contextmanager
def pgbouncer(conninfo: str, *, pool_mode: str = "transaction", pool_size: int = 10) -> Iterator[str]:
    """Start PgBouncer for ``conninfo``'s server and database; yield a conninfo through it."""
    if not os.access(BINARY, os.X_OK):
        pytest.skip("LOUD SKIP: pgbouncer is not installed (scripts/install-tools.sh installs it)")
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    (work / "userlist.txt").write_text(f'"{params["user"]}" "{params.get("password", "")}"\n')
    (work / "pgbouncer.ini").write_text(f"""
[databases]
{params["dbname"]} = host={params["host"]} port={params["port"]} dbname={params["dbname"]}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {work}/userlist.txt
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
logfile = {work}/pgbouncer.log
pidfile = {work}/pgbouncer.pid
""")
    user = pwd.getpwnam(RUN_AS) if os.geteuid() == 0 else None
    if user is not None:
        for path in (work, work / "userlist.txt", work / "pgbouncer.ini"):
            os.chown(path, user.pw_uid, user.pw_gid)
    argv = [BINARY, str(work / "pgbouncer.ini")]
    proc = subprocess.Popen(argv, user=user.pw_name if user else None, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    through = with_params(conninfo, host="127.0.0.1", port=str(port))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(through, connect_timeout=2, prepare_threshold=None) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (work / "pgbouncer.log").read_text() if (work / "pgbouncer.log").exists() else ""
                    raise RuntimeError(f"pgbouncer did not start:\n{log[-2000:]}") from None
                time.sleep(0.1)
        yield through
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
