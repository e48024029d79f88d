"""Secrets never reach a log: every line of a full run is captured and searched."""

from __future__ import annotations

import subprocess
import sys

import httpx
from langgraph_sdk import get_sync_client

from service.db import to_url, with_params
from tests.support.pg import ADMIN_PASSWORD
from tests.support.race import ROOT, migrate_cmd, python_env
from tests.support.service import ServiceProcess

API_KEY = "sk-live-" + "7" * 32
OTHER_KEY = "sk-other-" + "3" * 32


def test_should_keep_the_database_password_and_api_keys_out_of_every_log(fresh_db: str) -> None:
    outputs: list[str] = []

    def migrate(conninfo: str, *args: str) -> int:
        env = python_env(MIGRATE_DATABASE_URL=to_url(conninfo), LOG_LEVEL="DEBUG")
        done = subprocess.run(migrate_cmd(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
                              check=False)
        outputs.extend([done.stdout, done.stderr])
        return done.returncode

    assert migrate(fresh_db) == 0
    assert migrate(with_params(fresh_db, password="not-" + ADMIN_PASSWORD)) != 0  # a wrong password, logged
    assert migrate(fresh_db, "--check") == 0

    pod = ServiceProcess(fresh_db, API_KEYS=f"{OTHER_KEY},{API_KEY}", LOG_LEVEL="DEBUG").start()
    try:
        client = get_sync_client(url=pod.url, api_key=API_KEY)
        thread_id = client.threads.create(graph_id="support")["thread_id"]
        client.runs.wait(thread_id, "support", input={"messages": [{"role": "user", "content": "Is it guaranteed?"}]})
        client.threads.update_state(thread_id, {"approved_reply": "ok"})
        list(client.runs.stream(thread_id, "support", input=None, stream_mode="updates"))
        for key in (API_KEY[:-1], API_KEY + "x", OTHER_KEY.upper(), ""):
            assert httpx.get(f"{pod.url}/threads/{thread_id}", headers={"x-api-key": key}).status_code == 401
        assert httpx.post(f"{pod.url}/threads", json={"x": 1}, headers={"x-api-key": API_KEY}).status_code == 200
        assert httpx.get(pod.url + "/metrics").status_code == 200
    finally:
        pod.stop()
    outputs.append(pod.logs())

    prune = subprocess.run([sys.executable, "-m", "service.prune", "--older-than-days", "1"], cwd=ROOT,
                           env=python_env(DATABASE_URL=to_url(fresh_db), LOG_LEVEL="DEBUG"), capture_output=True,
                           text=True, timeout=60, check=False)
    outputs.extend([prune.stdout, prune.stderr])

    everything = "\n".join(outputs)
    assert len(everything.splitlines()) > 20  # the runs above did log, at DEBUG
    for secret in (ADMIN_PASSWORD, API_KEY, OTHER_KEY):
        assert secret not in everything
    assert "Traceback" not in everything
