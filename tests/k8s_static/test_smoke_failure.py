"""`python -m service.smoke` (the chart's `helm test` Pod) says which URL failed and why.

Real processes against real sockets on loopback: one that accepts connections and never answers
(a timeout, whose httpx message is empty) and one that is closed (a refused connection).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.chart.conftest import REPO_ROOT


def smoke(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.smoke", "--url", url, "--timeout", "0.5"],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections the kernel accepts and nobody ever answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: connecting is refused


class TestSmokeFailureMessage:
    def test_should_name_the_url_and_the_timeout(self, silent_port: int) -> None:
        result = smoke(f"http://127.0.0.1:{silent_port}")
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("smoke: FAILED: ReadTimeout on GET "), lines[0]
        assert f"http://127.0.0.1:{silent_port}/ready" in lines[0]
        cause = lines[0].split("/ready: ", 1)[1]
        assert cause.strip(), lines[0]

    def test_should_name_the_url_and_the_refusal(self, closed_port: int) -> None:
        result = smoke(f"http://127.0.0.1:{closed_port}/")
        assert result.returncode == 1
        line = result.stderr.strip()
        assert "\n" not in line
        assert line.startswith("smoke: FAILED: ConnectError on GET "), line
        assert f"http://127.0.0.1:{closed_port}/ready" in line
        assert "refused" in line.lower() or "connection attempts failed" in line.lower(), line
