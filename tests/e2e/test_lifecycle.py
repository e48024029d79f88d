"""Start-up without a schema, drain on SIGTERM, API keys, and the in-memory mode."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import psycopg
from langgraph_sdk import get_sync_client

from tests.support.pg import ADMIN_PASSWORD
from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess


def public_tables(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    return int(row[0]) if row else -1


class TestSchemaOwnership:
    def test_should_stay_not_ready_on_an_empty_database_and_create_nothing(self, fresh_db: str) -> None:
        with ServiceProcess(fresh_db).start(wait="/ok") as pod:
            response = httpx.get(pod.url + "/ready")
            assert response.status_code == 503
            assert response.headers["content-type"].startswith("application/problem+json")
            body = response.json()
            assert body["reason"] == "schema behind"
            assert "checkpointer at v-1 needs v9" in body["missing"]
            assert httpx.post(pod.url + "/threads", json={}).status_code == 503
            assert public_tables(fresh_db) == 0

            # Once the migration job has run, the same process becomes ready without a restart.
            migrate = subprocess.run([sys.executable, "-m", "migrate"], cwd=ROOT, capture_output=True,
                                     env=python_env(MIGRATE_DATABASE_URL=fresh_db), check=False)
            assert migrate.returncode == 0
            pod.wait_for("/ready", timeout=10)
            assert httpx.post(pod.url + "/threads", json={}).status_code == 200
        assert "service_not_ready" in pod.logs() and "service_ready" in pod.logs()

    def test_should_serve_with_a_role_that_cannot_create_anything(self, pg_server: Any, migrated_db: str) -> None:
        from psycopg import sql

        role = "svc_" + migrated_db.split("dbname=")[1].split()[0][-12:]
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'svc-pw'").format(sql.Identifier(role)))
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(role)))
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        try:
            from service.db import with_params

            with ServiceProcess(with_params(migrated_db, user=role, password="svc-pw")) as pod:
                client = get_sync_client(url=pod.url)
                thread = client.threads.create(graph_id="support")
                out = client.runs.wait(thread["thread_id"], "support",
                                       input={"messages": [{"role": "user", "content": "hello"}]})
                assert out["messages"][-1]["type"] == "ai"
        finally:
            with psycopg.connect(migrated_db, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            with psycopg.connect(pg_server.admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


class TestDrain:
    def test_should_finish_a_run_in_flight_across_sigterm(self, migrated_db: str) -> None:
        pod = ServiceProcess(migrated_db).start()
        client = get_sync_client(url=pod.url)
        thread_id = client.threads.create(graph_id="slow")["thread_id"]
        result: dict[str, Any] = {}

        def run() -> None:
            response = httpx.post(f"{pod.url}/threads/{thread_id}/runs/wait", timeout=30,
                                  json={"assistant_id": "slow",
                                        "input": {"messages": [{"role": "user", "content": "hi"}], "delay": 2}})
            result["status"], result["body"] = response.status_code, response.json()

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 60
        while client.threads.get(thread_id)["status"] != "busy":  # the run is in flight
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        pod.signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:  # /ready fails once the signal is handled: the listener is closed
            try:
                httpx.get(pod.url + "/ready", timeout=1).raise_for_status()
            except httpx.HTTPError:
                break
            assert time.monotonic() < deadline, "/ready still answers after SIGTERM"
            time.sleep(0.05)
        t.join()
        code = pod.stop()

        assert result["status"] == 200, result
        assert result["body"]["messages"][-1]["content"] == "done: hi"
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
        logs = pod.logs()
        assert "draining" in logs and "database_pool_closed" in logs
        assert logs.index("run_finished") < logs.index("database_pool_closed")


class TestApiKeys:
    def test_should_require_a_key_everywhere_but_health_and_metrics(self, migrated_db: str) -> None:
        key = "k3y-" + "x" * 24
        with ServiceProcess(migrated_db, API_KEYS=f"other-key,{key}") as pod:
            for path in ("/ok", "/ready", "/metrics"):
                assert httpx.get(pod.url + path).status_code == 200, path
            denied = httpx.post(pod.url + "/threads", json={})
            assert denied.status_code == 401
            assert denied.headers["content-type"].startswith("application/problem+json")
            assert httpx.post(pod.url + "/threads", json={}, headers={"x-api-key": "wrong"}).status_code == 401
            client = get_sync_client(url=pod.url, api_key=key)
            assert client.threads.create()["status"] == "idle"
            assert "support" in {a["graph_id"] for a in client.assistants.search()}
        assert key not in pod.logs()


class TestMemoryMode:
    def test_should_warn_and_report_the_in_memory_checkpointer(self) -> None:
        with ServiceProcess(None, CHECKPOINTER="memory") as pod:
            assert httpx.get(pod.url + "/info").json()["checkpointer"] == "memory"
            client = get_sync_client(url=pod.url)
            thread_id = client.threads.create(graph_id="support")["thread_id"]
            paused = client.runs.wait(thread_id, "support",
                                      input={"messages": [{"role": "user", "content": "Is my investment guaranteed?"}]})
            assert len(paused["messages"]) == 1
            assert client.threads.get(thread_id)["status"] == "interrupted"
        assert "memory_checkpointer" in pod.logs()
        assert ADMIN_PASSWORD not in pod.logs()
