"""The pieces the kind tests run inside the cluster, run here against a real service process.

k8s-tests/loader.py (the in-cluster traffic) and k8s-tests/graphs/k8s_graphs.py (the slow graph
mounted into the pods) cannot be tried on a cluster here, but they can against `python -m service`
on the test PostgreSQL: the loader must count finished conversations, and count failures when the
service goes away.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.race import ROOT
from tests.support.service import ServiceProcess

K8S_TESTS = ROOT / "k8s-tests"
GRAPHS = json.dumps({"support": "service.graphs.support:graph", "slow": "k8s_graphs:slow"})


def start_loader(url: str, stop_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(K8S_TESTS / "loader.py"), "--url", url, "--stop-file",
                             str(stop_file), "--report-every", "1", "--timeout", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def read_until(loader: subprocess.Popen[str], done: Callable[[dict[str, Any]], bool]) -> str:
    """Read the loader's progress lines (one per conversation) until one satisfies ``done``."""
    assert loader.stdout is not None
    seen = []
    for line in loader.stdout:
        seen.append(line)
        if line.startswith("{") and done(json.loads(line)):
            return "".join(seen)
    raise AssertionError(f"the loader ended first: {''.join(seen)[-2000:]}")


def service(conninfo: str) -> ServiceProcess:
    pythonpath = f"{ROOT}{os.pathsep}{K8S_TESTS / 'graphs'}"
    return ServiceProcess(conninfo, GRAPHS=GRAPHS, PYTHONPATH=pythonpath)


def test_loader_should_hold_conversations_and_stop_on_its_stop_file(migrated_db: str, tmp_path: Path) -> None:
    with service(migrated_db) as svc:
        loader = start_loader(svc.url, tmp_path / "stop")
        head = read_until(loader, lambda p: int(p["conversations"]) >= 2)
        (tmp_path / "stop").touch()
        out, err = loader.communicate(timeout=60)
        out = head + out
    assert loader.returncode == 0, err
    summary = lines(out)[-1]
    assert summary["event"] == "summary"
    assert summary["failed_requests"] == 0, summary["errors"]
    assert isinstance(summary["conversations"], int) and summary["conversations"] >= 2
    assert summary["requests"] == 6 * summary["conversations"]


def test_loader_should_count_failures_when_the_service_is_gone(migrated_db: str, tmp_path: Path) -> None:
    svc = service(migrated_db).start()
    loader = start_loader(svc.url, tmp_path / "stop")
    head = read_until(loader, lambda p: int(p["conversations"]) >= 1)
    svc.stop()
    head += read_until(loader, lambda p: int(p["failed_requests"]) >= 1)
    (tmp_path / "stop").touch()
    out, err = loader.communicate(timeout=60)
    out = head + out
    assert loader.returncode == 0, err
    summary = lines(out)[-1]
    assert summary["conversations"] >= 1
    assert isinstance(summary["failed_requests"], int) and summary["failed_requests"] >= 1
    assert summary["errors"]


def test_slow_graph_should_take_its_delay(migrated_db: str) -> None:
    with service(migrated_db) as svc:
        thread = httpx.post(f"{svc.url}/threads", json={}, timeout=10).json()
        started = time.monotonic()
        result = httpx.post(f"{svc.url}/threads/{thread['thread_id']}/runs/wait", timeout=30, json={
            "assistant_id": "slow", "input": {"messages": [{"role": "user", "content": "hi"}], "delay": 1.5}})
        took = time.monotonic() - started
    assert result.status_code == 200, result.text
    assert result.json()["messages"][-1]["content"] == "done: hi"
    assert took >= 1.5
