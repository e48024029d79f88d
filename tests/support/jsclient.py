"""The official JS client (@langchain/langgraph-sdk, from the npm registry) under the machine's Node.js.

tests/e2e/js holds a package.json with the exact version and its package-lock.json; ``npm ci``
installs it there once (node_modules is not committed). Scripts print one JSON object.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "e2e" / "js"


def ensure_installed() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("LOUD SKIP: node and npm are not installed (the JS SDK tests need them)")
    lock, installed = JS_DIR / "package-lock.json", JS_DIR / "node_modules" / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def run_js(script: str, url: str, *args: str, **env: str) -> Any:
    """Run ``tests/e2e/js/<script> [args]`` against the service at ``url``; return the JSON it printed."""
    import os

    ensure_installed()
    done = subprocess.run(["node", script, *args], cwd=JS_DIR, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "LANGGRAPH_URL": url, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
