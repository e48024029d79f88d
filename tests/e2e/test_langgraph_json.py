"""A LangGraph project's langgraph.json served as is: graphs (files, modules, factories), env, http.app, store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from service.db import to_url
from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess
from tests.support.services import free_port

PROJECT = Path(__file__).resolve().parents[1] / "support" / "project"
CONFIG = str(PROJECT / "langgraph.json")


@pytest.fixture(scope="module")
def pod(pg_server: Any) -> Iterator[ServiceProcess]:
    conninfo = pg_server.create_database("lgjson")
    # The migration job reads the same langgraph.json: its store.index needs the vector steps.
    job = subprocess.run([sys.executable, "-m", "migrate"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=python_env(DATABASE_URL=to_url(conninfo), LANGGRAPH_CONFIG=CONFIG))
    assert job.returncode == 0, job.stderr
    # GRAPHS unset so that langgraph.json's graphs apply; the process env wins over the file's env.
    with ServiceProcess(conninfo, GRAPHS="", LANGGRAPH_CONFIG=CONFIG, AGENT_SIGNATURE="from-process") as p:
        yield p
    pg_server.drop_database(conninfo)


@pytest.fixture
def client(pod: ServiceProcess) -> SyncLangGraphClient:
    return get_sync_client(url=pod.url)


def test_should_serve_the_files_graphs_with_its_env(client: SyncLangGraphClient) -> None:
    assert {a["graph_id"] for a in client.assistants.search(limit=100)} == {"greeter", "configured", "runtime",
                                                                           "by_module"}
    out = client.runs.wait(None, "greeter", input={})
    assert out["text"] == "hello from langgraph.json / from-process"
    assert client.runs.wait(None, "by_module", input={})["text"] == out["text"]


def test_should_build_a_factory_graph_per_run_from_its_config(client: SyncLangGraphClient) -> None:
    assert client.runs.wait(None, "configured", input={}, config={"configurable": {"tone": "formal"}})[
        "built_with"] == "formal"
    assert client.runs.wait(None, "configured", input={}, config={"configurable": {"tone": "casual"}})[
        "built_with"] == "casual"
    assert client.runs.wait(None, "configured", input={})["built_with"] == "plain"


def test_should_pass_a_server_runtime_to_a_factory(client: SyncLangGraphClient) -> None:
    assert client.runs.wait(None, "runtime", input={})["access"] == "threads.create_run"
    assert {n["id"] for n in client.assistants.get_graph("runtime")["nodes"]} >= {"node"}


def test_should_send_paths_the_api_does_not_serve_to_http_app(pod: ServiceProcess) -> None:
    custom = httpx.get(pod.url + "/custom/hello").json()
    assert custom == {"custom": True, "path": "/custom/hello", "method": "GET", "lifespan": ["started"]}
    assert httpx.post(pod.url + "/webhooks/x").json()["path"] == "/webhooks/x"
    assert httpx.get(pod.url + "/ok").json() == {"ok": True}
    api_path = httpx.get(pod.url + "/threads/search")  # an API path with another method stays the API's
    assert api_path.status_code == 405 and api_path.headers["content-type"].startswith("application/problem+json")


def test_should_search_the_store_with_the_files_index(client: SyncLangGraphClient) -> None:
    client.store.put_item(["notes"], "a", {"text": "the deploy uses postgres"})
    client.store.put_item(["notes"], "b", {"text": "lunch is at noon"})
    found = client.store.search_items(["notes"], query="postgres deploy", limit=1)["items"]
    assert [i["key"] for i in found] == ["a"]


def _serve(tmp_path: Path, config: dict[str, Any] | str | None, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "langgraph.json"
    if config is not None:
        path.write_text(config if isinstance(config, str) else json.dumps(config))
    return subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=python_env(CHECKPOINTER="memory", PORT=str(free_port()), GRAPHS="",
                                         LANGGRAPH_CONFIG=str(path), **env))


@pytest.mark.parametrize(("config", "env", "says"), [
    (None, {}, "cannot read"),
    ("{not json", {}, "not valid JSON"),
    ({"graphs": {"g": "./missing.py:graph"}}, {}, "no such file"),
    ({"graphs": {"g": "service.graphs.support:nothing"}}, {}, "has no attribute 'nothing'"),
    ({"graphs": {"g": "service.graphs.support"}}, {}, "'module:attr' or 'file.py:attr'"),
    ({"graphs": {"g": "json:dumps"}, "store": {"index": {"dims": 0, "embed": "x:y"}}}, {}, "dims"),
    ({"graphs": {"g": "service.graphs.support:graph"}, "http": {"app": "./nope.py:app"}}, {}, "http.app"),
    ({"graphs": {"g": "service.graphs.support:graph"}}, {"LANGGRAPH_STORE": "[1]"}, "LANGGRAPH_STORE"),
    ({"graphs": {"g": "service.graphs.support:graph"}}, {"N_JOBS_PER_WORKER": "many"}, "N_JOBS_PER_WORKER"),
    ({"graphs": {"g": "service.graphs.support:graph"}, "env": "./missing.env"}, {}, "missing.env"),
])
def test_should_stop_with_one_line_on_bad_configuration(tmp_path: Path, config: Any, env: dict[str, str],
                                                        says: str) -> None:
    result = _serve(tmp_path, config, **env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_should_stop_without_a_traceback_when_a_factory_fails(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def make(config):\n    raise RuntimeError('no model configured')\n")
    result = _serve(tmp_path, {"graphs": {"g": "./broken.py:make"}})
    assert result.returncode != 0
    assert "no model configured" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_should_stop_with_one_line_when_http_apps_startup_fails(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', 'message': 'Traceback (most recent call last):\\n"
        "  File x\\nRuntimeError: the cache is unreachable'})\n")
    result = _serve(tmp_path, {"graphs": {"g": "service.graphs.support:graph"}, "http": {"app": "./app.py:app"}})
    assert result.returncode != 0
    assert "http.app start-up failed: the cache is unreachable" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_should_serve_an_http_app_without_lifespan_support(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "async def app(scope, receive, send):\n"
        "    assert scope['type'] == 'http', 'no lifespan here'\n"
        "    await send({'type': 'http.response.start', 'status': 204, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b''})\n")
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "service.graphs.support:graph"},
                                                         "http": {"app": "./app.py:app"}}))
    with ServiceProcess(None, CHECKPOINTER="memory", GRAPHS="", LANGGRAPH_CONFIG=str(tmp_path / "langgraph.json")) as p:
        assert httpx.get(p.url + "/anything").status_code == 204
        assert httpx.get(p.url + "/info").json()["graphs"] == ["g"]
