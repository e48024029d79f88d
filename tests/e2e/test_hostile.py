"""Hostile input: schemathesis against the service's own OpenAPI document, and explicit cases."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.pg import ADMIN_PASSWORD
from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess

SCHEMATHESIS = ROOT / ".venv" / "bin" / "st"


@pytest.fixture(scope="module")
def pod(pg_server: Any) -> Iterator[ServiceProcess]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("hostile")
    run(Options(conninfo=conninfo))
    with ServiceProcess(conninfo, MAX_BODY_BYTES="65536") as p:
        yield p
    assert "Traceback" not in p.logs() and ADMIN_PASSWORD not in p.logs()
    assert "unhandled_error" not in p.logs(), [ln for ln in p.logs().splitlines() if "unhandled_error" in ln][:3]
    pg_server.drop_database(conninfo)


def test_should_survive_schemathesis_without_5xx_or_schema_violations(pod: ServiceProcess) -> None:
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{pod.url}/docs/openapi.json", "--max-examples", "30", "--seed", "20261122",
         "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
         # One worker: CPython 3.11.7's ast is not thread-safe (gh-106905), and hypothesis parses lambdas.
         "--workers", "1", "--no-color",
         # A thread's stream stays open for the runs to come (as on the LangGraph Server): no end to read.
         "--exclude-path", "/threads/{thread_id}/stream", "--request-timeout", "60"],
        capture_output=True, text=True, timeout=300, env=python_env(), check=False,
    )
    summary = re.search(r"(\d+) generated, (\d+) (?:passed|found)", result.stdout)
    assert result.returncode == 0, result.stdout[-4000:]
    assert summary is not None and int(summary.group(1)) > 500, result.stdout[-2000:]
    print(f"\nschemathesis: {summary.group(0)}")


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()  # type: ignore[no-any-return]


class TestExplicitCases:
    def test_should_refuse_deeply_nested_json(self, pod: ServiceProcess) -> None:
        for depth in (100, 20_000):  # beyond our limit, and beyond what a naive recursive walk survives
            body = '{"metadata": {"deep": ' + "[" * depth + '"bottom"' + "]" * depth + "}}"
            response = httpx.post(pod.url + "/threads", content=body.encode(),
                                  headers={"content-type": "application/json"})
            problem(response, 422)

    def test_should_refuse_invalid_utf8(self, pod: ServiceProcess) -> None:
        response = httpx.post(pod.url + "/threads", content=b'{"metadata": {"name": "\xff\xfe"}}',
                              headers={"content-type": "application/json"})
        problem(response, 422)

    @pytest.mark.parametrize("text", ["nul \u0000 inside", "lone \ud800 surrogate"])
    def test_should_refuse_text_the_database_cannot_store(self, pod: ServiceProcess, text: str) -> None:
        body = ('{"metadata": {"note": ' + json.dumps(text) + "}}").encode()
        response = httpx.post(pod.url + "/threads", content=body, headers={"content-type": "application/json"})
        problem(response, 422)
        response = httpx.post(pod.url + "/threads/search", content=body, headers={"content-type": "application/json"})
        problem(response, 422)

    def test_should_treat_sql_metacharacters_as_plain_data(self, pod: ServiceProcess) -> None:
        nasty = "x'); DROP TABLE threads; --"
        created = httpx.post(pod.url + "/threads", json={"thread_id": nasty, "metadata": {"k": "' OR 1=1 --"}})
        assert created.status_code == 200
        fetched = httpx.get(pod.url + "/threads/" + urllib.parse.quote(nasty, safe=""))
        assert fetched.status_code == 200 and fetched.json()["thread_id"] == nasty
        found = httpx.post(pod.url + "/threads/search", json={"metadata": {"k": "' OR 1=1 --"}}).json()
        assert [t["thread_id"] for t in found] == [nasty]
        assert httpx.post(pod.url + "/threads/search", json={"metadata": {"k": "%"}}).json() == []
        assert httpx.post(pod.url + "/threads/count", json={}).json() >= 1  # the table is still there

    def test_should_ignore_unknown_fields(self, pod: ServiceProcess) -> None:
        response = httpx.post(pod.url + "/threads", json={"metadata": {"a": 1}, "no_such_field": {"x": 1}})
        assert response.status_code == 200
        assert response.json()["metadata"] == {"a": 1}

    @pytest.mark.parametrize("body", [{"limit": -1}, {"offset": -5}, {"limit": 10**6}])
    def test_should_refuse_out_of_range_paging(self, pod: ServiceProcess, body: dict[str, int]) -> None:
        problem(httpx.post(pod.url + "/threads/search", json=body), 422)

    def test_should_refuse_integers_past_64_bits(self, pod: ServiceProcess) -> None:
        problem(httpx.post(pod.url + "/threads/search", json={"metadata": {"n": 2**70}}), 422)

    def test_should_refuse_values_the_graph_state_cannot_take(self, pod: ServiceProcess) -> None:
        thread_id = httpx.post(pod.url + "/threads", json={"graph_id": "support"}).json()["thread_id"]
        problem(httpx.post(f"{pod.url}/threads/{thread_id}/state", json={"values": [None, None]}), 422)
