"""Database URLs and connections shared by the service and the migration job.

Accepts libpq URLs (``postgresql://``, ``postgres://``), SQLAlchemy-style URLs
(``postgresql+asyncpg://``, ``postgresql+psycopg2://``, ``postgresql+psycopg://``) and libpq
``key=value`` strings, and turns them into one libpq conninfo that psycopg understands. Every
form may list several hosts (``postgresql://u@db1:5432,db2:5432/app?target_session_attrs=read-write``,
``host=db1,db2 port=5432,5432``), as high-availability clusters document: each host is tried in
turn, ``connect_timeout`` applies to each, and ``target_session_attrs`` picks the primary.
Whenever a URL is shown to a person it goes through :func:`redact` first.
"""

from __future__ import annotations

import enum
import random
import re
import select
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

_SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "postgresql+psycopg2": "postgresql",
    "postgresql+psycopg3": "postgresql",
    "postgresql+asyncpg": "postgresql",
    "postgresql+pg8000": "postgresql",
}
# asyncpg spells sslmode as ssl; SQLAlchemy URLs copied from asyncpg apps carry it.
_QUERY_RENAMES = {"ssl": "sslmode"}
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


class InvalidDatabaseURL(ValueError):
    """The database URL cannot be parsed; the message never contains the password."""


def redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (URL or key=value form)."""
    if "://" not in url:
        return _KV_PASSWORD.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^@/]*@", "//***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}" if ":" in userinfo else f"{user}@{hostinfo}"
    query = "&".join(
        f"{k}=***" if k.lower() == "password" else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&\s]*", re.IGNORECASE)
_TEXT_KV_PASSWORD = re.compile(r"(?<![?&\w])(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def scrub(text: str) -> str:
    """Redact every password in free text: URLs' userinfo and query, and key=value pairs."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _QUERY_PASSWORD.sub(r"\1***", text)
    return _TEXT_KV_PASSWORD.sub(r"\1***", text)


def normalize_url(url: str) -> str:
    """Turn any accepted URL form into a libpq conninfo string, or raise InvalidDatabaseURL."""
    url = url.strip()
    if not url:
        raise InvalidDatabaseURL("database URL is empty")
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if scheme not in _SCHEMES:
            raise InvalidDatabaseURL(
                f"unsupported database URL scheme {scheme!r} in {redact(url)} "
                f"(use postgresql://, postgres:// or postgresql+<driver>://)"
            )
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise InvalidDatabaseURL(f"cannot parse database URL {redact(url)}: {exc}") from None
        # The netloc goes to libpq as it is: it may list several hosts (db1:5432,db2:5432), which
        # urllib's single-host view (parts.port) cannot read.
        query = urlencode(
            [(_QUERY_RENAMES.get(k, k), v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        )
        url = urlunsplit(("postgresql", parts.netloc, parts.path, query, parts.fragment))
    try:
        conninfo = make_conninfo(url)
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        detail = str(exc).split("\n", 1)[0]
        raise InvalidDatabaseURL(f"cannot parse database URL {redact(url)}: {detail}") from None
    problem = _check_hosts(params)
    if problem:
        raise InvalidDatabaseURL(f"cannot parse database URL {redact(url)}: {problem}")
    return conninfo


_TARGET_SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")


def _check_hosts(params: dict[str, Any]) -> str | None:
    """What libpq would refuse only when connecting: bad ports, ports not matching the hosts."""
    hosts = str(params.get("host") or params.get("hostaddr") or "").split(",")
    ports = str(params.get("port") or "").split(",")
    for port in ports:
        if port.strip() and not (port.strip().isdigit() and 0 < int(port) < 65536):
            return f"port {port.strip()!r} is not a number from 1 to 65535"
    if len(ports) > 1 and len(ports) != len(hosts):
        return f"{len(ports)} ports for {len(hosts)} hosts (give one port, or one per host)"
    tsa = params.get("target_session_attrs")
    if tsa is not None and str(tsa) not in _TARGET_SESSION_ATTRS:
        return f"target_session_attrs must be one of {', '.join(_TARGET_SESSION_ATTRS)}, got {str(tsa)!r}"
    return None


def hosts(conninfo: str) -> list[tuple[str, str]]:
    """The (host, port) pairs a conninfo lists, in the order libpq tries them ("" for a default)."""
    params = conninfo_to_dict(conninfo)
    names = str(params.get("host") or params.get("hostaddr") or "").split(",")
    ports = str(params.get("port") or "").split(",")
    if len(ports) == 1:
        ports = ports * len(names)
    return list(zip(names, ports, strict=False))


def describe(conninfo: str) -> str:
    """A short, password-free description (``user@host:port[,host:port...]/dbname``) for logs."""
    params = conninfo_to_dict(conninfo)
    where = ",".join(f"{_show_host(h)}:{p or 5432}" for h, p in hosts(conninfo))
    return f"{params.get('user', '')}@{where}/{params.get('dbname', '')}"


def _show_host(host: str) -> str:
    host = host or "localhost"
    return f"[{host}]" if host.startswith("/") or ":" in host else host


def with_params(conninfo: str, **params: str) -> str:
    """Return ``conninfo`` with extra libpq parameters (application_name, options, ...)."""
    return make_conninfo(conninfo, **params)


def to_url(conninfo: str) -> str:
    """Render a conninfo as a postgresql:// URL (for child processes and documentation).

    Several hosts become ``host1:port1,host2:port2``; socket directories are percent-encoded.
    """
    p = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    pairs = hosts(conninfo) if p.get("host") else []
    user = quote(p.pop("user", ""), safe="")
    password = p.pop("password", None)
    p.pop("host", None)
    port = p.pop("port", "")
    dbname = quote(p.pop("dbname", ""), safe="")
    auth = f"{user}:{quote(password, safe='')}@" if password is not None else (f"{user}@" if user else "")
    if pairs:
        where = ",".join(
            (quote(h, safe="") if h.startswith("/") else f"[{h}]" if ":" in h else h) + (f":{pt}" if pt else "")
            for h, pt in pairs)
    else:
        where = f":{port}" if port else ""
    return urlunsplit(("postgresql", auth + where, "/" + dbname, urlencode(p), ""))


class Failure(enum.Enum):
    """Why a connection or statement failed, in the terms an operator acts on."""

    UNREACHABLE = "unreachable"
    STARTING = "starting"  # server starting up, shutting down, or database not accepting connections
    TOO_MANY = "too_many_connections"  # max_connections reached (SQLSTATE 53300, "too many clients")
    STANDBY = "standby"  # a read-only standby where a primary is needed (target_session_attrs, 25006)
    AUTHENTICATION = "authentication"
    NO_DATABASE = "no_database"
    PRIVILEGE = "privilege"
    POOLER = "pooler"  # a transaction pooler (PgBouncer) refused a session-level startup parameter
    OTHER = "other"


# libpq's words when target_session_attrs=read-write (or primary) found no server it accepts.
_STANDBY_MESSAGES = ("session is read-only", "server is in hot standby mode")


def classify(exc: BaseException) -> Failure:
    """Map a psycopg error to a :class:`Failure` by SQLSTATE, falling back to the message."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, pg_errors.InsufficientPrivilege) or sqlstate == "42501":
        return Failure.PRIVILEGE
    if sqlstate in ("28P01", "28000"):
        return Failure.AUTHENTICATION
    if sqlstate == "3D000":
        return Failure.NO_DATABASE
    if sqlstate == "53300":
        return Failure.TOO_MANY
    if sqlstate == "25006":
        return Failure.STANDBY
    if sqlstate in ("57P03", "55000"):
        return Failure.STARTING
    if isinstance(exc, psycopg.OperationalError):
        text = str(exc)
        if ("too many clients" in text or "too many connections for" in text
                or "remaining connection slots are reserved" in text):
            return Failure.TOO_MANY
        if any(m in text for m in _STANDBY_MESSAGES):
            return Failure.STANDBY
        if "unsupported startup parameter" in text:
            return Failure.POOLER
        if "password authentication failed" in text or "no password supplied" in text:
            return Failure.AUTHENTICATION
        if "does not exist" in text and "database" in text:
            return Failure.NO_DATABASE
        if "not currently accepting connections" in text or "the database system is" in text:
            return Failure.STARTING
        return Failure.UNREACHABLE
    return Failure.OTHER


def first_line(exc: BaseException) -> str:
    """The first meaningful line of a psycopg error, without libpq's prefixes."""
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[-1] if lines and lines[0].startswith("connection failed:") and len(lines) > 1 else lines[0]
    return re.sub(r"^(connection failed:\s*|FATAL:\s*)", "", line)


_TRANSIENT = (Failure.UNREACHABLE, Failure.STARTING, Failure.TOO_MANY, Failure.STANDBY)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a first connection while a database is still starting."""

    deadline_seconds: float = 30.0
    initial_delay: float = 0.05
    max_delay: float = 0.25


def connect(
    conninfo: str,
    *,
    retry: RetryPolicy,
    on_retry: Callable[[Failure, BaseException, int], None] | None = None,
    **kwargs: object,
) -> psycopg.Connection[object]:
    """Open one connection, retrying transient failures until ``retry.deadline_seconds``.

    Authentication, missing-database and privilege errors are final and raised at once. A
    full server (too many connections) and, with ``target_session_attrs``, a cluster whose
    primary is not there yet (a failover in progress) are retried like a starting server.
    """
    started = time.monotonic()
    delay = retry.initial_delay
    attempt = 0
    while True:
        attempt += 1
        remaining = retry.deadline_seconds - (time.monotonic() - started)
        try:
            timeout = max(1, min(10, int(remaining)))
            return psycopg.connect(conninfo, connect_timeout=timeout, **kwargs)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            failure = classify(exc)
            if failure not in _TRANSIENT:
                raise
            remaining = retry.deadline_seconds - (time.monotonic() - started)
            if remaining <= 0:
                raise
            if on_retry is not None:
                on_retry(failure, exc, attempt)
            time.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))  # noqa: S311 - jitter
            delay = min(retry.max_delay, delay * 2)


def application_name(role: str) -> str:
    import socket

    return f"{role}:{socket.gethostname()}"[:63]


def pool_kwargs(*, pgbouncer: bool) -> dict[str, object]:
    """Connection arguments for the service's pool.

    Through PgBouncer in transaction mode, server-side prepared statements and startup
    ``options`` are not available, so statements are not prepared and the statement timeout is
    set with ``SET`` instead (every client of the pool uses the same value).
    """
    from psycopg.rows import dict_row

    kwargs: dict[str, object] = {"autocommit": True, "row_factory": dict_row}
    kwargs["prepare_threshold"] = None if pgbouncer else 0
    return kwargs


def pool_conninfo(conninfo: str, *, pgbouncer: bool, statement_timeout: float, connect_timeout: float) -> str:
    params: dict[str, str] = {
        "application_name": application_name("langgraph-service"),
        "connect_timeout": str(max(1, int(connect_timeout))),
    }
    if not pgbouncer and statement_timeout > 0:
        params["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
    return with_params(conninfo, **params)


# Pool health checks. Checking every checkout costs a round trip per database call; instead a
# connection is checked when it is taken again after a pause (the time in which a restart,
# failover or idle timeout may have broken it). A broken connection that was used moments ago
# fails its statement (answered 503) and the pool discards it on return. The time is noted at
# checkout, not on return: a return callback would send every return through the pool's worker.
IDLE_CHECK_SECONDS = 2.0
_LAST_CHECKOUT: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()


async def check_if_idle(conn: psycopg.AsyncConnection[object]) -> None:
    """The pool's ``check``: a round trip for connections idle a while, or with bytes waiting.

    An idle connection has nothing to read; when its socket is readable, the server closed it
    (a restart, ``pg_terminate_backend``) or sent a notice, and the full check sorts it out.
    That costs one non-blocking poll, not a round trip. The round trip waits at most the
    connection class's ``check_timeout`` (a server that stopped answering must not hold a
    checkout past the pool timeout), then the pool discards the connection and takes another.
    """
    from psycopg_pool import AsyncConnectionPool

    now = time.monotonic()
    last = _LAST_CHECKOUT.get(conn)
    _LAST_CHECKOUT[conn] = now
    if last is None or now - last > IDLE_CHECK_SECONDS or _readable(conn):
        check_timeout = getattr(conn, "check_timeout", None)
        if isinstance(conn, TimedConnection) and check_timeout:
            conn.io_timeout, saved = check_timeout, conn.io_timeout
            try:
                await AsyncConnectionPool.check_connection(conn)
            finally:
                conn.io_timeout = saved
        else:
            await AsyncConnectionPool.check_connection(conn)


def _readable(conn: psycopg.AsyncConnection[object]) -> bool:
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


class DatabaseTimeout(psycopg.OperationalError):
    """The database did not answer within the client-side I/O timeout (a stalled network)."""


class ReplicationNotConfirmed(psycopg.OperationalError):
    """The primary committed locally but gave up waiting for its synchronous standby.

    When the wait is cancelled (``pg_cancel_backend``, a cancel request), PostgreSQL ends it with a
    WARNING and reports success: the write may be lost at a failover. It is not acknowledged.
    """


# SyncRepWaitForLSN's WARNING when a COMMIT stops waiting for the synchronous standby.
_SYNC_REP_CANCELLED = "wait for synchronous replication"


class TimedConnection(psycopg.AsyncConnection[Any]):
    """An AsyncConnection that waits at most ``io_timeout`` seconds for the server to answer.

    ``statement_timeout`` bounds a slow query on the server; nothing bounds a network that
    stops delivering packets (TCP keeps the socket open for many minutes). Every query, fetch
    and commit goes through ``wait``; past ``io_timeout`` the connection is closed (its state is
    unknown, so the pool discards it) and DatabaseTimeout is raised, which the service answers
    with 503.

    A COMMIT that a synchronous standby does not confirm (the standby went away or was promoted
    while this primary still runs) waits with no server-side limit: PostgreSQL turns
    ``statement_timeout`` off before COMMIT. ``io_timeout`` bounds it, and the write, committed on
    this server only, is not acknowledged. When the wait is cancelled instead, the server says
    success with a WARNING; that is raised as ReplicationNotConfirmed (503) too. Either way the
    connection is closed, so the pool reconnects and ``target_session_attrs`` finds the primary.
    """

    io_timeout: float | None = None
    check_timeout: float | None = None
    _unconfirmed = False

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
        conn = await super().connect(conninfo, **kwargs)
        conn.add_notice_handler(_SyncRepWatch(conn))
        return conn

    async def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        try:
            result = await super().wait(gen, interval=interval, timeout=timeout or self.io_timeout)
        except pg_errors._WaitTimeout:
            self.pgconn.finish()
            raise DatabaseTimeout(f"no answer from the database within {timeout or self.io_timeout:g}s") from None
        if self._unconfirmed:
            self._unconfirmed = False
            self.pgconn.finish()
            raise ReplicationNotConfirmed("the synchronous standby did not confirm the commit")
        return result


class _SyncRepWatch:
    """A notice handler that marks its connection when a synchronous replication wait was cancelled."""

    __slots__ = ("_conn",)

    def __init__(self, conn: TimedConnection) -> None:
        self._conn = weakref.ref(conn)

    def __call__(self, diag: pg_errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING" and _SYNC_REP_CANCELLED in (diag.message_primary or ""):
            conn = self._conn()
            if conn is not None:
                conn._unconfirmed = True


def timed_connection_class(io_timeout: float, check_timeout: float | None = None) -> type[TimedConnection]:
    return type("TimedConnection", (TimedConnection,), {"io_timeout": io_timeout or None,
                                                        "check_timeout": check_timeout or None})


def use_fast_json() -> None:
    """(De)serialise jsonb with orjson instead of the standard library (process-wide).

    Checkpoints, metadata and thread values are jsonb; the stock json module is the largest
    client-side cost of a checkpoint write after the round trip itself. The stored jsonb is the
    same: PostgreSQL keeps jsonb in its own binary form, whatever the client's text looked like.
    """
    import orjson
    from psycopg.types.json import set_json_dumps, set_json_loads

    def dumps(obj: object) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)

    set_json_dumps(dumps)
    set_json_loads(orjson.loads)
