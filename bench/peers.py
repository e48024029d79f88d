"""This service against the servers users would pick instead, serving the same graph file.

    python bench/peers.py [--runs 150] [--rounds 2] [--concurrency 16] [--venvs /tmp/lgpg-peers]

Installs, each into its own virtual environment under ``--venvs`` (reused when present), from
PyPI with pip:

* ``langgraph-cli[inmem]`` (LangChain's ``langgraph dev --no-browser --no-reload``: the LangGraph
  Server's in-memory runtime), with this interpreter;
* ``aegra-api`` (Aegra, on PostgreSQL: ``uvicorn aegra_api.main:app``), which needs Python 3.12
  (``--python312``, default pyenv's 3.12.1).

Tracing and analytics are off (``LANGSMITH_TRACING=false``, ``LANGCHAIN_TRACING_V2=false``,
``LANGGRAPH_CLI_NO_ANALYTICS=1``; nothing here reaches the internet anyway). Every server serves
``service/graphs/support.py`` (copied beside one ``langgraph.json`` that all of them read) and
gets the same calls: ``POST /threads`` then ``POST /threads/<id>/runs/wait`` (the answer must end
with the AI's reply), ``--concurrency`` at once, in interleaved rounds of ``--runs``; after the
rounds the state of 20 threads per server is read back and checked. PostgreSQL (fsync on) is
shared by this service and Aegra, each with its own database. Prints runs/s (median round), p50,
p99, CPU ms per run of the server's processes and of PostgreSQL, and the ratios. Targets (issue
15): >= 5x Aegra's runs/s and >= 3x ``langgraph dev``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from http_runs import cpu_seconds, postmaster_pid  # noqa: E402

from service.db import to_url  # noqa: E402
from tests.support.pg import PgServer  # noqa: E402
from tests.support.race import python_env  # noqa: E402
from tests.support.services import free_port  # noqa: E402

QUESTION = {"messages": [{"role": "user", "content": "My invoice shows the wrong amount"}]}
QUIET = {"LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false", "LANGSMITH_TRACING_V2": "false",
         "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGCHAIN_API_KEY": "", "LANGSMITH_API_KEY": "", "LOG_LEVEL": "WARNING"}


def ensure_venv(path: Path, python: str, requirement: str) -> Path:
    """A virtual environment at ``path`` with ``requirement`` installed (pip, from PyPI); its bin dir."""
    marker = path / ".installed"
    if not marker.exists():
        subprocess.run([python, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", requirement],
                       check=True)
        marker.write_text(requirement)
    return path / "bin"


def project(directory: Path) -> Path:
    """The graph file and the langgraph.json every server reads."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "service" / "graphs" / "support.py", directory / "support.py")
    (directory / "langgraph.json").write_text('{"graphs": {"support": "./support.py:graph"}, '
                                              '"dependencies": ["."]}\n')
    return directory / "langgraph.json"


@dataclass
class Peer:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> None:
        self.log = Path(tempfile.mkdtemp(prefix="peer-")) / "server.log"
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        env = {**self.env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/info", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def answered(response: httpx.Response) -> bool:
    if response.status_code != 200:
        return False
    body = response.json()
    messages = body.get("messages") if isinstance(body, dict) else None
    return bool(messages) and messages[-1].get("type") == "ai" and bool(messages[-1].get("content"))


async def drive(url: str, runs: int, concurrency: int) -> tuple[int, float, list[float], list[str]]:
    latencies: list[float] = []
    threads: list[str] = []
    failed = 0
    todo = list(range(runs))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failed
        while todo:
            todo.pop()
            started = time.perf_counter()
            created = await client.post(f"{url}/threads", json={})
            if created.status_code != 200:
                failed += 1
                continue
            thread_id = created.json()["thread_id"]
            response = await client.post(f"{url}/threads/{thread_id}/runs/wait",
                                         json={"assistant_id": "support", "input": QUESTION})
            latencies.append(time.perf_counter() - started)
            if answered(response):
                threads.append(thread_id)
            else:
                failed += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return failed, time.perf_counter() - started, latencies, threads


async def check_threads(url: str, threads: list[str]) -> int:
    """Threads whose stored state does not end with the AI's reply."""
    bad = 0
    async with httpx.AsyncClient(timeout=30) as client:
        for thread_id in threads:
            response = await client.get(f"{url}/threads/{thread_id}/state")
            values = response.json().get("values") if response.status_code == 200 else None
            messages = values.get("messages") if isinstance(values, dict) else None
            if not messages or messages[-1].get("type") != "ai":
                bad += 1
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--venvs", type=Path, default=Path(tempfile.gettempdir()) / "lgpg-peers")
    parser.add_argument("--python312", default="/root/.pyenv/versions/3.12.1/bin/python3.12")
    args = parser.parse_args()

    lgdev = ensure_venv(args.venvs / "langgraph-dev", sys.executable, "langgraph-cli[inmem]")
    aegra = ensure_venv(args.venvs / "aegra", args.python312, "aegra-api")
    config = project(Path(tempfile.mkdtemp(prefix="peers-project-")))

    pg = PgServer(settings={"max_connections": "300"})
    peers: list[Peer] = []
    try:
        ours_db, aegra_db = pg.create_database("peers_service"), pg.create_database("peers_aegra")
        from migrate.runner import Options, run

        run(Options(conninfo=ours_db))
        peers = [
            Peer("this service (postgres)", [sys.executable, "-m", "service"],
                 python_env(DATABASE_URL=to_url(ours_db), LANGGRAPH_CONFIG=str(config), DB_POOL_MIN_SIZE="16",
                            DB_POOL_MAX_SIZE="16", **QUIET), config.parent),
            Peer("langgraph dev (inmem)", [str(lgdev / "langgraph"), "dev", "--no-browser", "--no-reload",
                                           "--port", "{port}", "--host", "127.0.0.1", "--config", str(config)],
                 {"PATH": f"{lgdev}:/usr/bin:/bin", "HOME": tempfile.mkdtemp(), **QUIET}, config.parent),
            Peer("Aegra (postgres)", [str(aegra / "python"), "-m", "uvicorn", "aegra_api.main:app", "--host",
                                      "127.0.0.1", "--port", "{port}", "--log-level", "warning"],
                 {"PATH": f"{aegra}:/usr/bin:/bin", "HOME": tempfile.mkdtemp(), "DATABASE_URL": to_url(aegra_db),
                  "AEGRA_CONFIG": str(config), **QUIET}, config.parent),
        ]
        for peer in peers:
            peer.start()
        pg_pid = postmaster_pid(pg.admin)
        rates: dict[str, list[float]] = {p.name: [] for p in peers}
        latencies: dict[str, list[float]] = {p.name: [] for p in peers}
        failed = dict.fromkeys(rates, 0)
        cpu = dict.fromkeys(rates, 0.0)
        pg_cpu = dict.fromkeys(rates, 0.0)
        threads: dict[str, list[str]] = {p.name: [] for p in peers}
        for peer in peers:
            asyncio.run(drive(peer.url, args.warmup, args.concurrency))
        for round_ in range(args.rounds):
            for peer in peers:
                assert peer.proc is not None
                cpu0, pg0 = cpu_seconds([peer.proc.pid]), cpu_seconds([pg_pid])
                f, seconds, lat, done = asyncio.run(drive(peer.url, args.runs, args.concurrency))
                cpu[peer.name] += cpu_seconds([peer.proc.pid]) - cpu0
                pg_cpu[peer.name] += cpu_seconds([pg_pid]) - pg0
                rates[peer.name].append(args.runs / seconds)
                latencies[peer.name] += lat
                failed[peer.name] += f
                threads[peer.name] += done
                print(f"  round {round_ + 1} {peer.name}: {args.runs / seconds:.1f} runs/s, {f} failed",
                      file=sys.stderr, flush=True)
        bad_state = {p.name: asyncio.run(check_threads(p.url, threads[p.name][:20])) for p in peers}
    finally:
        for peer in peers:
            peer.stop()
        pg.close()

    total = args.runs * args.rounds
    ours = peers[0].name
    print(f"\nthreads.create + runs/wait, {args.rounds} interleaved rounds of {args.runs} runs per server at "
          f"concurrency {args.concurrency}; runs/s is the median round (this machine: 2 cores shared with "
          "other work)\n")
    header = (f"{'server':<26} {'runs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/run':>10} {'PG CPU ms':>9} "
              f"{'failed':>6} {'bad state':>9} {'this / it':>9}")
    print(header)
    print("-" * len(header))
    rate = {name: statistics.median(r) for name, r in rates.items()}
    for name in rates:
        ordered = sorted(latencies[name]) or [0.0]
        p50, p99 = ordered[len(ordered) // 2] * 1000, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000
        print(f"{name:<26} {rate[name]:>8.1f} {p50:>8.1f} {p99:>8.1f} {1000 * cpu[name] / total:>10.2f} "
              f"{1000 * pg_cpu[name] / total:>9.2f} {failed[name]:>6} {bad_state[name]:>9} "
              f"{rate[ours] / rate[name]:>8.2f}x")
    print("(PG CPU: every PostgreSQL process during that server's rounds; langgraph dev uses none, so its "
          "column is PostgreSQL's idle cost)")
    lg, ae = peers[1].name, peers[2].name
    targets = {"this >= 3x langgraph dev": rate[ours] >= 3 * rate[lg],
               "this >= 5x Aegra": rate[ours] >= 5 * rate[ae],
               "every answer and state right": not any(failed.values()) and not any(bad_state.values())}
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
