"""Assistants stored in PostgreSQL, driven by the official langgraph-sdk against real service processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from langgraph_sdk.errors import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError

from service.graphs import assistant_id_for
from tests.support.graphs import ASSISTANT_GRAPHS
from tests.support.jsclient import run_js
from tests.support.service import ServiceProcess

GRAPH_IDS = {"support", "slow", "contextual", "nested"}


@pytest.fixture(scope="module")
def pod(pg_server: Any) -> Iterator[tuple[ServiceProcess, str]]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("assistants")
    run(Options(conninfo=conninfo))
    with ServiceProcess(conninfo, GRAPHS=ASSISTANT_GRAPHS) as p:
        yield p, conninfo
    pg_server.drop_database(conninfo)


@pytest.fixture
def client(pod: tuple[ServiceProcess, str]) -> SyncLangGraphClient:
    return get_sync_client(url=pod[0].url, timeout=60)


def problem(exc: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    response: httpx.Response = exc.value.response
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code and body["detail"]
    assert "Traceback" not in response.text
    return body


class TestCreate:
    def test_should_create_and_get_with_defaults(self, client: SyncLangGraphClient) -> None:
        made = client.assistants.create("support", metadata={"team": "create"})
        assert made["name"] == "Untitled" and made["version"] == 1 and made["description"] is None
        assert made["config"] == {} and made["context"] == {} and made["metadata"] == {"team": "create"}
        assert str(uuid.UUID(made["assistant_id"])) == made["assistant_id"]
        assert client.assistants.get(made["assistant_id"]) == made

    def test_should_raise_or_return_the_existing_one(self, client: SyncLangGraphClient) -> None:
        assistant_id = str(uuid.uuid4())
        first = client.assistants.create("support", assistant_id=assistant_id, name="first")
        with pytest.raises(ConflictError) as exc:
            client.assistants.create("support", assistant_id=assistant_id, name="second")
        problem(exc)
        same = client.assistants.create("slow", assistant_id=assistant_id, name="second", if_exists="do_nothing")
        assert same == first

    def test_should_keep_config_and_context_in_step(self, client: SyncLangGraphClient) -> None:
        from_config = client.assistants.create("contextual", config={"configurable": {"model": "large"}})
        assert from_config["context"] == {"model": "large"}
        from_context = client.assistants.create("contextual", context={"model": "medium"})
        assert from_context["config"]["configurable"] == {"model": "medium"}
        with pytest.raises(BadRequestError) as exc:
            client.assistants.create("contextual", config={"configurable": {"model": "a"}}, context={"model": "b"})
        assert "both configurable and context" in problem(exc)["detail"]

    def test_should_refuse_bad_input_with_problem_json(self, client: SyncLangGraphClient) -> None:
        with pytest.raises(NotFoundError) as nf:
            client.assistants.create("no-such-graph")
        assert "no-such-graph" in problem(nf)["detail"]
        with pytest.raises(UnprocessableEntityError) as bad_id:
            client.assistants.create("support", assistant_id="not-a-uuid")
        problem(bad_id)
        with pytest.raises(UnprocessableEntityError) as bad_config:
            client.assistants.create("support", config={"recursion_limit": "many"})  # type: ignore[typeddict-item]
        problem(bad_config)
        with pytest.raises(NotFoundError) as bad_get:  # neither a UUID nor a graph id: names nothing
            client.assistants.get("not-a-uuid")
        problem(bad_get)
        with pytest.raises(NotFoundError) as missing:
            client.assistants.get(str(uuid.uuid4()))
        problem(missing)


class TestVersions:
    def test_should_patch_into_new_versions_and_go_back(self, client: SyncLangGraphClient) -> None:
        a = client.assistants.create("contextual", context={"model": "v1"}, metadata={"tier": 1}, name="n1")
        aid = a["assistant_id"]
        v2 = client.assistants.update(aid, context={"model": "v2"}, metadata={"owner": "ana"})
        assert v2["version"] == 2 and v2["context"] == {"model": "v2"} and v2["name"] == "n1"
        assert v2["metadata"] == {"tier": 1, "owner": "ana"}
        assert v2["created_at"] == a["created_at"] and v2["updated_at"] > a["updated_at"]
        v3 = client.assistants.update(aid, name="n3", description="third")
        assert (v3["version"], v3["name"], v3["description"], v3["context"]) == (3, "n3", "third", {"model": "v2"})
        versions = client.assistants.get_versions(aid)
        assert [v["version"] for v in versions] == [3, 2, 1]
        assert [v["version"] for v in client.assistants.get_versions(aid, limit=1, offset=1)] == [2]
        assert [v["version"] for v in client.assistants.get_versions(aid, metadata={"owner": "ana"})] == [3, 2]
        back = client.assistants.set_latest(aid, 1)
        assert (back["version"], back["context"], back["name"], back["metadata"]) == (1, {"model": "v1"}, "n1",
                                                                                      {"tier": 1})
        assert client.assistants.get(aid)["version"] == 1
        assert client.assistants.update(aid, metadata={"again": True})["version"] == 4

    def test_should_answer_404_for_missing_assistant_or_version(self, client: SyncLangGraphClient) -> None:
        aid = client.assistants.create("support")["assistant_id"]
        with pytest.raises(NotFoundError) as version:
            client.assistants.set_latest(aid, 99)
        assert "99" in problem(version)["detail"]
        with pytest.raises(NotFoundError):
            client.assistants.update(str(uuid.uuid4()), name="x")
        with pytest.raises(NotFoundError):
            client.assistants.get_versions(str(uuid.uuid4()))
        with pytest.raises(NotFoundError):
            client.assistants.update(aid, graph_id="no-such-graph")

    def test_should_take_one_version_number_per_concurrent_patch(self, pod: tuple[ServiceProcess, str]) -> None:
        import concurrent.futures

        url = pod[0].url
        aid = httpx.post(f"{url}/assistants", json={"graph_id": "support"}).json()["assistant_id"]

        def patch(i: int) -> int:
            with httpx.Client(timeout=60) as c:
                r = c.patch(f"{url}/assistants/{aid}", json={"metadata": {f"k{i}": i}})
                r.raise_for_status()
                return int(r.json()["version"])

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            got = sorted(pool.map(patch, range(16)))
        assert got == list(range(2, 18))
        final = httpx.get(f"{url}/assistants/{aid}").json()
        assert final["version"] == 17 and len(final["metadata"]) == 16


class TestSearch:
    def test_should_filter_sort_select_and_page(self, client: SyncLangGraphClient) -> None:
        tag = uuid.uuid4().hex[:8]
        names = ["Alpha", "beta", "Gamma", "delta"]
        made = [client.assistants.create("slow" if i % 2 else "support", name=f"{n} {tag}",
                                         metadata={"search": tag, "i": i})
                for i, n in enumerate(names)]
        mine = {"search": tag}
        assert client.assistants.count(metadata=mine) == 4
        assert client.assistants.count(metadata=mine, graph_id="slow") == 2
        assert client.assistants.count(name=tag.upper()) == 4  # substring, case-insensitive
        newest_first = client.assistants.search(metadata=mine)
        assert [a["assistant_id"] for a in newest_first] == [a["assistant_id"] for a in reversed(made)]
        by_name = client.assistants.search(metadata=mine, sort_by="name", sort_order="asc")
        assert [a["name"].split()[0] for a in by_name] == ["Alpha", "beta", "delta", "Gamma"]
        page = client.assistants.search(metadata=mine, sort_by="name", sort_order="asc", limit=2, offset=2,
                                        select=["assistant_id", "name"])
        assert [set(a) for a in page] == [{"assistant_id", "name"}] * 2
        assert [a["name"].split()[0] for a in page] == ["delta", "Gamma"]
        response = client.assistants.search(metadata=mine, limit=3, response_format="object")
        assert len(response["assistants"]) == 3 and response["next"] == "3"

    def test_should_list_one_system_assistant_per_graph(self, client: SyncLangGraphClient) -> None:
        system = client.assistants.search(metadata={"created_by": "system"}, limit=100)
        assert {a["graph_id"] for a in system} == GRAPH_IDS
        for a in system:
            assert a["assistant_id"] == assistant_id_for(a["graph_id"])
        names = {a["graph_id"]: a["name"] for a in system}
        assert names["contextual"] == "contextual" and names["support"] == "support"
        assert client.assistants.get("nested")["assistant_id"] == assistant_id_for("nested")

    def test_should_refuse_bad_queries(self, client: SyncLangGraphClient) -> None:
        with pytest.raises(UnprocessableEntityError):
            client.assistants.search(limit=0)
        with pytest.raises(UnprocessableEntityError):
            client.assistants.search(sort_by="version")  # type: ignore[arg-type]
        with pytest.raises(UnprocessableEntityError):
            client.assistants.search(select=["secret"])  # type: ignore[list-item]
        with pytest.raises(NotFoundError):
            client.assistants.search(graph_id="no-such-graph")


class TestDelete:
    def test_should_delete_the_assistant_and_optionally_its_threads(self, client: SyncLangGraphClient) -> None:
        keep = client.assistants.create("support")["assistant_id"]
        thread = client.threads.create()["thread_id"]
        client.runs.wait(thread, keep, input={"messages": [{"role": "user", "content": "hi"}]})
        client.assistants.delete(keep)
        with pytest.raises(NotFoundError):
            client.assistants.get(keep)
        assert client.threads.get(thread)["metadata"]["assistant_id"] == keep  # the thread stays

        gone = client.assistants.create("support")["assistant_id"]
        threads = [client.threads.create()["thread_id"] for _ in range(2)]
        for t in threads:
            client.runs.wait(t, gone, input={"messages": [{"role": "user", "content": "hi"}]})
        client.assistants.delete(gone, delete_threads=True)
        for t in threads:
            with pytest.raises(NotFoundError):
                client.threads.get(t)
        with pytest.raises(NotFoundError):
            client.assistants.delete(gone)
        with pytest.raises(httpx.HTTPStatusError) as run:  # the SDK's runs.wait raises httpx's own error
            client.runs.wait(None, gone, input={})
        assert problem(run)["status"] == 404


class TestRuns:
    def test_should_apply_the_assistants_context_with_defaults(self, client: SyncLangGraphClient) -> None:
        system = client.runs.wait(None, "contextual", input={})
        assert (system["seen"]["model"], system["seen"]["temperature"]) == ("small", 0.0)
        large = client.assistants.create("contextual", context={"model": "large"}, metadata={"owner": "ops"})
        seen = client.runs.wait(None, large["assistant_id"], input={})["seen"]
        assert (seen["model"], seen["temperature"]) == ("large", 0.0)
        assert seen["metadata"]["owner"] == "ops" and seen["metadata"]["assistant_id"] == large["assistant_id"]
        assert seen["configurable"]["assistant_id"] == large["assistant_id"]
        # The request's context goes on top; keys the schema does not declare are dropped, not a crash.
        seen = client.runs.wait(None, large["assistant_id"], input={},
                                context={"temperature": 0.5, "not_declared": 1})["seen"]
        assert (seen["model"], seen["temperature"]) == ("large", 0.5)
        assert "not_declared" not in seen["configurable"]
        # config.configurable reaches the context when no context is sent.
        seen = client.runs.wait(None, "contextual", input={}, config={"configurable": {"model": "cfg"}})["seen"]
        assert seen["model"] == "cfg"
        with pytest.raises(httpx.HTTPStatusError) as exc:
            client.runs.wait(None, "contextual", input={}, config={"configurable": {"model": "a"}},
                             context={"model": "b"})
        assert problem(exc)["status"] == 400

    def test_should_tag_threads_with_the_assistant(self, client: SyncLangGraphClient) -> None:
        a = client.assistants.create("support", name="tagger")["assistant_id"]
        created = str(uuid.uuid4())
        client.runs.wait(created, a, input={"messages": [{"role": "user", "content": "hi"}]},
                         if_not_exists="create", metadata={"source": "test"})
        meta = client.threads.get(created)["metadata"]
        assert meta["assistant_id"] == a and meta["graph_id"] == "support" and meta["source"] == "test"
        existing = client.threads.create(metadata={"kind": "existing"})["thread_id"]
        client.runs.wait(existing, a, input={"messages": [{"role": "user", "content": "hi"}]})
        assert client.threads.get(existing)["metadata"] == {"kind": "existing", "graph_id": "support",
                                                            "assistant_id": a}
        listed = {t["thread_id"] for t in client.threads.search(metadata={"assistant_id": a})}
        assert listed == {created, existing}
        # A run with the graph id is the system assistant's.
        client.runs.wait(existing, "support", input={"messages": [{"role": "user", "content": "again"}]})
        assert client.threads.get(existing)["metadata"]["assistant_id"] == assistant_id_for("support")

    def test_should_run_with_the_assistant_as_another_pod_just_left_it(
        self, client: SyncLangGraphClient, pod: tuple[ServiceProcess, str]
    ) -> None:
        # Each pod remembers the assistants its runs used; a change made through another pod must
        # reach the very next run (service.assistants for_run, the run queue's revision check).
        assistant_id = client.assistants.create("contextual", context={"model": "v0"})["assistant_id"]
        with ServiceProcess(pod[1], GRAPHS=ASSISTANT_GRAPHS) as other:
            b = get_sync_client(url=other.url, timeout=60)
            thread_id = b.threads.create()["thread_id"]
            assert b.runs.wait(None, assistant_id, input={})["seen"]["model"] == "v0"
            for version in range(1, 4):
                client.assistants.update(assistant_id, context={"model": f"v{version}"})
                assert b.runs.wait(None, assistant_id, input={})["seen"]["model"] == f"v{version}"
                assert b.runs.wait(thread_id, assistant_id, input={})["seen"]["model"] == f"v{version}"
            client.assistants.set_latest(assistant_id, 1)
            assert b.runs.wait(thread_id, assistant_id, input={})["seen"]["model"] == "v0"
            client.assistants.delete(assistant_id)
            for thread in (None, thread_id):
                with pytest.raises(httpx.HTTPStatusError) as gone:
                    b.runs.wait(thread, assistant_id, input={})
                assert problem(gone)["status"] == 404
            assert [r["status"] for r in b.runs.list(thread_id, limit=100)] == ["success"] * 4

    def test_should_refuse_runs_of_unknown_assistants(self, client: SyncLangGraphClient) -> None:
        for name in ("no-such-assistant", str(uuid.uuid4())):
            with pytest.raises(httpx.HTTPStatusError) as exc:
                client.runs.wait(None, name, input={})
            assert problem(exc)["status"] == 404
        with pytest.raises(httpx.HTTPStatusError) as bad:
            client.runs.wait(None, "contextual", input={}, config={"configurable": "not an object"})  # type: ignore[typeddict-item]
        assert problem(bad)["status"] == 422


class TestGraphs:
    def test_should_draw_with_xray(self, client: SyncLangGraphClient) -> None:
        flat = {n["id"] for n in client.assistants.get_graph("nested")["nodes"]}
        assert "inner" in flat and not any(":" in n for n in flat)
        one = {n["id"] for n in client.assistants.get_graph("nested", xray=1)["nodes"]}
        assert "inner:ask" in one and not any(n.startswith("inner:deeper:") for n in one)
        full = {n["id"] for n in client.assistants.get_graph("nested", xray=True)["nodes"]}
        assert "inner:deeper:deepest" in full
        for node in client.assistants.get_graph("nested")["nodes"]:
            assert "id" not in (node.get("data") or {})
        with pytest.raises(UnprocessableEntityError):
            client.assistants.get_graph("nested", xray=-1)

    def test_should_list_subgraphs_by_namespace(self, client: SyncLangGraphClient) -> None:
        assert set(client.assistants.get_subgraphs("nested")) == {"inner"}
        assert set(client.assistants.get_subgraphs("nested", recurse=True)) == {"inner", "inner|deeper"}
        at = client.assistants.get_subgraphs("nested", namespace="inner")  # LangGraph's aget_subgraphs(namespace)
        assert set(at) == {"inner"}
        assert "trail" in at["inner"]["state_schema"]["properties"]
        assert client.assistants.get_subgraphs("support") == {}

    def test_should_describe_schemas(self, client: SyncLangGraphClient) -> None:
        schemas = client.assistants.get_schemas("contextual")
        assert schemas["graph_id"] == "contextual"
        assert set(schemas["context_schema"]["properties"]) == {"model", "temperature"}
        assert set(schemas["state_schema"]["properties"]) >= {"messages", "seen"}


class TestThreadState:
    def test_should_return_the_state_of_a_paused_subgraph(self, client: SyncLangGraphClient) -> None:
        thread = client.threads.create()["thread_id"]
        client.runs.wait(thread, "nested", input={"trail": []})
        shallow = client.threads.get_state(thread)
        assert shallow["next"] == ["inner"]
        task = shallow["tasks"][0]
        assert task["state"] is None and task["checkpoint"]["checkpoint_ns"].startswith("inner:")
        deep = client.threads.get_state(thread, subgraphs=True)
        sub = deep["tasks"][0]["state"]
        assert sub is not None and sub["next"] == ["ask"]
        assert sub["tasks"][0]["interrupts"][0]["value"] == {"question": "proceed?"}
        assert sub["values"]["trail"] == ["start"]
        done = client.runs.wait(thread, "nested", command={"resume": "yes"})
        assert done["answer"] == "yes" and done["trail"][-1] == "deepest"

    def test_should_answer_400_to_an_update_of_a_thread_that_never_ran(self, client: SyncLangGraphClient) -> None:
        thread = client.threads.create()["thread_id"]
        with pytest.raises(BadRequestError) as exc:
            client.threads.update_state(thread, {"answer": "x"})
        assert "graph" in problem(exc)["detail"]


class TestSystemAssistants:
    def test_should_seed_once_across_pods_and_keep_changes(self, migrated_db: str) -> None:
        with ExitStack() as stack:
            pods = [ServiceProcess(migrated_db, GRAPHS=ASSISTANT_GRAPHS) for _ in range(3)]
            for p in pods:
                stack.callback(p.stop)
                p.start(wait=None)
            for p in pods:
                p.wait_for("/ready", timeout=90)
            # Every pod answers with the same rows, each inserted once (one version each).
            seen = [httpx.post(f"{p.url}/assistants/count", json={"metadata": {"created_by": "system"}}).json()
                    for p in pods]
            assert seen == [len(GRAPH_IDS)] * 3
            with psycopg.connect(migrated_db) as conn:
                rows = conn.execute("SELECT count(*) FROM assistants").fetchone()
                versions = conn.execute("SELECT count(*) FROM assistant_versions").fetchone()
            assert rows == (len(GRAPH_IDS),) and versions == (len(GRAPH_IDS),)
            first = get_sync_client(url=pods[0].url)
            first.assistants.update("support", context={"tone": "formal"})
            first.assistants.delete("slow")
            for p in pods:
                p.stop()
            again = stack.enter_context(ServiceProcess(migrated_db, GRAPHS=ASSISTANT_GRAPHS))
            client = get_sync_client(url=again.url)
            assert client.assistants.get("support")["context"] == {"tone": "formal"}  # patched: kept
            assert client.assistants.get("slow")["version"] == 1  # deleted: back on start, as on the LangGraph Server


class TestMemoryMode:
    def test_should_behave_the_same_in_memory(self) -> None:
        """CHECKPOINTER=memory keeps assistants in the process, by the same rules."""
        with ServiceProcess(None, CHECKPOINTER="memory", GRAPHS=ASSISTANT_GRAPHS) as pod:
            client = get_sync_client(url=pod.url)
            assert {a["graph_id"] for a in client.assistants.search(limit=100)} == GRAPH_IDS
            a = client.assistants.create("contextual", context={"model": "mem"}, metadata={"m": 1}, name="Mem")
            aid = a["assistant_id"]
            with pytest.raises(ConflictError):
                client.assistants.create("contextual", assistant_id=aid)
            v2 = client.assistants.update(aid, metadata={"n": 2})
            assert (v2["version"], v2["metadata"], v2["context"]) == (2, {"m": 1, "n": 2}, {"model": "mem"})
            assert [v["version"] for v in client.assistants.get_versions(aid)] == [2, 1]
            assert client.assistants.set_latest(aid, 1)["metadata"] == {"m": 1}
            assert client.assistants.count(name="mem") == 1
            assert client.runs.wait(None, aid, input={})["seen"]["model"] == "mem"
            thread = client.threads.create()["thread_id"]
            client.runs.wait(thread, aid, input={})
            assert client.threads.get(thread)["metadata"]["assistant_id"] == aid
            client.assistants.delete(aid, delete_threads=True)
            with pytest.raises(NotFoundError):
                client.threads.get(thread)
            with pytest.raises(NotFoundError):
                client.assistants.get(aid)


class TestJsClient:
    def test_should_serve_every_assistants_operation_of_the_js_client(
        self, pod: tuple[ServiceProcess, str]
    ) -> None:
        """@langchain/langgraph-sdk (npm, pinned in tests/e2e/js): tests/e2e/js/assistants.mjs."""
        tag = uuid.uuid4().hex[:10]
        out = run_js("assistants.mjs", pod[0].url, TAG=tag)
        aid, second = out["id"], out["second"]["assistant_id"]
        created = out["created"]
        assert (created["assistant_id"], created["graph_id"], created["version"]) == (aid, "contextual", 1)
        assert created["context"] == {"model": "large"} and created["config"]["configurable"] == {"model": "large"}
        assert created["name"] == f"Alpha {tag}" and created["description"] == "made by js"
        assert out["again"] == created and out["got"] == created  # do_nothing answers the existing one
        assert out["raised"] == 409
        updated = out["updated"]
        assert (updated["version"], updated["name"], updated["context"]) == (2, f"Beta {tag}", {"model": "v2"})
        assert updated["metadata"] == {"js": tag, "owner": "js"}
        assert [v["version"] for v in out["versions"]] == [2, 1]
        assert [v["version"] for v in out["versionsByMetadata"]] == [2]
        assert [v["version"] for v in out["versionsPage"]] == [1]
        latest = out["latest"]
        assert (latest["version"], latest["name"], latest["context"]) == (1, f"Alpha {tag}", {"model": "large"})
        assert out["missingVersion"] == 404

        assert [a["name"] for a in out["search"]] == [f"Alpha {tag}", f"Gamma {tag}"]
        assert out["searchSelect"] == [{"assistant_id": second, "name": f"Gamma {tag}"}]
        assert [a["assistant_id"] for a in out["searchPage"]["assistants"]] == [second]  # newest first
        assert out["searchPage"]["next"] == "1"
        assert (out["count"], out["countByGraph"], out["countByName"]) == (2, 1, 2)

        def node_ids(graph: dict[str, Any]) -> set[str]:
            return {n["id"] for n in graph["nodes"]}

        assert "inner" in node_ids(out["graph"]) and not any(":" in n for n in node_ids(out["graph"]))
        assert "inner:deeper:deepest" in node_ids(out["graphXray"])
        assert "inner:deeper" in node_ids(out["graphXray1"])
        assert not any(n.startswith("inner:deeper:") for n in node_ids(out["graphXray1"]))
        assert out["schemas"]["graph_id"] == "contextual"
        assert set(out["schemas"]["context_schema"]["properties"]) == {"model", "temperature"}
        assert set(out["subgraphs"]) == {"inner"} and set(out["subgraphsRecurse"]) == {"inner", "inner|deeper"}
        assert set(out["subgraphsAt"]) == {"inner"}
        assert "trail" in out["subgraphsAt"]["inner"]["state_schema"]["properties"]

        assert (out["seen"]["model"], out["seen"]["temperature"]) == ("large", 0)  # version 1 is current again
        assert out["threadMetadata"] == {"graph_id": "support", "assistant_id": second}
        assert (out["deletedGet"], out["deletedThreadGet"], out["deletedAgain"], out["unknownGraph"]) == (
            404, 404, 404, 404)
        with psycopg.connect(pod[1]) as conn:
            row = conn.execute("SELECT graph_id, name, version, context FROM assistants WHERE assistant_id = %s",
                               (aid,)).fetchone()
            versions = conn.execute("SELECT version, name FROM assistant_versions WHERE assistant_id = %s "
                                    "ORDER BY version", (aid,)).fetchall()
            gone = conn.execute("SELECT (SELECT count(*) FROM assistants WHERE assistant_id = %s), "
                                "(SELECT count(*) FROM assistant_versions WHERE assistant_id = %s), "
                                "(SELECT count(*) FROM threads WHERE thread_id = %s)",
                                (second, second, out["threadId"])).fetchone()
        assert row == ("contextual", f"Alpha {tag}", 1, {"model": "large"})
        assert versions == [(1, f"Alpha {tag}"), (2, f"Beta {tag}")]
        assert gone == (0, 0, 0)
