"""Push the migration job's outcome to a Prometheus Pushgateway (when PUSHGATEWAY_URL is set).

A job lives too briefly to be scraped, so it pushes. The push uses POST semantics: it replaces
only the metrics it sends, so ``langgraph_migration_last_success_timestamp_seconds`` keeps the
last success's value when a later run fails.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, pushadd_to_gateway

from migrate.runner import Report

JOB = "langgraph-migrate"


def build_registry(report: Report, *, lock_timeout: bool, success_at: float | None) -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("langgraph_migration_duration_seconds", "Duration of the last migration run.",
          registry=registry).set(report.duration_seconds)
    Gauge("langgraph_migration_lock_wait_seconds", "Time the last migration run waited for the lock.",
          registry=registry).set(report.lock_wait_seconds)
    timeouts = Counter("langgraph_migration_lock_timeouts", "Lock timeouts in the last migration run.",
                       registry=registry)
    if lock_timeout:
        timeouts.inc()
    Gauge("langgraph_migration_steps_applied", "Schema steps applied by the last migration run.",
          registry=registry).set(len(report.steps_applied))
    Gauge("langgraph_migration_ddl_retries", "DDL retries after lock_timeout in the last migration run.",
          registry=registry).set(report.ddl_retries)
    if success_at is not None:
        Gauge("langgraph_migration_last_success_timestamp_seconds",
              "Unix time of the last successful migration run.", registry=registry).set(success_at)
    return registry


def push(url: str, report: Report, *, lock_timeout: bool, success_at: float | None) -> None:
    registry = build_registry(report, lock_timeout=lock_timeout, success_at=success_at)
    grouping = {"instance": os.environ.get("MIGRATE_INSTANCE", "default")}
    pushadd_to_gateway(url, job=JOB, registry=registry, grouping_key=grouping, timeout=5)
