"""CORS: off unless configured; CORS_ALLOW_ORIGINS and CORS_CONFIG as the LangGraph Server reads them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess

APP = "http://app.example"
OTHER = "http://evil.example"


def preflight(url: str, origin: str, method: str = "POST", headers: str = "content-type,x-api-key") -> httpx.Response:
    return httpx.options(f"{url}/threads", headers={"Origin": origin, "Access-Control-Request-Method": method,
                                                    "Access-Control-Request-Headers": headers})


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


@pytest.fixture(scope="module")
def db(pg_server: Any) -> Iterator[str]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("cors")
    run(Options(conninfo=conninfo))
    yield conninfo
    pg_server.drop_database(conninfo)


def test_should_send_no_cors_headers_unless_configured(db: str) -> None:
    with ServiceProcess(db) as pod:
        assert cors_headers(preflight(pod.url, APP)) == {}
        assert cors_headers(httpx.post(f"{pod.url}/threads", json={}, headers={"Origin": APP})) == {}


def test_should_allow_the_listed_origins(db: str) -> None:
    with ServiceProcess(db, CORS_ALLOW_ORIGINS=f"{APP}, http://second.example") as pod:
        allowed = preflight(pod.url, APP)
        assert allowed.status_code in (200, 204)
        got = cors_headers(allowed)
        assert got["access-control-allow-origin"] == APP
        assert "POST" in got["access-control-allow-methods"]
        assert {h.strip() for h in got["access-control-allow-headers"].lower().split(",")} >= {"content-type",
                                                                                               "x-api-key"}
        assert got["access-control-allow-credentials"] == "true"
        refused = preflight(pod.url, OTHER)
        assert cors_headers(refused) == {}  # no Access-Control-Allow-* header at all
        # The actual request: the browser may read Content-Location (to join a run again).
        thread = httpx.post(f"{pod.url}/threads", json={}, headers={"Origin": APP})
        assert thread.status_code == 200 and cors_headers(thread)["access-control-allow-origin"] == APP
        run = httpx.post(f"{pod.url}/threads/{thread.json()['thread_id']}/runs/wait", headers={"Origin": APP},
                         json={"assistant_id": "support", "input": {"messages": [{"role": "user", "content": "hi"}]}},
                         timeout=60)
        exposed = {h.strip() for h in cors_headers(run)["access-control-expose-headers"].lower().split(",")}
        assert "content-location" in exposed and run.headers["content-location"]
        assert "access-control-allow-origin" not in cors_headers(
            httpx.post(f"{pod.url}/threads", json={}, headers={"Origin": OTHER}))


def test_should_follow_cors_config_and_answer_preflights_without_a_key(db: str) -> None:
    config = {"allow_origins": [APP], "allow_methods": ["GET", "POST"], "allow_headers": ["content-type", "x-api-key"],
              "expose_headers": ["content-location", "x-pagination-total"], "max_age": 60}
    with ServiceProcess(db, CORS_CONFIG=json.dumps(config), API_KEYS="k1") as pod:
        got = cors_headers(preflight(pod.url, APP))  # a browser's preflight carries no API key
        assert got["access-control-allow-origin"] == APP
        assert got["access-control-max-age"] == "60"
        assert "access-control-allow-credentials" not in got
        assert {m.strip() for m in got["access-control-allow-methods"].split(",")} >= {"GET", "POST"}
        assert cors_headers(preflight(pod.url, APP, method="DELETE")) == {}
        assert cors_headers(preflight(pod.url, OTHER)) == {}
        # Without the key the request itself is refused, with CORS headers so the page can read why.
        denied = httpx.post(f"{pod.url}/threads", json={}, headers={"Origin": APP})
        assert denied.status_code == 401 and cors_headers(denied)["access-control-allow-origin"] == APP
        ok = httpx.post(f"{pod.url}/threads", json={}, headers={"Origin": APP, "x-api-key": "k1"})
        assert ok.status_code == 200
        assert cors_headers(ok)["access-control-expose-headers"].lower() == "content-location, x-pagination-total"


@pytest.mark.parametrize("bad", ['{"allow_origins": "http://a"}', "[1]", '{"allow_methods": ["FETCH"]}',
                                 '{"max_age": -1}', '{"origins": []}', "not json"])
def test_should_stop_on_a_bad_cors_config_with_one_line(bad: str) -> None:
    env = python_env(CORS_CONFIG=bad, CHECKPOINTER="memory", PORT="1")
    done = subprocess.run([sys.executable, "-m", "service"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("service: error: CORS_CONFIG"), done.stderr
