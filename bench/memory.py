"""Memory of one service process: idle, along 10 000 runs, and under 100 concurrent SSE streams.

    python bench/memory.py [--runs 10000] [--streams 100] [--concurrency 16] [--workers 1]

One ``python -m service`` on PostgreSQL (fsync on). Prints RSS (psutil; the sum over the worker
processes with ``--workers`` > 1) idle after start-up, then every ``--runs``/5 runs/wait of the
example graph (a fresh thread each, every answer checked) and the growth from the first of those
samples (after warm-up) to the last; then the largest RSS while ``--streams`` runs/stream of the
``slow`` graph (tests/support/graphs.py, 3 s each) stream at once, every stream read to its end
and checked. Target (issue 15): no growth after warm-up (the later samples level off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from http_runs import Server, drive  # noqa: E402

from service.db import to_url  # noqa: E402
from tests.support.graphs import GRAPHS  # noqa: E402
from tests.support.pg import PgServer  # noqa: E402
from tests.support.race import python_env  # noqa: E402

EXTRA: dict[str, object] = {"durability": "sync", "if_not_exists": "create"}


def rss_mib(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


async def streams(url: str, count: int, pid: int) -> tuple[int, float]:
    """``count`` runs/stream at once; returns how many ended right and the largest RSS meanwhile."""
    peak = 0.0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mib(pid))
            await asyncio.sleep(0.1)

    async def one(client: httpx.AsyncClient) -> bool:
        body = {"assistant_id": "slow", "if_not_exists": "create", "stream_mode": ["values"],
                "input": {"messages": [{"role": "user", "content": "hi"}], "delay": 3}}
        last: object = None
        async with client.stream("POST", f"{url}/threads/{uuid.uuid4()}/runs/stream", json=body) as response:
            if response.status_code != 200:
                return False
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    last = json.loads(line[5:])
        return isinstance(last, dict) and last.get("messages", [{}])[-1].get("content") == "done: hi"

    sampler = asyncio.create_task(sample())
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        results = await asyncio.gather(*(one(client) for _ in range(count)))
    done.set()
    await sampler
    return sum(results), peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    pg = PgServer(settings={"max_connections": "200"})
    try:
        conninfo = pg.create_database("memory")
        from migrate.runner import Options, run

        run(Options(conninfo=conninfo))
        env = python_env(DATABASE_URL=to_url(conninfo), GRAPHS=GRAPHS, WEB_CONCURRENCY=str(args.workers),
                         DB_POOL_MAX_SIZE="16", N_JOBS_PER_WORKER=str(args.streams))
        server = Server("service (postgres)", [sys.executable, "-m", "service"], env, EXTRA)
        server.start()
        try:
            assert server.proc is not None
            pid = server.proc.pid
            time.sleep(2)
            idle = rss_mib(pid)
            step = max(1, args.runs // 5)
            samples: list[tuple[int, float]] = []
            failed = 0
            for done in range(step, args.runs + 1, step):
                f, _, _ = asyncio.run(drive(server.url, step, args.concurrency, EXTRA))
                failed += f
                samples.append((done, rss_mib(pid)))
                print(f"  {done} runs: {samples[-1][1]:.0f} MiB", file=sys.stderr, flush=True)
            after_runs = rss_mib(pid)
            ok, peak = asyncio.run(streams(server.url, args.streams, pid))
            after_streams = rss_mib(pid)
        finally:
            server.stop()
    finally:
        pg.close()

    print(f"\nRSS of the service ({args.workers} worker process(es)), PostgreSQL durable, "
          f"runs/wait at concurrency {args.concurrency}\n")
    print(f"{'moment':<44} {'RSS MiB':>8}")
    print(f"{'idle after start-up':<44} {idle:>8.0f}")
    for done, rss in samples:
        print(f"{f'after {done} runs':<44} {rss:>8.0f}")
    print(f"{f'largest while {args.streams} SSE streams are open':<44} {peak:>8.0f}")
    print(f"{'after the streams ended':<44} {after_streams:>8.0f}")
    growth = samples[-1][1] - samples[0][1]
    print(f"\ngrowth from {samples[0][0]} to {samples[-1][0]} runs: {growth:+.0f} MiB; failed runs: {failed}; "
          f"streams ended right: {ok}/{args.streams}; after the runs {after_runs:.0f} MiB")
    return 0 if failed == 0 and ok == args.streams else 1


if __name__ == "__main__":
    sys.exit(main())
