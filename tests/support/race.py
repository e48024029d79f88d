"""Start many OS processes against one database and release them at the same moment.

Interpreter start and authentication spread process launches over seconds on a small machine, so
the processes connect through a gated TCP proxy (tests/support/tcpproxy.py) that holds each one's
first statement until all processes are waiting, then lets the statements through at the same
moment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.tcpproxy import proxy_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def python_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MIGRATE_DATABASE_URL")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_together(
    conninfo: str, build: Callable[[str], list[list[str]]], env: Callable[[str], dict[str, str]] | None = None,
    *, timeout: float = 120.0,
) -> tuple[list[Finished], float]:
    """Run the commands ``build(gated_conninfo)`` released together.

    The processes reach the database through a gated TCP proxy: each connects, authenticates and
    waits at the gate with its first statement; once all are waiting (or have exited) the gate
    opens and every first statement arrives at the same moment.
    Returns their results and the wall time from the release to the last exit.
    """
    workdir = Path(tempfile.mkdtemp(prefix="race-"))
    with proxy_for(conninfo, gated=True) as proxy:
        gated = proxy.conninfo(conninfo)
        commands = build(gated)
        environment = env(gated) if env is not None else python_env()
        procs = []
        try:
            for i, argv in enumerate(commands):
                out = open(workdir / f"{i}.out", "w+")  # noqa: SIM115 - closed below
                err = open(workdir / f"{i}.err", "w+")  # noqa: SIM115
                procs.append((subprocess.Popen(argv, stdout=out, stderr=err, env=environment, cwd=ROOT), out, err))
            deadline = time.monotonic() + timeout
            while proxy.pending + sum(1 for p, _, _ in procs if p.poll() is not None) < len(procs):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {proxy.pending} of {len(procs)} processes reached the gate")
                time.sleep(0.02)
            released = time.monotonic()
            proxy.release()
            results = []
            for proc, out, err in procs:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                out.seek(0)
                err.seek(0)
                results.append(Finished(proc.returncode, out.read(), err.read()))
            return results, time.monotonic() - released
        finally:
            for proc, out, err in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                out.close()
                err.close()


def migrate_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "migrate", *args]


def parse_json_lines(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def summary(finished: Finished) -> dict[str, object]:
    """The migration_finished line of one run."""
    lines = [e for e in parse_json_lines(finished.stdout) if e.get("event") == "migration_finished"]
    assert len(lines) == 1, finished
    return lines[0]
