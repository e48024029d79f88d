"""Apply the schema once, behind one advisory lock, however many copies start at once.

Why the lock is taken the way it is: ``CREATE INDEX CONCURRENTLY`` waits until every
transaction that holds an older snapshot has finished. A copy blocked inside
``SELECT pg_advisory_lock(k)`` holds such a snapshot while it waits for the lock holder,
and the holder (building the index) waits for it: PostgreSQL reports ``deadlock detected``.
So waiters never block inside a statement: each attempt is one ``pg_try_advisory_lock``
that returns at once, and between attempts the session is idle, holding no snapshot.

Every statement runs on the one session that holds the lock. DDL runs with a
``lock_timeout`` and is retried with backoff, so a migration during live traffic never
queues requests behind an ``ACCESS EXCLUSIVE`` lock for longer than that timeout.
"""

from __future__ import annotations

import enum
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row

from service import db, schema
from service.logging import get_logger

log = get_logger("migrate")

# "LGMIGRAT" as a big-endian 64-bit integer. In pg_locks it shows as locktype 'advisory',
# classid = 1279741257, objid = 1196573012, objsubid = 1 (decimal 5496446847353504084).
DEFAULT_LOCK_KEY = int.from_bytes(b"LGMIGRAT", "big")


class ExitCode(enum.IntEnum):
    """The job's exit codes; each failure an operator must tell apart has its own."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    INVALID_URL = 3
    UNREACHABLE = 4
    AUTHENTICATION = 5
    NO_DATABASE = 6
    PRIVILEGE = 7
    LOCK_TIMEOUT = 8
    BEHIND = 9
    STEP_FAILED = 10
    POOLER = 11
    STANDBY = 12


_FAILURE_CODES = {
    db.Failure.UNREACHABLE: ExitCode.UNREACHABLE,
    db.Failure.STARTING: ExitCode.UNREACHABLE,
    db.Failure.TOO_MANY: ExitCode.UNREACHABLE,
    db.Failure.STANDBY: ExitCode.STANDBY,
    db.Failure.AUTHENTICATION: ExitCode.AUTHENTICATION,
    db.Failure.NO_DATABASE: ExitCode.NO_DATABASE,
    db.Failure.PRIVILEGE: ExitCode.PRIVILEGE,
    db.Failure.POOLER: ExitCode.POOLER,
}
# Errors worth another try of the same DDL step: a lock wait that ran into lock_timeout, or a
# deadlock with live traffic. Anything else is a real failure.
_RETRYABLE = (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected, pg_errors.QueryCanceled)


@dataclass(frozen=True)
class Options:
    conninfo: str
    lock_key: int = DEFAULT_LOCK_KEY
    lock_timeout: float = 30.0
    ddl_lock_timeout: float = 5.0
    ddl_retries: int = 10
    connect_timeout: float = 30.0
    check: bool = False
    dry_run: bool = False
    allow_pooler: bool = False
    # What the deployment needs: schema.components(store index) (the vector steps only with an index).
    components: tuple[schema.Component, ...] = schema.COMPONENTS


@dataclass(frozen=True)
class Step:
    component: schema.Component
    version: int

    @property
    def statement(self) -> str:
        return self.component.steps[self.version]

    @property
    def label(self) -> str:
        return f"{self.component.name}:v{self.version}"


@dataclass
class Report:
    """What one run did; logged as the summary line and pushed as metrics."""

    outcome: str = "failed"
    versions_before: dict[str, int] = field(default_factory=dict)
    versions_after: dict[str, int] = field(default_factory=dict)
    steps_applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    indexes_repaired: list[str] = field(default_factory=list)
    invalid_indexes: list[str] = field(default_factory=list)
    ddl_retries: int = 0
    lock_wait_seconds: float = 0.0
    duration_seconds: float = 0.0
    required: dict[str, int] = field(default_factory=schema.required_versions)

    def fields(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "versions_before": self.versions_before,
            "versions_after": self.versions_after,
            "required": self.required,
            "steps_applied": self.steps_applied,
            "steps_applied_count": len(self.steps_applied),
            "pending": self.pending,
            "indexes_repaired": self.indexes_repaired,
            "invalid_indexes": self.invalid_indexes,
            "ddl_retries": self.ddl_retries,
            "lock_wait_seconds": round(self.lock_wait_seconds, 4),
            "duration_seconds": round(self.duration_seconds, 4),
        }


class MigrationError(Exception):
    """A failure with an exit code and one line for the operator."""

    def __init__(self, code: ExitCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def pending_steps(versions: dict[str, int], components: tuple[schema.Component, ...] = schema.COMPONENTS
                  ) -> list[Step]:
    return [
        Step(component, version)
        for component in components
        for version in range(versions.get(component.name, -1) + 1, len(component.steps))
    ]


def application_name() -> str:
    return f"langgraph-migrate:{socket.gethostname()}"[:63]


def run(options: Options) -> Report:
    """Run the migration (or --check / --dry-run); raise MigrationError on failure."""
    started = time.monotonic()
    report = Report()
    try:
        with _connect(options) as conn:
            if options.check or options.dry_run:
                _inspect(conn, options, report)
            else:
                _migrate(conn, options, report)
    except MigrationError:
        report.duration_seconds = time.monotonic() - started
        raise
    except psycopg.Error as exc:
        report.duration_seconds = time.monotonic() - started
        failure = db.classify(exc)
        code = _FAILURE_CODES.get(failure, ExitCode.STEP_FAILED)
        raise MigrationError(code, _explain(failure, exc, options.conninfo), report=report) from None
    report.duration_seconds = time.monotonic() - started
    return report


def _connect(options: Options) -> psycopg.Connection[dict[str, Any]]:
    params = {"application_name": application_name()}
    if not (options.check or options.dry_run or options.allow_pooler):
        # PostgreSQL takes session settings in the startup packet; a transaction pooler, whose
        # server connections are shared, refuses them ("unsupported startup parameter"). So this
        # both sets the DDL lock timeout and tells a direct connection from PgBouncer.
        params["options"] = f"-c lock_timeout={int(options.ddl_lock_timeout * 1000)}"
    conninfo = db.with_params(options.conninfo, **params)
    last_logged = [0.0]

    def on_retry(failure: db.Failure, exc: BaseException, attempt: int) -> None:
        now = time.monotonic()
        if attempt == 1 or now - last_logged[0] >= 5:
            last_logged[0] = now
            log.warning("database_not_ready", reason=failure.value, error=db.first_line(exc),
                        attempt=attempt, database=db.describe(options.conninfo))

    try:
        conn = db.connect(
            conninfo, retry=db.RetryPolicy(deadline_seconds=options.connect_timeout),
            on_retry=on_retry, autocommit=True, row_factory=dict_row,
        )
    except psycopg.OperationalError as exc:
        failure = db.classify(exc)
        code = _FAILURE_CODES.get(failure, ExitCode.UNREACHABLE)
        raise MigrationError(code, _explain(failure, exc, options.conninfo)) from None
    if not (options.check or options.dry_run):
        _refuse_standby(conn, options)
    return conn  # type: ignore[return-value]


def _refuse_standby(conn: psycopg.Connection[Any], options: Options) -> None:
    """A standby (in recovery) cannot take DDL: stop with exit 12 before taking any lock.

    libpq lands on a standby when the URL names one, or lists several hosts without
    ``target_session_attrs=read-write``; either way the operator fixes the URL.
    """
    row = conn.execute("SELECT pg_is_in_recovery() AS standby").fetchone()
    if row is not None and row["standby"]:
        conn.close()
        raise MigrationError(ExitCode.STANDBY, _explain(db.Failure.STANDBY, _StandbyServer(), options.conninfo))


class _StandbyServer(Exception):
    def __str__(self) -> str:
        return "pg_is_in_recovery() is true"


def _explain(failure: db.Failure, exc: BaseException, conninfo: str) -> str:
    where = db.describe(conninfo)
    detail = db.first_line(exc)
    prefix = {
        db.Failure.UNREACHABLE: f"cannot reach PostgreSQL at {where}",
        db.Failure.STARTING: f"PostgreSQL at {where} is not accepting connections",
        db.Failure.TOO_MANY: f"PostgreSQL at {where} refused the connection: max_connections reached",
        db.Failure.STANDBY: (f"{where} is a read-only standby, not the primary: point MIGRATE_DATABASE_URL at "
                             "the primary, or list every host with target_session_attrs=read-write"),
        db.Failure.AUTHENTICATION: f"authentication failed for {where}",
        db.Failure.NO_DATABASE: f"database does not exist: {where}",
        db.Failure.PRIVILEGE: f"missing privilege on {where} (the migration role needs CREATE on the schema)",
        db.Failure.POOLER: (f"{where} is a connection pooler such as PgBouncer, not PostgreSQL: the migration "
                            "lock is a session advisory lock, which transaction pooling does not keep; point "
                            "MIGRATE_DATABASE_URL at PostgreSQL directly (or pass --allow-pooler for a pooler "
                            "in session mode)"),
    }.get(failure, f"migration failed on {where}")
    return f"{prefix}: {detail}"


def _inspect(conn: psycopg.Connection[dict[str, Any]], options: Options, report: Report) -> None:
    """--check and --dry-run: read versions and index state; take no lock, change nothing."""
    comps = options.components
    report.required = schema.required_versions(comps)
    report.versions_before = report.versions_after = schema.read_versions(conn, comps)
    report.pending = [s.label for s in pending_steps(report.versions_before, comps)]
    report.invalid_indexes = [s.name for s in _broken_indexes(conn, report.versions_before, comps)]
    if options.dry_run:
        report.outcome = "dry_run"
        for step in pending_steps(report.versions_before, comps):
            log.info("migration_step_pending", step=step.label,
                     statement=" ".join(step.statement.split())[:200])
        return
    gaps = schema.missing(report.versions_before, comps)
    if gaps or report.invalid_indexes:
        report.outcome = "behind"
        problems = []
        if gaps:
            problems.append(schema.describe_missing(gaps))
        if report.invalid_indexes:
            problems.append("invalid or missing indexes: " + ", ".join(report.invalid_indexes))
        raise MigrationError(ExitCode.BEHIND, "schema is behind: " + "; ".join(problems), report=report)
    report.outcome = "current"


def _up_to_date(conn: psycopg.Connection[dict[str, Any]],
                components: tuple[schema.Component, ...] = schema.COMPONENTS) -> dict[str, int] | None:
    """The versions, when the schema needs nothing (every step at or beyond, every index valid)."""
    versions = schema.read_versions(conn, components)
    if schema.missing(versions, components) or _broken_indexes(conn, versions, components):
        return None
    return versions


def _migrate(conn: psycopg.Connection[dict[str, Any]], options: Options, report: Report) -> None:
    # Versions only grow, so a schema that needs nothing now needs nothing under the lock either:
    # copies that start after (or while waiting for) the one that applies the steps finish at once.
    comps = options.components
    report.required = schema.required_versions(comps)
    current = _up_to_date(conn, comps)
    if current is None:
        report.lock_wait_seconds, current = _acquire_lock(conn, options)
    if current is not None:
        report.versions_before = report.versions_after = current
        report.outcome = "current"
        return
    try:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(
            sql.Literal(f"{int(options.ddl_lock_timeout * 1000)}ms")))
        report.versions_before = schema.read_versions(conn, comps)
        pending = pending_steps(report.versions_before, comps)
        if any(step.component.name == schema.VECTOR_COMPONENT for step in pending):
            _require_pgvector(conn, report)
        tables_made: set[str] = set()  # version tables created (IF NOT EXISTS) in this run
        for step in pending:
            _apply(conn, step, options, report, tables_made)
            report.steps_applied.append(step.label)
            log.info("migration_step_applied", step=step.label)
        versions = schema.read_versions(conn, comps)
        for spec in _broken_indexes(conn, versions, comps):
            _with_retries(conn, f"repair {spec.name}", options, report,
                          lambda spec=spec: _rebuild_index(conn, spec))
            report.indexes_repaired.append(spec.name)
            log.warning("migration_index_repaired", index=spec.name, table=spec.table)
        report.versions_after = schema.read_versions(conn, comps)
        left = [s.name for s in _broken_indexes(conn, report.versions_after, comps)]
        gaps = schema.missing(report.versions_after, comps)
        if gaps or left:
            raise MigrationError(ExitCode.STEP_FAILED, "schema still behind after migrating: "
                                 + schema.describe_missing(gaps) + " ".join(left), report=report)
        report.outcome = "applied" if report.steps_applied or report.indexes_repaired else "current"
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (options.lock_key,))


def _acquire_lock(
    conn: psycopg.Connection[dict[str, Any]], options: Options
) -> tuple[float, dict[str, int] | None]:
    """Poll pg_try_advisory_lock until it succeeds, the schema turns current, or --lock-timeout.

    Each attempt is one short autocommit statement; between attempts the session is idle and
    holds no snapshot, so concurrent index builds in the holder's session never wait for us.
    Returns the seconds waited and, when another copy finished the work meanwhile, the versions
    (the lock is then not held).
    """
    started = time.monotonic()
    deadline = started + options.lock_timeout
    delay = 0.02
    logged = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (options.lock_key,)).fetchone()
        if row is not None and row["ok"]:
            return time.monotonic() - started, None
        current = _up_to_date(conn, options.components)
        if current is not None:
            return time.monotonic() - started, current
        now = time.monotonic()
        if now >= deadline:
            holder = _lock_holder(conn, options.lock_key)
            raise MigrationError(
                ExitCode.LOCK_TIMEOUT,
                f"timed out after {options.lock_timeout:g}s waiting for the migration lock "
                f"(key {options.lock_key}) held by " + _describe_holder(holder),
                holder=holder,
            )
        if not logged:
            logged = True
            log.info("migration_lock_waiting", lock_key=options.lock_key,
                     holder=_lock_holder(conn, options.lock_key))
        time.sleep(min(deadline - now, delay * random.uniform(0.5, 1.0)))  # noqa: S311 - jitter
        delay = min(0.5, delay * 2)


_HOLDER_SQL = """
SELECT a.pid, a.application_name, a.usename AS user, a.client_addr::text AS client_addr, a.state,
       round(extract(epoch FROM now() - coalesce(a.query_start, a.backend_start))::numeric, 3)::float
         AS query_age_seconds,
       left(a.query, 200) AS query
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
        SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 1
"""


def _lock_holder(conn: psycopg.Connection[dict[str, Any]], key: int) -> dict[str, Any] | None:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    row = conn.execute(_HOLDER_SQL, (unsigned >> 32, unsigned & 0xFFFF_FFFF)).fetchone()
    return dict(row) if row is not None else None


def _describe_holder(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "a session that has since released it"
    return (f"pid {holder['pid']} (application_name {holder['application_name']!r}, "
            f"state {holder['state']}, query age {holder['query_age_seconds']:.1f}s)")


def _require_pgvector(conn: psycopg.Connection[dict[str, Any]], report: Report) -> None:
    """Fail with one clear line when store.index needs pgvector and the server cannot provide it."""
    row = conn.execute(schema.VECTOR_AVAILABLE_SQL).fetchone()
    if row is None or not (row["installed"] or row["available"]):
        raise MigrationError(ExitCode.STEP_FAILED, schema.NO_PGVECTOR, report=report)


def _apply(conn: psycopg.Connection[dict[str, Any]], step: Step, options: Options, report: Report,
           tables_made: set[str]) -> None:
    component = step.component
    record = sql.SQL("INSERT INTO {} (v) VALUES (%s) ON CONFLICT DO NOTHING").format(
        sql.Identifier(component.table))
    index = schema.index_of(step.statement)

    def attempt() -> None:
        # Once per component and run, not before every step: each DDL statement runs once.
        if not component.creates_own_table and component.table not in tables_made:
            conn.execute(component.version_table_ddl())
            tables_made.add(component.table)
        if index is not None and index.concurrent:
            # Cannot run in a transaction block. A build that failed earlier leaves an invalid
            # index that IF NOT EXISTS would silently keep: drop it first.
            _drop_if_invalid(conn, index.name)
            conn.execute(step.statement)
            conn.execute(record, (step.version,))
        else:
            with conn.transaction():
                conn.execute(step.statement)
                conn.execute(record, (step.version,))

    _with_retries(conn, step.label, options, report, attempt)


def _with_retries(conn: psycopg.Connection[dict[str, Any]], what: str, options: Options,
                  report: Report, attempt: Any) -> None:
    delay = 0.1
    for n in range(options.ddl_retries + 1):
        try:
            attempt()
            return
        except _RETRYABLE as exc:
            if n == options.ddl_retries:
                raise MigrationError(
                    ExitCode.STEP_FAILED,
                    f"{what} failed after {n + 1} attempts: {db.first_line(exc)}", report=report,
                ) from None
            report.ddl_retries += 1
            log.warning("migration_step_retry", step=what, attempt=n + 1, error=db.first_line(exc),
                        sqlstate=exc.sqlstate)
            time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            delay = min(5.0, delay * 2)


def _drop_if_invalid(conn: psycopg.Connection[dict[str, Any]], name: str) -> None:
    row = conn.execute(schema.INDEX_STATE_SQL, ([name],)).fetchone()
    if row is not None and not (row["valid"] and row["ready"]):
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))


def _broken_indexes(conn: psycopg.Connection[dict[str, Any]], versions: dict[str, int],
                    components: tuple[schema.Component, ...] = schema.COMPONENTS) -> list[schema.IndexSpec]:
    """Indexes whose step is recorded as applied but which are missing or invalid."""
    specs = [s for s in schema.expected_indexes(components) if versions.get(s.component, -1) >= s.version]
    if not specs:
        return []
    rows = conn.execute(schema.INDEX_STATE_SQL, ([s.name for s in specs],)).fetchall()
    healthy = {r["name"] for r in rows if r["valid"] and r["ready"]}
    return [s for s in specs if s.name not in healthy]


def _rebuild_index(conn: psycopg.Connection[dict[str, Any]], spec: schema.IndexSpec) -> None:
    drop = "DROP INDEX CONCURRENTLY IF EXISTS {}" if spec.concurrent else "DROP INDEX IF EXISTS {}"
    conn.execute(sql.SQL(drop).format(sql.Identifier(spec.name)))
    conn.execute(spec.statement)
