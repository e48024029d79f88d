"""What one runs/wait costs: statements and round trips to PostgreSQL, and CPU of both sides.

    python bench/per_run.py [--runs 300] [--concurrency 1] [--profile out.txt] [--memory]

One service process on PostgreSQL (fsync on) with ``pg_stat_statements``; ``--runs`` requests of
``POST /threads/<new id>/runs/wait`` (the example graph ``support``, ``durability: sync``,
``if_not_exists: create``) after a warm-up. Prints, per run: the statements PostgreSQL executed
for the service's database by query (from ``pg_stat_statements``), transactions committed
(``pg_stat_database``), service CPU ms (psutil, user + system of the process) and PostgreSQL CPU
ms (every backend and server process of the instance). ``--profile`` also records the service
with ``py-spy`` (must be installed: ``pip install py-spy``) while the runs go and writes its top
functions (by own samples and by cumulative samples) to the file, and its collapsed stacks beside it
(``.raw``). ``--memory`` measures the same against ``CHECKPOINTER=memory`` (service CPU only; with
``--profile``, its profile goes to ``<name>.memory.txt`` and ``<name>.memory.raw``).

CPU time is counted, not timed: on a shared machine a noisy neighbour changes wall time far more
than the CPU a run takes.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from http_runs import Server, cpu_seconds, drive, postmaster_pid  # noqa: E402

from service.db import to_url  # noqa: E402
from tests.support.pg import PgServer  # noqa: E402
from tests.support.race import python_env  # noqa: E402

EXTRA: dict[str, object] = {"durability": "sync", "if_not_exists": "create"}


def top_of_profile(raw: Path, limit: int = 25) -> str:
    """py-spy's raw (collapsed stacks) output: the top functions by own and by cumulative samples."""
    own: dict[str, int] = {}
    cumulative: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            cumulative[frame] = cumulative.get(frame, 0) + count
    out = [f"{total} samples", "", "own samples:"]
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:limit]:
        out.append(f"{100 * n / total:5.1f}%  {frame}")
    out += ["", "cumulative samples:"]
    for frame, n in sorted(cumulative.items(), key=lambda kv: -kv[1])[:limit * 2]:
        out.append(f"{100 * n / total:5.1f}%  {frame}")
    return "\n".join(out)


def measure(server: Server, runs: int, concurrency: int, warmup: int, profile: Path | None,
            admin: str | None, dbname: str | None) -> dict[str, float]:
    server.start()
    try:
        assert server.proc is not None
        service = server.proc.pid
        asyncio.run(drive(server.url, warmup, concurrency, server.body_extra))
        pg_pid = postmaster_pid(admin) if admin else None
        if admin:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
                conn.execute("SELECT pg_stat_reset()")
                conn.execute("SELECT pg_stat_reset_shared('io')")
        time.sleep(0.5)
        spy = None
        raw = Path(tempfile.mkdtemp(prefix="per-run-")) / "profile.txt"
        if profile is not None:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                                    "--rate", "250", "--pid", str(server.proc.pid), "--output", str(raw)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        cpu0 = cpu_seconds([service])
        pg0 = cpu_seconds([pg_pid]) if pg_pid else 0.0
        failed, seconds, latencies = asyncio.run(drive(server.url, runs, concurrency, server.body_extra))
        cpu1 = cpu_seconds([service])
        pg1 = cpu_seconds([pg_pid]) if pg_pid else 0.0
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
            assert profile is not None
            profile.write_text(top_of_profile(raw))
            shutil.copyfile(raw, profile.with_suffix(".raw"))  # py-spy's collapsed stacks, for a diff
        result = {"failed": failed, "rate": runs / seconds, "service_ms": 1000 * (cpu1 - cpu0) / runs,
                  "pg_ms": 1000 * (pg1 - pg0) / runs,
                  "p50_ms": sorted(latencies)[len(latencies) // 2] * 1000}
        if admin and dbname:
            with psycopg.connect(admin, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT s.calls, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements s "
                    "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s ORDER BY s.calls DESC",
                    (dbname,)).fetchall()
                xact = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                                    (dbname,)).fetchone()
                fsyncs = conn.execute("SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal'"
                                      ).fetchone()
            print(f"\nstatements per run ({runs} runs at concurrency {concurrency}):")
            total = 0.0
            for calls, query in rows:
                total += calls / runs
                if calls / runs >= 0.05:
                    print(f"  {calls / runs:6.2f}  {query}")
            print(f"  {total:6.2f}  in all; transactions committed per run: {(xact[0] if xact else 0) / runs:.2f}; "
                  f"WAL fsyncs per run: {float(fsyncs[0] if fsyncs else 0) / runs:.2f}")
            result["statements"] = total
        return result
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--profile", type=Path, default=None, help="write py-spy's top functions here")
    parser.add_argument("--memory", action="store_true", help="also measure CHECKPOINTER=memory")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment variable for the service (repeatable)")
    args = parser.parse_args()

    pg = PgServer(settings={"max_connections": "100", "shared_preload_libraries": "pg_stat_statements",
                            "pg_stat_statements.track": "all"})
    try:
        conninfo = pg.create_database("per_run")
        dbname = str(psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"])
        with psycopg.connect(pg.admin, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        from migrate.runner import Options, run

        run(Options(conninfo=conninfo))
        pool = str(max(4, args.concurrency))
        extra_env = dict(e.split("=", 1) for e in args.env)
        env = python_env(**{"DATABASE_URL": to_url(conninfo), "DB_POOL_MIN_SIZE": pool, "DB_POOL_MAX_SIZE": pool,
                            **extra_env})
        server = Server("service (postgres)", [sys.executable, "-m", "service"], env, EXTRA)
        results = {"postgres": measure(server, args.runs, args.concurrency, args.warmup, args.profile,
                                       pg.admin, dbname)}
        if args.memory:
            memory = Server("service (memory)", [sys.executable, "-m", "service"],
                            python_env(CHECKPOINTER="memory", **extra_env), EXTRA)
            memory_profile = None if args.profile is None else args.profile.with_suffix(".memory.txt")
            results["memory"] = measure(memory, args.runs, args.concurrency, args.warmup, memory_profile, None, None)
    finally:
        pg.close()
    print(f"\n{'server':<10} {'runs/s':>8} {'p50 ms':>8} {'service CPU ms/run':>19} {'PostgreSQL CPU ms/run':>22} "
          f"{'failed':>6}")
    for name, r in results.items():
        print(f"{name:<10} {r['rate']:>8.1f} {r['p50_ms']:>8.1f} {r['service_ms']:>19.2f} {r['pg_ms']:>22.2f} "
              f"{int(r['failed']):>6}")
    print("(CPU from psutil; the machine is shared with other work, so runs/s and p50 are noisy, CPU less so)")
    return 0 if all(r["failed"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
