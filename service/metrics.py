"""Prometheus metrics of the service (names after the Prometheus naming guide).

Label values come from small fixed sets (graph ids from configuration, statuses, operations,
error kinds), never thread ids or raw paths. Label combinations are created up front so that
series read 0 instead of being absent.

Multiprocess-safe: with ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn workers), counters and
histograms add up over the workers, and every gauge says how its workers' values combine
(``multiprocess_mode``). Litestar's ``/metrics`` then reads the directory's files.

The hot-path wrappers that feed the checkpoint, pool and error metrics are in
:mod:`service.instrumentation`; :func:`record_database_error` is here so that any module (the
exception handlers too) can count a database error without importing the wrappers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version

import psycopg
from prometheus_client import Counter, Gauge, Histogram
from psycopg_pool import PoolTimeout

RUN_STATUSES = ("success", "error", "interrupted", "rejected", "cancelled")
CHECKPOINT_OPERATIONS = ("get_tuple", "list", "put", "put_writes", "delete_thread", "prune")
OUTCOMES = ("ok", "error")
DB_ERRORS = ("deadlock", "lock_timeout", "statement_timeout", "serialization", "connection", "pool_timeout",
             "other")
POOL_STATES = ("size", "idle", "in_use", "waiting", "max")
# Why the server (or the way to it) refused a new pool connection: service.db.Failure's values.
CONNECT_FAILURES = ("too_many_connections", "standby", "starting", "unreachable", "authentication", "other")
SCHEMA_COMPONENTS = ("checkpointer", "store", "app")

# -- runs (fed by service/runs.py) -------------------------------------------------------------------
RUNS = Counter("langgraph_runs", "Runs finished (or rejected), by graph and status.", ["graph", "status"])
RUN_DURATION = Histogram(
    "langgraph_run_duration_seconds", "Wall time of a run, from its turn on the thread to its end.", ["graph"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
RUNS_IN_PROGRESS = Gauge("langgraph_runs_in_progress", "Runs executing in this process.", ["graph"],
                         multiprocess_mode="livesum")
THREAD_LOCK_WAIT = Histogram(
    "langgraph_thread_lock_wait_seconds", "Time a run waited for its thread (another run held it).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

RUN_QUEUE_WAIT = Histogram(
    "langgraph_run_queue_wait_seconds", "Time from a queued run's creation to its start on a worker.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RUN_QUEUE_DEPTH = Gauge("langgraph_run_queue_runs", "Runs in the queue by status (pending, running), all pods.",
                        ["status"], multiprocess_mode="max")
RUNS_TAKEN_OVER = Counter("langgraph_runs_taken_over",
                          "Runs claimed again after their pod stopped renewing the lease (it died or hung).")
RUNS_ABANDONED = Counter("langgraph_runs_abandoned",
                         "Runs failed after too many takeovers (each of their pods died under them).")
RUNS_CANCELLED = Counter("langgraph_runs_cancelled", "Runs cancelled, by action (interrupt, rollback).",
                         ["action"])
QUEUE_STATUSES = ("pending", "running")
CANCEL_ACTIONS = ("interrupt", "rollback")

# -- crons (fed by service/runs/crons.py) ------------------------------------------------------------
CRON_OUTCOMES = ("fired", "error", "expired")
CRON_FIRINGS = Counter(
    "langgraph_cron_firings",
    "Cron firings claimed by this pod: fired (a run was created), error (the run could not be created and the "
    "firing was skipped), expired (past the cron's end_time).", ["outcome"],
)
CRON_FIRING_DELAY = Histogram(
    "langgraph_cron_firing_delay_seconds", "Time from a firing's scheduled date to the run's creation.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)

# -- webhooks (fed by service/runs/webhooks.py) -------------------------------------------------------
WEBHOOK_OUTCOMES = ("delivered", "failed", "refused")
WEBHOOKS = Counter(
    "langgraph_webhooks",
    "Run webhooks by outcome: delivered (a 2xx), failed (every attempt failed), refused (the host resolves to an "
    "address the SSRF policy refuses).", ["outcome"],
)

# -- checkpointer (fed by service/instrumentation.py) ------------------------------------------------
CHECKPOINT_DURATION = Histogram(
    "langgraph_checkpoint_operation_duration_seconds",
    "Duration of checkpointer operations (pool wait included), by operation and outcome.",
    ["operation", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHECKPOINT_ERRORS = Counter(
    "langgraph_checkpoint_errors", "Failed checkpointer operations, by operation and kind of error.",
    ["operation", "error"],
)

# -- database (every call of the process, whatever made it) ------------------------------------------
DB_LOCK_TIMEOUTS = Counter("langgraph_db_lock_timeouts",
                           "Database statements that failed on lock_timeout (SQLSTATE 55P03).")
DB_DEADLOCKS = Counter("langgraph_db_deadlocks",
                       "Transactions PostgreSQL aborted to break a deadlock (SQLSTATE 40P01).")
POOL_CONNECTIONS = Gauge(
    "langgraph_db_pool_connections",
    "Connection pool: connections open (size), idle, in use, the maximum, and requests waiting for one.",
    ["state"], multiprocess_mode="livesum",
)
DB_CONNECTIONS_REFUSED = Counter(
    "langgraph_db_connections_refused",
    "New pool connections that failed, by reason (too_many_connections: max_connections reached, SQLSTATE 53300; "
    "standby: no host of the URL accepted writes).",
    ["reason"],
)
POOL_WAIT = Histogram(
    "langgraph_db_pool_wait_seconds", "Time to get a connection from the pool (health check included).",
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# -- state of the pod --------------------------------------------------------------------------------
SCHEMA_VERSION = Gauge("langgraph_schema_version",
                       "Schema version in the database by component (-1: not migrated), at the last readiness check.",
                       ["component"], multiprocess_mode="livemax")
SCHEMA_REQUIRED = Gauge("langgraph_schema_required_version", "Schema version this code needs, by component.",
                        ["component"], multiprocess_mode="livemax")
READY = Gauge("langgraph_ready", "1 if the last readiness check passed, else 0.", multiprocess_mode="livemin")
BUILD_INFO = Gauge("langgraph_build_info", "Always 1; the labels say which build runs.",
                   ["version", "langgraph_version", "langgraph_checkpoint_postgres_version"],
                   multiprocess_mode="livemax")

_SQLSTATE_ERRORS = {"40P01": "deadlock", "55P03": "lock_timeout", "57014": "statement_timeout",
                    "40001": "serialization"}
_COUNTED = "_langgraph_counted"


def classify_error(exc: BaseException) -> str:
    """The kind of a database error, one of :data:`DB_ERRORS` (SQLSTATE first, then the class)."""
    if isinstance(exc, PoolTimeout):
        return "pool_timeout"
    kind = _SQLSTATE_ERRORS.get(getattr(exc, "sqlstate", None) or "")
    if kind is not None:
        return kind
    if isinstance(exc, psycopg.OperationalError):
        return "connection"
    return "other"


def record_database_error(exc: BaseException) -> str:
    """Count a deadlock or lock timeout once, whichever layer sees the error first; return its kind.

    The exception is marked, so the layers it passes through on its way up (checkpointer, run
    executor, exception handler) do not count it again.
    """
    kind = classify_error(exc)
    if kind in ("deadlock", "lock_timeout") and not getattr(exc, _COUNTED, False):
        with contextlib.suppress(AttributeError):  # psycopg's errors take attributes
            setattr(exc, _COUNTED, True)
        (DB_DEADLOCKS if kind == "deadlock" else DB_LOCK_TIMEOUTS).inc()
    return kind


def precreate(graph_ids: Iterable[str]) -> None:
    for graph in graph_ids:
        for status in RUN_STATUSES:
            RUNS.labels(graph, status)
        RUN_DURATION.labels(graph)
        RUNS_IN_PROGRESS.labels(graph)
    for operation in CHECKPOINT_OPERATIONS:
        for outcome in OUTCOMES:
            CHECKPOINT_DURATION.labels(operation, outcome)
        for error in DB_ERRORS:
            CHECKPOINT_ERRORS.labels(operation, error)
    for state in POOL_STATES:
        POOL_CONNECTIONS.labels(state)
    for reason in CONNECT_FAILURES:
        DB_CONNECTIONS_REFUSED.labels(reason)
    for queue_status in QUEUE_STATUSES:
        RUN_QUEUE_DEPTH.labels(queue_status)
    for action in CANCEL_ACTIONS:
        RUNS_CANCELLED.labels(action)
    for outcome in CRON_OUTCOMES:
        CRON_FIRINGS.labels(outcome)
    for outcome in WEBHOOK_OUTCOMES:
        WEBHOOKS.labels(outcome)


def run_status_label(status: str) -> str:
    """A run's final status as a label of ``langgraph_runs_total`` (a fixed set)."""
    return status if status in ("success", "interrupted", "cancelled") else "error"


def set_build_info(app_version: str) -> None:
    BUILD_INFO.labels(app_version, _version("langgraph"), _version("langgraph-checkpoint-postgres")).set(1)


def set_schema(versions: Mapping[str, int] | None, required: Mapping[str, int]) -> None:
    for component, need in required.items():
        SCHEMA_REQUIRED.labels(component).set(need)
    for component, have in (versions or {}).items():
        SCHEMA_VERSION.labels(component).set(have)


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
