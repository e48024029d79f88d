"""Prometheus metrics of the service (names after the Prometheus naming guide).

Label values come from small fixed sets (graph ids from configuration, statuses, operations),
never thread ids or raw paths. Label combinations are created up front so that series read 0
instead of being absent.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

RUN_STATUSES = ("success", "error", "interrupted", "rejected", "cancelled")

RUNS = Counter("langgraph_runs", "Runs finished (or rejected), by graph and status.", ["graph", "status"])
RUN_DURATION = Histogram(
    "langgraph_run_duration_seconds", "Wall time of a run, from its turn on the thread to its end.", ["graph"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
RUNS_IN_PROGRESS = Gauge("langgraph_runs_in_progress", "Runs executing in this process.", ["graph"])
THREAD_LOCK_WAIT = Histogram(
    "langgraph_thread_lock_wait_seconds", "Time a run waited for its thread (another run held it).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def precreate(graph_ids: Iterable[str]) -> None:
    for graph in graph_ids:
        for status in RUN_STATUSES:
            RUNS.labels(graph, status)
        RUN_DURATION.labels(graph)
        RUNS_IN_PROGRESS.labels(graph)
