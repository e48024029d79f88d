"""The image size estimate: scripts/estimate-image-size.sh runs the Dockerfile's build stage here.

It proves, without Docker, that every locked dependency has a published wheel for this platform,
that the lock is complete (`pip check`), that bytecode compiles, and that the packages import;
then docs/kubernetes.md must quote the numbers it prints.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache

import pytest

from tests.chart.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "estimate-image-size.sh"
DOC = REPO_ROOT / "docs" / "kubernetes.md"


@cache
def estimate() -> dict[str, int]:
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"estimate-image-size.sh failed:\n{result.stdout}\n{result.stderr[-3000:]}")
    return {k: int(v) for k, v in re.findall(r"^(\w+)=(\d+)$", result.stdout, re.MULTILINE)}


def test_should_install_every_locked_wheel_and_the_project() -> None:
    numbers = estimate()
    locked = [line for line in (REPO_ROOT / "requirements.lock").read_text().splitlines() if line.strip()]
    assert numbers["wheel_count"] == len(locked) + 1  # the lock plus the project's own wheel


def test_should_add_the_venv_to_the_base() -> None:
    numbers = estimate()
    venv_mb = round(numbers["venv_bytes"] / 1_000_000)
    assert numbers["estimate_mb"] == numbers["base_mb"] + venv_mb
    # Installed and compiled is bigger than the compressed wheels, and not absurdly so.
    assert 2 * numbers["wheel_bytes"] < numbers["venv_bytes"] < 12 * numbers["wheel_bytes"]


def test_docs_should_quote_the_estimate() -> None:
    numbers = estimate()
    text = DOC.read_text()
    quoted_total = int(re.search(r"\*\*about (\d+) MB\*\* uncompressed", text).group(1))  # type: ignore[union-attr]
    quoted_venv = int(re.search(r"\| `/opt/venv`: .*\| (\d+) MB \|", text).group(1))  # type: ignore[union-attr]
    venv_mb = round(numbers["venv_bytes"] / 1_000_000)
    # Within 5 %: a dependency update that moves the size by more must update the docs.
    assert abs(quoted_venv - venv_mb) <= 0.05 * venv_mb, (quoted_venv, venv_mb)
    assert abs(quoted_total - numbers["estimate_mb"]) <= 0.05 * numbers["estimate_mb"]
    assert "docker image inspect --format '{{.Size}}'" in text
