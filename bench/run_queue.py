"""The run queue's cost and speed: runs/wait before and after it, background runs, idle load.

    python bench/run_queue.py [--runs 400] [--rounds 3] [--phases 3] [--background 600]

Measured side by side in one run on one PostgreSQL (fsync on):

1. ``runs/wait`` throughput of the service *before* the queue (the code of commit ``BEFORE``,
   extracted with ``git archive`` and served from a temporary directory, on the same migrated
   database: the previous version on the newer schema, as in a rolling upgrade) and *after* it
   (this tree), in interleaved rounds of fresh processes (bench/http_runs.py's ``measure``).
   Target: after >= 0.95x before.
2. Background runs per second with two pods: ``POST /threads/<new id>/runs`` (``if_not_exists:
   create``) until every run has succeeded (read from the database); creation-to-start p50/p99
   from the rows' own clocks (``started_at - created_at``). Twice: from ``--creators`` clients as
   fast as they can send to both pods (the receiving pod starts each run at once), and queued:
   every run created on pod A, whose only worker slot a long run holds, at ``--rate`` runs/s, so
   each waits in the queue until pod B's workers, woken by NOTIFY, claim it. Target: p50 under
   20 ms at moderate load.
3. Statements an idle pod issues per second (transactions committed in its database, from
   ``pg_stat_database``, over ``--idle-seconds``), listening and polling (as behind PgBouncer).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from http_runs import Server, measure  # noqa: E402

from service.db import to_url  # noqa: E402
from tests.support.pg import PgServer  # noqa: E402
from tests.support.race import python_env  # noqa: E402
from tests.support.services import free_port  # noqa: E402

BEFORE = "5f33636"  # the last commit before the run queue
LEDGER_GRAPHS = '{"support": "service.graphs.support:graph", "ledger": "tests.support.graphs:ledger"}'


def extract(commit: str) -> Path:
    target = Path(tempfile.mkdtemp(prefix=f"lgpg-{commit}-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "service", "migrate"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def start_pod(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**env, "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING",
                                 "DRAIN_TIMEOUT": "2"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("pod did not become ready")


async def create_background(urls: list[str], runs: int, creators: int, rate: float | None) -> tuple[float, int]:
    """Create ``runs`` background runs from ``creators`` clients, at most ``rate`` per second in all."""
    failed = 0
    counter = iter(range(runs))
    started = time.perf_counter()

    async def creator(client: httpx.AsyncClient, index: int) -> None:
        nonlocal failed
        for i in counter:
            if rate is not None:  # paced: run i is due at i / rate
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            url = urls[(i + index) % len(urls)]
            response = await client.post(f"{url}/threads/{uuid.uuid4()}/runs",
                                         json={"assistant_id": "ledger", "input": {"tag": str(i)},
                                               "if_not_exists": "create"})
            if response.status_code != 200:
                failed += 1

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(creator(client, k) for k in range(creators)))
    return started, failed


def background(conninfo: str, args: argparse.Namespace, *, queued: bool) -> dict[str, float]:
    """Two pods. ``queued``: every run is created on pod A, whose one worker slot is taken by a long
    run, so each run waits in the queue until pod B's workers (woken by NOTIFY) claim it; runs are
    paced at ``--rate`` (moderate load). Else runs go to both pods as fast as the clients can send,
    and the receiving pod starts each at once."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE runs, run_events, threads CASCADE")
    base = python_env(DATABASE_URL=to_url(conninfo), GRAPHS=LEDGER_GRAPHS)
    pods = [start_pod({**base, "N_JOBS_PER_WORKER": "1" if queued else "10"}),
            start_pod({**base, "N_JOBS_PER_WORKER": "10"})]
    try:
        urls = [u for _, u in pods]
        holder_thread = str(uuid.uuid4())
        if queued:
            holder = httpx.post(f"{urls[0]}/threads/{holder_thread}/runs", timeout=30,
                                json={"assistant_id": "ledger", "input": {"tag": "hold", "delay": 3600},
                                      "if_not_exists": "create"})
            assert holder.status_code == 200 and holder.json()["status"] == "running", holder.text
        started, failed = asyncio.run(create_background(urls[:1] if queued else urls, args.background,
                                                        2 if queued else args.creators,
                                                        args.rate if queued else None))
        with psycopg.connect(conninfo, autocommit=True) as conn:
            deadline = time.monotonic() + 300
            while True:
                row = conn.execute("SELECT count(*) FILTER (WHERE status = 'success'), "
                                   "count(*) FILTER (WHERE status IN ('error', 'timeout', 'interrupted')) "
                                   "FROM runs WHERE thread_id <> %s", (holder_thread,)).fetchone()
                assert row is not None
                if row[0] + row[1] >= args.background - failed or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            waits = sorted(float(r[0]) for r in conn.execute(
                "SELECT extract(epoch FROM started_at - created_at) FROM runs "
                "WHERE started_at IS NOT NULL AND thread_id <> %s", (holder_thread,)))
            pods_used = conn.execute("SELECT count(DISTINCT pod) FROM runs WHERE thread_id <> %s",
                                     (holder_thread,)).fetchone()
        return {"rate": row[0] / elapsed, "failed": failed + row[1], "p50": waits[len(waits) // 2] * 1000,
                "p99": waits[min(len(waits) - 1, int(0.99 * len(waits)))] * 1000, "succeeded": row[0],
                "pods": float(pods_used[0]) if pods_used else 0.0}
    finally:
        for proc, _ in pods:
            proc.terminate()
            proc.wait(30)


def idle_statements(conninfo: str, seconds: float, **env: str) -> float:
    proc, _ = start_pod(python_env(DATABASE_URL=to_url(conninfo), **env))
    try:
        time.sleep(2)  # past start-up
        with psycopg.connect(conninfo, autocommit=True) as conn:
            def commits() -> int:
                row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
                                   ).fetchone()
                conn.execute("SELECT pg_stat_clear_snapshot()")
                return int(row[0]) if row else 0

            first = commits()
            time.sleep(seconds)
            last = commits()
        return max(0, last - first - 2) / seconds  # less this function's own two reads
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=400, help="runs/wait runs per server per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phases", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--background", type=int, default=600, help="background runs per scenario")
    parser.add_argument("--creators", type=int, default=8, help="concurrent clients creating background runs")
    parser.add_argument("--rate", type=float, default=25.0, help="runs/s created in the queued scenario")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()

    server = PgServer(settings={"max_connections": "200"})
    before_tree = extract(BEFORE)
    try:
        conninfo = server.create_database("bench_queue")
        from migrate.runner import Options, run

        run(Options(conninfo=conninfo))
        extra: dict[str, object] = {"durability": "sync", "if_not_exists": "create"}
        results, rates = measure([
            Server(f"before ({BEFORE})", [sys.executable, "-m", "service"],
                   python_env(DATABASE_URL=to_url(conninfo), DB_POOL_MAX_SIZE="16", PYTHONPATH=str(before_tree)),
                   extra, cwd=before_tree),
            Server("after (queue)", [sys.executable, "-m", "service"],
                   python_env(DATABASE_URL=to_url(conninfo), DB_POOL_MAX_SIZE="16"), extra),
        ], args)
        free = background(conninfo, args, queued=False)
        queued = background(conninfo, args, queued=True)
        listening = idle_statements(conninfo, args.idle_seconds)
        polling = idle_statements(conninfo, args.idle_seconds, DATABASE_LISTEN_URL="", PGBOUNCER="true")
    finally:
        server.close()

    before, after = results
    print(f"\n1. runs/wait, {args.phases} phases x {args.rounds} interleaved rounds of {args.runs} runs, concurrency "
          f"{args.concurrency}, a fresh thread each (median round)\n")
    header = f"{'server':<20} {'runs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6} {'vs before':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.name:<20} {r.rate:>8.1f} {r.pct(0.5):>8.1f} {r.pct(0.99):>8.1f} {r.failed:>6} "
              f"{r.rate / before.rate:>8.2f}x")
    ratios = [a / b for a, b in zip(rates[after.name], rates[before.name], strict=True)]
    print(f"per-round after/before: {', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f})")

    print(f"\n2. background runs, two pods, {args.background} runs each way\n")
    header = (f"{'how':<44} {'runs/s':>8} {'start p50 ms':>13} {'start p99 ms':>13} {'pods':>5} "
              f"{'failed':>6}")
    print(header)
    print("-" * len(header))
    for label, r in ((f"as fast as {args.creators} clients send, both pods", free),
                     (f"queued on A, claimed by B, {args.rate:g}/s", queued)):
        print(f"{label:<44} {r['rate']:>8.1f} {r['p50']:>13.1f} {r['p99']:>13.1f} {int(r['pods']):>5} "
              f"{int(r['failed']):>6}")

    print(f"\n3. idle pod: {listening:.2f} statements/s listening, {polling:.2f} polling (PgBouncer mode)\n")
    targets = {
        "runs/wait after >= 0.95x before": after.rate >= 0.95 * before.rate,
        "creation-to-start p50 < 20 ms (started where created)": free["p50"] < 20,
        "creation-to-start p50 < 20 ms (queued, claimed by another pod)": queued["p50"] < 20,
        "idle pod <= 5 statements/s": max(listening, polling) <= 5,
        "no failed runs": before.failed == after.failed == 0 and free["failed"] == queued["failed"] == 0,
    }
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
