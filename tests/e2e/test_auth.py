"""Per-user auth with LangGraph's own tutorial handlers: two users and an operator, route by route.

The service runs as a process over a real PostgreSQL with ``LANGGRAPH_AUTH`` naming the
reference handlers (tests/support/auth/tutorial.py, as LangGraph's tutorial writes them) and
``API_KEYS`` for the operator. User 1 creates a thread, runs, an assistant, crons and a store
item, all marked with a secret; then user 2 calls every route of the app (the table below must
name each one, so a route added without an authorization check fails here) with user 1's ids and
must get what an absent resource gets, and nothing of user 1 in any body. User 1 and the operator
see the same resources (so the filters, not absence, hide them).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.graphs import GRAPHS
from tests.support.service import ServiceProcess

TUTORIAL = "tests/support/auth/tutorial.py:auth"
U1 = {"Authorization": "Bearer user1-token"}
U2 = {"Authorization": "Bearer user2-token"}
OPERATOR_KEY = "operator-key-" + uuid.uuid4().hex
OP = {"x-api-key": OPERATOR_KEY}
AUTH_GRAPHS = GRAPHS[:-1] + ', "whoami": "tests/support/auth/whoami.py:make"}'
PUBLIC = {("GET", "/ok"), ("GET", "/ready"), ("GET", "/metrics")}


def app_routes(env: dict[str, str]) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, from its own route list (OPTIONS is Litestar's, for CORS)."""
    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings.from_env({"CHECKPOINTER": "postgres", "DATABASE_URL": "postgresql://x@127.0.0.1/x",
                                        **env}))
    out = set()
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for handler in route.route_handlers:  # type: ignore[attr-defined]
            for method in handler.http_methods:
                if method != "OPTIONS":
                    out.add((method, path))
    return out


@pytest.fixture(scope="module")
def pod(pg_server: Any) -> Iterator[ServiceProcess]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("auth_tutorial")
    run(Options(conninfo=conninfo))
    with ServiceProcess(conninfo, LANGGRAPH_AUTH=json.dumps({"path": TUTORIAL}), API_KEYS=OPERATOR_KEY,
                        GRAPHS=AUTH_GRAPHS) as p:
        yield p
    assert "Traceback" not in p.logs()
    assert "unhandled_error" not in p.logs(), [ln for ln in p.logs().splitlines() if "unhandled_error" in ln][:3]
    pg_server.drop_database(conninfo)


@dataclass
class World:
    """User 1's resources, by the names the route table formats paths with."""

    secret: str
    ids: dict[str, str] = field(default_factory=dict)

    def private(self) -> list[str]:
        return [self.secret, *(v for k, v in self.ids.items() if k.endswith("_id"))]


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json() if response.content.strip() else None


@pytest.fixture(scope="module")
def world(pod: ServiceProcess) -> Iterator[World]:
    yield from build_world(pod, U1)


def build_world(pod: ServiceProcess, U1: dict[str, str]) -> Iterator[World]:
    """User 1's thread, runs (one finished, one running), assistant, crons and store item."""
    w = World(secret="user1-secret-" + uuid.uuid4().hex)
    with httpx.Client(base_url=pod.url, timeout=30) as c:
        assistant = ok(c.post("/assistants", headers=U1, json={"graph_id": "slow", "name": w.secret,
                                                                 "metadata": {"note": w.secret}}))
        thread = ok(c.post("/threads", headers=U1, json={"metadata": {"note": w.secret}}))
        tid = thread["thread_id"]
        run = c.post(f"/threads/{tid}/runs/wait", headers=U1, json={
            "assistant_id": assistant["assistant_id"], "metadata": {"note": w.secret},
            "input": {"messages": [{"role": "user", "content": w.secret}], "delay": 0}})
        ok(run)
        run_id = run.headers["Content-Location"].rsplit("/", 1)[-1]
        state = ok(c.get(f"/threads/{tid}/state", headers=U1))
        busy = ok(c.post("/threads", headers=U1, json={"metadata": {"note": w.secret}}))
        busy_run = ok(c.post(f"/threads/{busy['thread_id']}/runs", headers=U1, json={
            "assistant_id": "slow", "input": {"messages": [{"role": "user", "content": w.secret}], "delay": 600}}))
        cron = ok(c.post(f"/threads/{tid}/runs/crons", headers=U1, json={
            "assistant_id": "slow", "schedule": "0 0 1 1 *", "metadata": {"note": w.secret},
            "input": {"messages": [{"role": "user", "content": w.secret}]}}))
        stateless_cron = ok(c.post("/runs/crons", headers=U1, json={
            "assistant_id": assistant["assistant_id"], "schedule": "0 0 1 1 *", "metadata": {"note": w.secret}}))
        ok(c.put("/store/items", headers=U1, json={"namespace": ["user1", "notes"], "key": "k1",
                                                   "value": {"note": w.secret}}))
        w.ids = {"thread_id": tid, "run_id": run_id, "assistant_id": assistant["assistant_id"],
                 "checkpoint_id": state["checkpoint"]["checkpoint_id"], "busy_thread_id": busy["thread_id"],
                 "busy_run_id": busy_run["run_id"], "cron_id": cron["cron_id"],
                 "stateless_cron_id": stateless_cron["cron_id"], "user": "user1"}
        deadline = time.monotonic() + 30
        while ok(c.get(f"/threads/{busy['thread_id']}/runs/{busy_run['run_id']}", headers=U1))["status"] != "running":
            assert time.monotonic() < deadline, "user 1's background run never started"
            time.sleep(0.05)
        yield w
        c.post(f"/threads/{busy['thread_id']}/runs/{busy_run['run_id']}/cancel", headers=U1)


def absent_ids(w: World) -> dict[str, str]:
    """The same names, for resources that do not exist (and a store namespace of nobody)."""
    return {k: (str(uuid.uuid4()) if k.endswith("_id") else "nobody") for k in w.ids}


Body = Callable[[dict[str, str]], Any]


@dataclass(frozen=True)
class Call:
    """One route: how to call it with a set of ids. ``reads``: user 1 may call it without harm."""

    path: str
    body: Body | None = None
    params: Body | None = None
    reads: bool = True
    stream: bool = False


def _run(ids: dict[str, str]) -> dict[str, Any]:
    return {"assistant_id": ids["assistant_id"], "input": {"messages": [{"role": "user", "content": "x"}],
                                                           "delay": 0}}


TABLE: dict[tuple[str, str], Call] = {
    ("GET", "/info"): Call("/info"),
    ("GET", "/openapi.json"): Call("/openapi.json"),
    ("GET", "/docs"): Call("/docs"),
    ("GET", "/docs/openapi.json"): Call("/docs/openapi.json"),
    ("GET", "/docs/openapi.yaml"): Call("/docs/openapi.yaml"),
    ("GET", "/docs/openapi.yml"): Call("/docs/openapi.yml"),
    ("GET", "/docs/elements"): Call("/docs/elements"),
    ("GET", "/docs/rapidoc"): Call("/docs/rapidoc"),
    ("GET", "/docs/redoc"): Call("/docs/redoc"),
    ("GET", "/docs/swagger"): Call("/docs/swagger"),
    ("GET", "/docs/oauth2-redirect.html"): Call("/docs/oauth2-redirect.html"),
    ("GET", "/docs/{path}"): Call("/docs/openapi.json"),
    # assistants
    ("POST", "/assistants"): Call("/assistants", lambda i: {"graph_id": "slow", "assistant_id": i["assistant_id"],
                                                            "if_exists": "do_nothing"}),
    ("POST", "/assistants/search"): Call("/assistants/search", lambda i: {"metadata": {"note": SECRET_REF}}),
    ("POST", "/assistants/count"): Call("/assistants/count", lambda i: {"metadata": {"note": SECRET_REF}}),
    ("GET", "/assistants/{assistant_id}"): Call("/assistants/{assistant_id}"),
    ("PATCH", "/assistants/{assistant_id}"): Call("/assistants/{assistant_id}", lambda i: {"metadata": {"x": 1}},
                                                  reads=False),
    ("DELETE", "/assistants/{assistant_id}"): Call("/assistants/{assistant_id}", reads=False),
    ("POST", "/assistants/{assistant_id}/versions"): Call("/assistants/{assistant_id}/versions", lambda i: {}),
    ("POST", "/assistants/{assistant_id}/latest"): Call("/assistants/{assistant_id}/latest",
                                                        lambda i: {"version": 1}, reads=False),
    ("GET", "/assistants/{assistant_id}/graph"): Call("/assistants/{assistant_id}/graph"),
    ("GET", "/assistants/{assistant_id}/schemas"): Call("/assistants/{assistant_id}/schemas"),
    ("GET", "/assistants/{assistant_id}/subgraphs"): Call("/assistants/{assistant_id}/subgraphs"),
    ("GET", "/assistants/{assistant_id}/subgraphs/{namespace}"): Call("/assistants/{assistant_id}/subgraphs/x"),
    # threads
    ("POST", "/threads"): Call("/threads", lambda i: {"thread_id": i["thread_id"], "if_exists": "do_nothing"},
                               reads=False),
    ("POST", "/threads/search"): Call("/threads/search", lambda i: {"metadata": {"note": SECRET_REF}}),
    ("POST", "/threads/count"): Call("/threads/count", lambda i: {"metadata": {"note": SECRET_REF}}),
    ("POST", "/threads/prune"): Call("/threads/prune", lambda i: {"thread_ids": [i["thread_id"]]}, reads=False),
    ("GET", "/threads/{thread_id}"): Call("/threads/{thread_id}"),
    ("PATCH", "/threads/{thread_id}"): Call("/threads/{thread_id}", lambda i: {"metadata": {"x": 1}}, reads=False),
    ("DELETE", "/threads/{thread_id}"): Call("/threads/{thread_id}", reads=False),
    ("POST", "/threads/{thread_id}/copy"): Call("/threads/{thread_id}/copy", lambda i: {}, reads=False),
    ("GET", "/threads/{thread_id}/history"): Call("/threads/{thread_id}/history"),
    ("POST", "/threads/{thread_id}/history"): Call("/threads/{thread_id}/history", lambda i: {"limit": 5}),
    ("GET", "/threads/{thread_id}/state"): Call("/threads/{thread_id}/state"),
    ("POST", "/threads/{thread_id}/state"): Call("/threads/{thread_id}/state",
                                                 lambda i: {"values": {"steps": 99}}, reads=False),
    ("POST", "/threads/{thread_id}/state/checkpoint"): Call(
        "/threads/{thread_id}/state/checkpoint", lambda i: {"checkpoint": {"checkpoint_id": i["checkpoint_id"]}}),
    ("GET", "/threads/{thread_id}/state/{checkpoint_id}"): Call("/threads/{thread_id}/state/{checkpoint_id}"),
    ("GET", "/threads/{thread_id}/storage"): Call("/threads/{thread_id}/storage"),
    ("GET", "/threads/{thread_id}/stream"): Call("/threads/{thread_id}/stream", reads=False, stream=True),
    # runs
    ("GET", "/threads/{thread_id}/runs"): Call("/threads/{thread_id}/runs"),
    ("POST", "/threads/{thread_id}/runs"): Call("/threads/{thread_id}/runs", _run, reads=False),
    ("POST", "/threads/{thread_id}/runs/wait"): Call("/threads/{thread_id}/runs/wait", _run, reads=False),
    ("POST", "/threads/{thread_id}/runs/stream"): Call("/threads/{thread_id}/runs/stream", _run, reads=False,
                                                       stream=True),
    ("POST", "/threads/{thread_id}/runs/crons"): Call("/threads/{thread_id}/runs/crons",
                                                      lambda i: {**_run(i), "schedule": "0 0 1 1 *"}, reads=False),
    ("GET", "/threads/{thread_id}/runs/{run_id}"): Call("/threads/{thread_id}/runs/{run_id}"),
    ("DELETE", "/threads/{thread_id}/runs/{run_id}"): Call("/threads/{thread_id}/runs/{run_id}", reads=False),
    ("GET", "/threads/{thread_id}/runs/{run_id}/join"): Call("/threads/{thread_id}/runs/{run_id}/join"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/stream"): Call("/threads/{thread_id}/runs/{run_id}/stream",
                                                               stream=True),
    ("POST", "/threads/{thread_id}/runs/{run_id}/cancel"): Call("/threads/{busy_thread_id}/runs/{busy_run_id}/cancel",
                                                                reads=False),
    ("POST", "/runs"): Call("/runs", _run, reads=False),
    ("POST", "/runs/wait"): Call("/runs/wait", _run, reads=False),
    ("POST", "/runs/stream"): Call("/runs/stream", _run, reads=False, stream=True),
    ("POST", "/runs/batch"): Call("/runs/batch", lambda i: [_run(i)], reads=False),
    ("POST", "/runs/cancel"): Call("/runs/cancel", lambda i: {"thread_id": i["busy_thread_id"],
                                                             "run_ids": [i["busy_run_id"]]}, reads=False),
    # crons
    ("POST", "/runs/crons"): Call("/runs/crons", lambda i: {**_run(i), "schedule": "0 0 1 1 *"}, reads=False),
    ("POST", "/runs/crons/search"): Call("/runs/crons/search", lambda i: {"metadata": {"note": SECRET_REF}}),
    ("POST", "/runs/crons/count"): Call("/runs/crons/count", lambda i: {"metadata": {"note": SECRET_REF}}),
    ("GET", "/runs/crons/{cron_id}"): Call("/runs/crons/{cron_id}"),
    ("PATCH", "/runs/crons/{cron_id}"): Call("/runs/crons/{cron_id}", lambda i: {"enabled": False}, reads=False),
    ("DELETE", "/runs/crons/{cron_id}"): Call("/runs/crons/{stateless_cron_id}", reads=False),
    # store
    ("PUT", "/store/items"): Call("/store/items", lambda i: {"namespace": [i["user"], "notes"], "key": "k1",
                                                             "value": {"overwritten": True}}, reads=False),
    ("GET", "/store/items"): Call("/store/items", params=lambda i: {"namespace": f"{i['user']}.notes", "key": "k1"}),
    ("DELETE", "/store/items"): Call("/store/items", lambda i: {"namespace": [i["user"], "notes"], "key": "k1"},
                                     reads=False),
    ("POST", "/store/items/search"): Call("/store/items/search", lambda i: {"namespace_prefix": [i["user"]]}),
    ("POST", "/store/namespaces"): Call("/store/namespaces", lambda i: {"prefix": [i["user"]]}),
}
SECRET_REF = "\0secret"  # replaced by the world's secret when a body is built


def _fill(value: Any, secret: str) -> Any:
    if value == SECRET_REF:
        return secret
    if isinstance(value, dict):
        return {k: _fill(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, secret) for v in value]
    return value


def call(pod: ServiceProcess, method: str, entry: Call, ids: dict[str, str], headers: dict[str, str],
         secret: str) -> httpx.Response:
    path = entry.path.format(**ids)
    body = _fill(entry.body(ids), secret) if entry.body is not None else None
    params = entry.params(ids) if entry.params is not None else None
    with httpx.Client(base_url=pod.url, timeout=30) as c:
        if entry.stream:
            # Whatever the stream says within a moment (a refusal is the whole answer).
            with c.stream(method, path, json=body, params=params, headers=headers, timeout=5) as r:
                text = b""
                try:
                    for chunk in r.iter_bytes():
                        text += chunk
                        if len(text) > 65536:
                            break
                except httpx.ReadTimeout:
                    pass
                r._content = text  # type: ignore[attr-defined]
                return r
        return c.request(method, path, json=body, params=params, headers=headers)


def asked(entry: Call, ids: dict[str, str], secret: str) -> str:
    """What the request itself carries (an id the caller sent may come back, as in ``instance``)."""
    body = _fill(entry.body(ids), secret) if entry.body is not None else None
    return entry.path.format(**ids) + json.dumps(body) + json.dumps(entry.params(ids) if entry.params else None)


def test_should_name_every_route_of_the_app_in_the_table() -> None:
    routes = app_routes({"LANGGRAPH_AUTH": json.dumps({"path": TUTORIAL}), "GRAPHS": AUTH_GRAPHS})
    missing = sorted(routes - set(TABLE) - PUBLIC)
    assert not missing, f"routes without an authorization case here: {missing}"
    assert not sorted(set(TABLE) - routes), "cases for routes the app does not serve"


@pytest.mark.parametrize("route", sorted(TABLE), ids=lambda r: f"{r[0]} {r[1]}")
def test_should_refuse_a_request_without_credentials_before_the_handler(pod: ServiceProcess, world: World,
                                                                        route: tuple[str, str]) -> None:
    check_refused(pod, world, route, [{"Authorization": "Bearer forged-token"}])


def check_refused(pod: ServiceProcess, world: World, route: tuple[str, str], bad: list[dict[str, str]]) -> None:
    method, _ = route
    entry = TABLE[route]
    for headers in ({}, {"Authorization": "Basic dXNlcjE6eA=="}, {"x-api-key": "not-the-key"}, *bad):
        r = call(pod, method, entry, world.ids, headers, world.secret)
        assert r.status_code in (401, 403), (headers, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json")
        sent = asked(entry, world.ids, world.secret)
        for private in world.private():
            assert private in sent or private not in r.text, r.text


@pytest.mark.parametrize("route", sorted(TABLE), ids=lambda r: f"{r[0]} {r[1]}")
def test_should_show_user_2_nothing_of_user_1(pod: ServiceProcess, world: World, route: tuple[str, str]) -> None:
    check_isolated(pod, world, route, U1, U2, OP)


def check_isolated(pod: ServiceProcess, world: World, route: tuple[str, str], U1: dict[str, str],
                   U2: dict[str, str], operator: dict[str, str]) -> None:
    method, _ = route
    entry = TABLE[route]
    theirs = call(pod, method, entry, {**world.ids, "user": "user1"}, U2, world.secret)
    sent = asked(entry, {**world.ids, "user": "user1"}, world.secret)
    for private in world.private():
        if private not in sent:  # an id the caller sent may come back in the 404; nothing else may
            assert private not in theirs.text, (theirs.status_code, theirs.text[:500])
    # User 1's resources answer user 2 as resources that do not exist answer (store: a foreign namespace).
    nobody = call(pod, method, entry, {**absent_ids(world), "user": "nobody"}, U2, world.secret)
    if (method, entry.path) in (("POST", "/threads"), ("POST", "/assistants")):
        assert theirs.status_code == 409, theirs.text  # the id is taken: that, and nothing more, is said
        assert nobody.status_code == 200
    else:
        assert theirs.status_code == nobody.status_code, (theirs.text[:300], nobody.text[:300])
    if theirs.status_code == 200 and method == "POST" and entry.path.endswith(("/search", "/count")):
        assert theirs.json() in ([], 0, {"items": []}), theirs.text
    if entry.reads:  # the control: user 1 and the operator see it, so the filter (not absence) hid it
        for who in (U1, operator):
            mine = call(pod, method, entry, world.ids, who, world.secret)
            assert mine.status_code < 300, (mine.status_code, mine.text[:300])
            if entry.path.endswith(("/search", "/count")) and entry.path != "/store/namespaces":
                assert mine.json() not in ([], 0, {"items": []}), mine.text


def test_should_have_left_user_1s_resources_as_they_were(pod: ServiceProcess, world: World) -> None:
    """After user 2's every attempt (deletes, patches, cancels, prunes, overwrites) nothing of user 1 changed."""
    check_intact(pod, world, U1, U2)


def check_intact(pod: ServiceProcess, world: World, U1: dict[str, str], U2: dict[str, str]) -> None:
    for route in sorted(TABLE):  # user 2 tries everything first (also when this test runs alone)
        call(pod, route[0], TABLE[route], {**world.ids, "user": "user1"}, U2, world.secret)
    r = call(pod, "POST", Call("/runs/cancel", lambda i: {"status": "all"}), world.ids, U2, world.secret)
    assert r.status_code == 204
    with httpx.Client(base_url=pod.url, timeout=30, headers=U1) as c:
        i = world.ids
        thread = ok(c.get(f"/threads/{i['thread_id']}"))
        assert thread["metadata"]["note"] == world.secret and "x" not in thread["metadata"]
        assert ok(c.get(f"/threads/{i['thread_id']}/runs/{i['run_id']}"))["status"] == "success"
        assert ok(c.get(f"/threads/{i['busy_thread_id']}/runs/{i['busy_run_id']}"))["status"] == "running"
        assistant = ok(c.get(f"/assistants/{i['assistant_id']}"))
        assert assistant["version"] == 1 and "x" not in assistant["metadata"]
        assert ok(c.get(f"/runs/crons/{i['cron_id']}"))["enabled"] is True
        ok(c.get(f"/runs/crons/{i['stateless_cron_id']}"))
        item = ok(c.get("/store/items", params={"namespace": "user1.notes", "key": "k1"}))
        assert item["value"] == {"note": world.secret}
        assert ok(c.get(f"/threads/{i['thread_id']}/state"))["checkpoint"]["checkpoint_id"] == i["checkpoint_id"]


def test_should_let_the_operator_see_and_count_every_owner(pod: ServiceProcess, world: World) -> None:
    with httpx.Client(base_url=pod.url, timeout=30, headers=OP) as c:
        assert ok(c.post("/threads/count", json={"metadata": {"note": world.secret}})) == 2
        assert ok(c.post("/threads/count", json={"metadata": {"owner": "user1"}})) >= 2
        assert ok(c.get(f"/threads/{world.ids['thread_id']}"))["metadata"]["owner"] == "user1"
        assert ok(c.post("/runs/crons/count", json={"metadata": {"note": world.secret}})) == 2
    with httpx.Client(base_url=pod.url, timeout=30, headers=U2) as c:
        assert ok(c.post("/threads/count", json={})) == ok(c.post("/threads/count", json={"metadata": {
            "owner": "user2"}}))
        for thread in ok(c.post("/threads/search", json={"limit": 1000})):
            assert thread["metadata"]["owner"] == "user2"
        assert "X-Pagination-Total" in c.post("/assistants/search", json={}).headers
        for assistant in ok(c.post("/assistants/search", json={"limit": 1000})):
            assert assistant["metadata"].get("owner") == "user2"


def test_should_give_graphs_the_user_as_the_langgraph_server_does(pod: ServiceProcess) -> None:
    with httpx.Client(base_url=pod.url, timeout=30, headers=U1) as c:
        r = c.post("/runs/wait", json={"assistant_id": "whoami", "input": {}})
        out = ok(r)
        assert out == {"config_user": "user1", "config_user_item": "user1", "config_user_id": "user1",
                       "permissions": [], "runtime_user": "user1"}, out
        # A background run executed by a worker (the user travels in the stored run).
        thread = ok(c.post("/threads", json={}))
        run = ok(c.post(f"/threads/{thread['thread_id']}/runs", json={"assistant_id": "whoami", "input": {}}))
        joined = ok(c.get(f"/threads/{thread['thread_id']}/runs/{run['run_id']}/join"))
        assert joined["runtime_user"] == "user1" and joined["config_user"] == "user1"
        # A stateless run's thread is the user's (owner metadata from the create_run handler).
        kept = ok(c.post("/runs/wait", json={"assistant_id": "whoami", "input": {}, "on_completion": "keep"}))
        assert kept["config_user"] == "user1"
    with httpx.Client(base_url=pod.url, timeout=30, headers=OP) as c:
        out = ok(c.post("/runs/wait", json={"assistant_id": "whoami", "input": {}}))
        assert out["config_user"] == "" and out["runtime_user"] == ""


def test_should_fire_a_cron_as_its_creator_on_a_thread_of_theirs(pod: ServiceProcess) -> None:
    with httpx.Client(base_url=pod.url, timeout=30, headers=U1) as c:
        cron = ok(c.post("/runs/crons", json={"assistant_id": "whoami", "schedule": "* * * * * *", "input": {},
                                              "on_run_completed": "keep"}))
        deadline = time.monotonic() + 60
        try:
            while not (found := ok(c.post("/threads/search", json={"metadata": {"cron_id": cron["cron_id"]},
                                                                   "status": "idle"}))):
                assert time.monotonic() < deadline, "the cron never fired"
                time.sleep(0.2)
        finally:
            ok(c.delete(f"/runs/crons/{cron['cron_id']}"))
        thread = found[0]
        assert thread["metadata"]["owner"] == "user1"
        values = ok(c.get(f"/threads/{thread['thread_id']}/state"))["values"]
        assert values["config_user"] == "user1" and values["runtime_user"] == "user1"
        assert "_auth" not in cron["payload"]
    r = httpx.get(f"{pod.url}/threads/{thread['thread_id']}", headers=U2)
    assert r.status_code == 404


def test_should_leave_others_out_of_pagination_totals(pod: ServiceProcess, world: World) -> None:
    with httpx.Client(base_url=pod.url, timeout=30) as c:
        mine = c.post("/assistants/search", headers=U1, json={"limit": 1})
        theirs = c.post("/assistants/search", headers=U2, json={"limit": 1000})
        assert mine.headers["X-Pagination-Total"] != "0" and int(mine.headers["X-Pagination-Total"]) >= 1
        assert theirs.headers["X-Pagination-Total"] == str(len(theirs.json()))
        crons = c.post("/runs/crons/search", headers=U2, json={"limit": 1})
        assert crons.headers["X-Pagination-Total"] == "0" and crons.json() == []


def test_should_answer_403_when_a_handler_denies(pod: ServiceProcess) -> None:
    with httpx.Client(base_url=pod.url, timeout=30, headers=U2) as c:
        r = c.put("/store/items", json={"namespace": ["user1", "x"], "key": "k", "value": {}})
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"] == "Not authorized"
        ok(c.put("/store/items", json={"namespace": ["user2", "x"], "key": "k", "value": {"mine": True}}))
        assert ok(c.get("/store/items", params={"namespace": "user2.x", "key": "k"}))["value"] == {"mine": True}


@pytest.mark.parametrize(("env", "message"), [
    ({"LANGGRAPH_AUTH": '{"path": "tests/support/auth/none.py:auth"}'}, "auth.path: no file tests/support/"),
    ({"LANGGRAPH_AUTH": '{"path": "tests.support.auth.whoami:make"}'}, "is not a langgraph_sdk.Auth object"),
    ({"LANGGRAPH_AUTH": '{"path": "no_such_module_here:auth"}'}, "does not import: ModuleNotFoundError"),
    ({"LANGGRAPH_AUTH": '{"path": "tutorial"}'}, "auth.path must be 'file.py:name' or 'module:name'"),
    ({"LANGGRAPH_AUTH": json.dumps({"path": TUTORIAL}), "AUTH_JWT_KEY_FILE": "/x"}, "are both set; choose one"),
    ({"LANGGRAPH_AUTH": json.dumps({"path": TUTORIAL}), "CHECKPOINTER": "memory"}, "auth needs CHECKPOINTER=postgres"),
])
def test_should_stop_with_one_line_on_a_bad_auth_setting(migrated_db: str, env: dict[str, str], message: str) -> None:
    logs = ServiceProcess(migrated_db, **env).refused_start()
    assert message in logs and "Traceback" not in logs, logs[-2000:]


def test_should_load_auth_path_relative_to_the_langgraph_json(migrated_db: str, tmp_path: Path) -> None:
    (tmp_path / "auth.py").write_text((Path(__file__).parents[1] / "support" / "auth" / "tutorial.py").read_text())
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"slow": "tests.support.graphs:slow"},
                                                        "auth": {"path": "./auth.py:auth"}}))
    with ServiceProcess(migrated_db, LANGGRAPH_CONFIG=str(tmp_path / "langgraph.json"), GRAPHS="") as p:
        assert httpx.get(f"{p.url}/threads/{uuid.uuid4()}", headers=U1).status_code == 404
        assert httpx.post(f"{p.url}/threads/count", json={}).status_code == 401
        thread = ok(httpx.post(f"{p.url}/threads", headers=U1, json={}))
        assert thread["metadata"]["owner"] == "user1"
        assert httpx.get(f"{p.url}/threads/{thread['thread_id']}", headers=U2).status_code == 404


def test_should_serve_metrics_on_their_own_port_when_split(migrated_db: str) -> None:
    from tests.support.services import free_port

    metrics_port = free_port()
    with ServiceProcess(migrated_db, LANGGRAPH_AUTH=json.dumps({"path": TUTORIAL}),
                        METRICS_PORT=str(metrics_port)) as p:
        ok(httpx.post(f"{p.url}/threads", headers=U1, json={}))
        on_api = httpx.get(f"{p.url}/metrics", headers=U1)
        assert on_api.status_code == 404, on_api.text  # not beside the API: callers of the API never see it
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert scraped.status_code == 200 and "langgraph_build_info" in scraped.text
        assert 'litestar_requests_total{app_name="langgraph-pg"' in scraped.text  # the API's requests, counted
        assert httpx.get(f"{p.url}/ok").status_code == 200
    clash = ServiceProcess(migrated_db, METRICS_PORT="0")
    clash.env["METRICS_PORT"] = str(clash.port)
    assert "METRICS_PORT must be a port other than PORT" in clash.refused_start()


WHO_APP = '''
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    user = scope.get("user")
    body = json.dumps({"custom": scope["path"], "user": user.identity if user is not None else None}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
'''


@pytest.mark.parametrize("guarded", [True, False])
def test_should_guard_custom_routes_when_asked(migrated_db: str, tmp_path: Path, guarded: bool) -> None:
    (tmp_path / "routes.py").write_text(WHO_APP)
    tutorial = Path(__file__).parents[1] / "support" / "auth" / "tutorial.py"
    (tmp_path / "langgraph.json").write_text(json.dumps({
        "graphs": {"slow": "tests.support.graphs:slow"}, "auth": {"path": f"{tutorial}:auth"},
        "http": {"app": "./routes.py:app", "enable_custom_route_auth": guarded}}))
    with ServiceProcess(migrated_db, LANGGRAPH_CONFIG=str(tmp_path / "langgraph.json"), GRAPHS="") as p:
        anonymous = httpx.get(f"{p.url}/custom/hello")
        signed_in = httpx.get(f"{p.url}/custom/hello", headers=U1)
        if guarded:  # as on the LangGraph Server with enable_custom_route_auth: the API's auth, the user in scope
            assert anonymous.status_code == 401
            assert anonymous.headers["content-type"] == "application/problem+json"
            assert httpx.get(f"{p.url}/custom/x", headers={"Authorization": "Bearer forged"}).status_code == 401
            assert signed_in.json() == {"custom": "/custom/hello", "user": "user1"}
        else:  # the LangGraph Server's default: custom routes are the app's own business
            assert anonymous.json() == {"custom": "/custom/hello", "user": None}
        assert httpx.get(f"{p.url}/threads/{uuid.uuid4()}").status_code == 401  # the API is guarded either way
