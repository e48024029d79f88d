"""Run ``python -m service`` as a real process on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

from service.db import to_url
from tests.support.graphs import GRAPHS
from tests.support.race import ROOT, python_env
from tests.support.services import free_port


class ServiceProcess:
    def __init__(self, conninfo: str | None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {"PORT": str(self.port), "HOST": "127.0.0.1", "GRAPHS": GRAPHS, "RUN_LEASE_SECONDS": "3",
                "DRAIN_TIMEOUT": "15", "DB_POOL_TIMEOUT": "3", "LOG_LEVEL": "INFO"}
        if conninfo is not None:
            base["DATABASE_URL"] = to_url(conninfo)
        self.env = python_env(**{**base, **env})
        self.log_path = Path(tempfile.mkdtemp(prefix="svc-")) / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.cwd: Path = ROOT  # another tree's service (an earlier release) runs from its own directory

    def start(self, *, wait: str | None = "/ready", timeout: float = 30) -> ServiceProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "service"], env=self.env, cwd=self.cwd,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_for(wait, timeout=timeout)
        return self

    def refused_start(self, code: int = 2, timeout: float = 30) -> str:
        """Start a service that must stop at once with ``code`` (a bad setting); return its logs."""
        self.start(wait=None)
        try:
            assert self.proc is not None and self.proc.wait(timeout) == code, self.logs()[-2000:]
        finally:
            self.stop()
        return self.logs()

    def wait_for(self, path: str, status: int = 200, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                last = httpx.get(self.url + path, timeout=2).status_code
                if last == status:
                    return
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"{path} did not answer {status} in {timeout}s (last: {last})\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
