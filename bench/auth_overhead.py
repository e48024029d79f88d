"""What per-user auth costs on a read: requests/s of ``GET /threads/{id}`` and ``POST /threads/search``.

    python bench/auth_overhead.py [--requests 400] [--rounds 5] [--concurrency 8]

Three ``python -m service`` processes over one PostgreSQL database, identical but for how callers
are told apart: ``api key`` (API_KEYS only: one constant-time comparison, no filter), ``tutorial``
(LANGGRAPH_AUTH naming LangGraph's tutorial handlers: authenticate, the ``@auth.on`` handler and
its owner filter in the SQL) and ``jwt`` (the built-in bearer JWT: an RS256 verification per
request, then the same filter). Each reads a thread of its own user, in interleaved rounds (so
the noise of this shared machine hits all alike); prints the median requests/s and p50 per
configuration and the ratios to ``api key``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.pg import PgServer  # noqa: E402
from tests.support.service import ServiceProcess  # noqa: E402


async def drive(url: str, path: str, body: object, headers: dict[str, str], n: int,
                concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    left = n

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            r = await (client.post(path, json=body) if body is not None else client.get(path))
            assert r.status_code == 200, r.text
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return n / (time.perf_counter() - started), latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per configuration per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = Path(tempfile.mkdtemp(prefix="bench-auth-")) / "public.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    token = jwt.encode({"sub": "user1", "exp": int(time.time()) + 3600}, key, algorithm="RS256")
    configs = {
        "api key": ({"API_KEYS": "bench-key"}, {"x-api-key": "bench-key"}),
        "tutorial": ({"LANGGRAPH_AUTH": json.dumps({"path": "tests/support/auth/tutorial.py:auth"})},
                     {"Authorization": "Bearer user1-token"}),
        "jwt": ({"AUTH_JWT_KEY_FILE": str(pem)}, {"Authorization": f"Bearer {token}"}),
    }
    server = PgServer(settings={"max_connections": "200"})
    pods: dict[str, ServiceProcess] = {}
    try:
        db = server.create_database("bench_auth")
        from migrate.runner import Options, run

        run(Options(conninfo=db))
        threads: dict[str, str] = {}
        for name, (env, headers) in configs.items():
            pods[name] = ServiceProcess(db, LOG_LEVEL="WARNING", **env).start()
            for _ in range(200):  # other threads in the table, so the filter has rows to pass over
                httpx.post(f"{pods[name].url}/threads", headers=headers, json={"metadata": {"n": 1}})
            threads[name] = httpx.post(f"{pods[name].url}/threads", headers=headers, json={}).json()["thread_id"]
        names = list(configs)
        table: dict[tuple[str, str], list[float]] = {}
        p50: dict[tuple[str, str], list[float]] = {}
        for op in ("get", "search"):
            for name in names:  # warm-up
                asyncio.run(drive(pods[name].url, f"/threads/{threads[name]}", None, configs[name][1], 50, 4))
            for round_ in range(args.rounds):
                for name in names[round_ % 3:] + names[:round_ % 3]:
                    path, body = ((f"/threads/{threads[name]}", None) if op == "get"
                                  else ("/threads/search", {"limit": 10}))
                    rate, lat = asyncio.run(drive(pods[name].url, path, body, configs[name][1], args.requests,
                                                  args.concurrency))
                    table.setdefault((op, name), []).append(rate)
                    p50.setdefault((op, name), []).append(statistics.median(lat) * 1000)
        print(f"{'operation':<10} {'caller':<10} {'req/s':>8} {'p50 ms':>8} {'vs api key':>11}")
        for op in ("get", "search"):
            base = statistics.median(table[(op, "api key")])
            for name in names:
                rate = statistics.median(table[(op, name)])
                print(f"{op:<10} {name:<10} {rate:8.0f} {statistics.median(p50[(op, name)]):8.1f} "
                      f"{rate / base:10.2f}x")
    finally:
        for pod in pods.values():
            pod.stop()
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
