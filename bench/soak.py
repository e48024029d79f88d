"""Soak: moderate conversational load for a while, with pod restarts and a database restart.

    python bench/soak.py [--duration 600 | --minutes 30] [--failover]

Two service pods over one PostgreSQL. Pod A is restarted (out of the endpoints, SIGTERM, a new
process, ready, back in) every quarter of the run; pod B stays up the whole time, and its RSS
is the leak signal. Half way through, PostgreSQL itself restarts. Prints, over time: RSS of
both pods, PostgreSQL client backends, requests answered and failed; then the targets:

* RSS growth of the long-lived pod under 10% after warm-up (the first fifth of the run);
* PostgreSQL backends back to the warm-up baseline once the load stops and pools shrink;
* zero lost runs: every run that was answered is in its thread's history.

With ``--failover`` the database is Debian's PostgreSQL 15 as a primary with a synchronous
streaming standby (tests/support/pgcluster.py), the pods reach it with a multi-host URL
(``target_session_attrs=read-write``), and at 60% of the run the primary stops and the standby is
promoted; the restart at half time restarts the primary.

Exit 0 when all targets are met. CI runs a 60 s version (tests/e2e/test_soak.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from migrate.runner import Options, run
from service.embedded import EmbeddedPostgres
from tests.support.load import Load
from tests.support.pg import PgServer
from tests.support.pgcluster import Cluster
from tests.support.service import ServiceProcess

POD_ENV = {"DB_POOL_MIN_SIZE": "2", "DB_POOL_MAX_SIZE": "8", "DB_POOL_MAX_IDLE": "5", "DB_POOL_TIMEOUT": "3",
           "RUN_LEASE_SECONDS": "5", "LOG_LEVEL": "WARNING"}


def rss_mib(pod: ServiceProcess) -> float:
    assert pod.proc is not None
    return psutil.Process(pod.proc.pid).memory_info().rss / 2**20


def backends(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()
    return int(row[0]) if row else -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, default=None, help="seconds of load (default 600)")
    length.add_argument("--minutes", type=float, default=None, help="minutes of load")
    parser.add_argument("--sample", type=float, default=0.0, help="seconds between samples (default duration/20)")
    parser.add_argument("--failover", action="store_true",
                        help="a PostgreSQL 15 primary and synchronous standby; fail over at 60%% of the run")
    args = parser.parse_args()
    duration = args.minutes * 60 if args.minutes is not None else (args.duration or 600.0)
    if duration <= 0:
        parser.error("the run must be longer than 0")
    sample = args.sample or max(2.0, duration / 20)

    cluster: Cluster | None = None
    server: PgServer | None = None
    if args.failover:
        cluster = Cluster(synchronous=True).start()
        conninfo = cluster.url(cluster.create_database())
        primary: EmbeddedPostgres = cluster.primary
    else:
        server = PgServer(settings={"max_connections": "200"})
        assert server.embedded is not None, "the soak restarts its own embedded PostgreSQL"
        conninfo = server.create_database("soak")
        primary = server.embedded
    run(Options(conninfo=conninfo))
    pod_a, pod_b = ServiceProcess(conninfo, **POD_ENV), ServiceProcess(conninfo, **POD_ENV)
    for pod in (pod_a, pod_b):
        pod.start()
    load = Load([pod_a.url, pod_b.url], workers=2, max_conversations=100_000).start()
    rows: list[tuple[float, float, float, int, int, int]] = []
    events: list[str] = []
    restarts_at = [duration * f for f in (0.25, 0.75)]
    db_restart_at = duration * 0.5
    failover_at = duration * 0.6 if cluster is not None else None
    started = time.monotonic()
    next_sample = 0.0
    try:
        while (elapsed := time.monotonic() - started) < duration:
            if restarts_at and elapsed >= restarts_at[0]:
                restarts_at.pop(0)
                load.urls[:] = [pod_b.url]  # out of the endpoints first, then SIGTERM
                pod_a.stop()
                pod_a = ServiceProcess(conninfo, **POD_ENV).start()
                load.urls[:] = [pod_a.url, pod_b.url]
                events.append(f"{elapsed:6.1f}s pod A restarted")
            if db_restart_at is not None and elapsed >= db_restart_at:
                db_restart_at = None  # type: ignore[assignment]
                primary.stop("fast")
                time.sleep(2)  # the fault: the database is down for 2 s
                primary.start()
                events.append(f"{elapsed:6.1f}s PostgreSQL restarted (2 s down)")
            if cluster is not None and failover_at is not None and elapsed >= failover_at:
                failover_at = None
                cluster.stop_primary("fast")
                time.sleep(2)  # the fault: a cluster manager takes a moment to promote
                cluster.promote()
                primary = cluster.standby
                events.append(f"{elapsed:6.1f}s failover: primary stopped, standby promoted 2 s later")
            if elapsed >= next_sample:
                next_sample += sample
                ok = load.ok_count()
                rows.append((elapsed, rss_mib(pod_a), rss_mib(pod_b), backends(conninfo), ok, len(load.failed())))
            time.sleep(0.2)
    finally:
        load.stop()
    time.sleep(8)  # pools shrink to their minimum once connections idle past DB_POOL_MAX_IDLE
    rows.append((time.monotonic() - started, rss_mib(pod_a), rss_mib(pod_b), backends(conninfo),
                 load.ok_count(), len(load.failed())))
    lost = load.lost(pod_b.url)
    for pod in (pod_a, pod_b):
        pod.stop()
    if server is not None:
        server.close()
    if cluster is not None:
        cluster.close()

    print(f"\nsoak: {duration:.0f} s, 2 pods, 2 workers; pod A restarted twice, PostgreSQL once"
          + (", a failover to the synchronous standby" if cluster is not None else "") + "\n")
    print(f"{'t (s)':>7} {'RSS A MiB':>10} {'RSS B MiB':>10} {'backends':>9} {'answered':>9} {'failed':>7}")
    for t, a, b, n, ok, failed in rows:
        print(f"{t:7.1f} {a:10.1f} {b:10.1f} {n:9d} {ok:9d} {failed:7d}")
    for event in events:
        print("event:", event)
    warm = rows[max(1, len(rows) // 5)]
    growth = (rows[-1][2] - warm[2]) / warm[2]
    baseline = warm[3]
    answered = len(load.calls) - len(load.failed())
    acknowledged = sum(len(v) for v in load.acknowledged.values())
    print(f"\nrequests {len(load.calls)}, answered {answered}, failed {len(load.failed())} "
          f"(statuses {sorted({c.status for c in load.failed()})}); runs acknowledged {acknowledged}, lost {len(lost)}")
    targets = {
        f"RSS growth of pod B after warm-up < 10% ({growth:+.1%})": growth < 0.10,
        f"backends back to baseline ({rows[-1][3]} vs {baseline})": rows[-1][3] <= baseline,
        f"zero lost runs ({len(lost)})": not lost,
        "failures are only 503 or connection resets during restarts": all(
            c.status in (0, 503) for c in load.failed()),
    }
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'}")
    for miss in lost[:5]:
        print("lost:", miss)
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
