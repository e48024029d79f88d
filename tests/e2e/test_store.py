"""The store API through the langgraph-sdk client: items, TTL, search (filter and semantic), namespaces."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from service import schema
from service.settings import StoreSettings
from tests.support.embeddings import DIMS
from tests.support.jsclient import run_js
from tests.support.service import ServiceProcess

STORE = {"index": {"dims": DIMS, "embed": "tests.support.embeddings:embed", "fields": ["text"]},
         "ttl": {"refresh_on_read": True, "sweep_interval_minutes": 0.01}}


@pytest.fixture(scope="module")
def pod(pg_server: Any) -> Iterator[tuple[ServiceProcess, str]]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("store")
    index = StoreSettings.from_env({"LANGGRAPH_STORE": json.dumps(STORE)}).index
    run(Options(conninfo=conninfo, components=schema.components(index)))
    with ServiceProcess(conninfo, LANGGRAPH_STORE=json.dumps(STORE)) as p:
        yield p, conninfo
    pg_server.drop_database(conninfo)


@pytest.fixture
def client(pod: tuple[ServiceProcess, str]) -> SyncLangGraphClient:
    return get_sync_client(url=pod[0].url)


class TestItems:
    def test_should_put_get_and_delete_an_item(self, client: SyncLangGraphClient) -> None:
        client.store.put_item(["users", "u1"], "prefs", {"text": "likes tea", "theme": "dark"})
        item = client.store.get_item(["users", "u1"], "prefs")
        assert item is not None
        assert item["namespace"] == ["users", "u1"] and item["key"] == "prefs"
        assert item["value"] == {"text": "likes tea", "theme": "dark"}
        assert item["created_at"] and item["updated_at"]
        client.store.put_item(["users", "u1"], "prefs", {"text": "likes coffee"})
        assert client.store.get_item(["users", "u1"], "prefs")["value"] == {"text": "likes coffee"}  # type: ignore[index]
        client.store.delete_item(["users", "u1"], "prefs")
        assert client.store.get_item(["users", "u1"], "prefs") is None

    def test_should_set_the_expiry_from_ttl_and_hide_expired_items(
            self, client: SyncLangGraphClient, pod: tuple[ServiceProcess, str]) -> None:
        client.store.put_item(["ttl"], "short", {"text": "soon gone"}, ttl=30)
        client.store.put_item(["ttl"], "forever", {"text": "stays"})
        with psycopg.connect(pod[1]) as conn:
            rows = dict(conn.execute(
                "SELECT key, extract(epoch FROM expires_at - updated_at) FROM store WHERE prefix = 'ttl'").fetchall())
            assert rows["forever"] is None
            assert 29 * 60 <= float(rows["short"]) <= 31 * 60
            # Expire it (as the passing of 30 minutes would): reads no longer see it at once ...
            conn.execute("UPDATE store SET expires_at = now() - interval '1 second' WHERE key = 'short'")
        assert client.store.get_item(["ttl"], "short") is None
        assert client.store.get_item(["ttl"], "forever") is not None
        # ... and the pod's sweeper deletes the row.
        deadline = time.monotonic() + 60
        with psycopg.connect(pod[1], autocommit=True) as conn:
            while conn.execute("SELECT 1 FROM store WHERE key = 'short'").fetchone() is not None:
                assert time.monotonic() < deadline, "the TTL sweeper did not delete the expired item"
                time.sleep(0.2)


@pytest.fixture(scope="module")
def docs(pod: tuple[ServiceProcess, str]) -> None:
    client = get_sync_client(url=pod[0].url)
    client.store.put_item(["docs", "pets"], "dog", {"text": "dogs bark loudly at the mailman", "kind": "pet"})
    client.store.put_item(["docs", "pets"], "cat", {"text": "cats purr quietly on the sofa", "kind": "pet"})
    client.store.put_item(["docs", "food"], "soup", {"text": "tomato soup with basil", "kind": "food"})
    client.store.put_item(["docs", "food"], "raw", {"text": "dogs bark", "kind": "food"}, index=False)


@pytest.mark.usefixtures("docs")
class TestSearch:

    def test_should_filter_and_page(self, client: SyncLangGraphClient) -> None:
        pets = client.store.search_items(["docs"], filter={"kind": "pet"}, limit=10)["items"]
        assert {i["key"] for i in pets} == {"dog", "cat"}
        assert {i["key"] for i in client.store.search_items(["docs", "food"])["items"]} == {"soup", "raw"}
        first = client.store.search_items(["docs"], limit=2, offset=0)["items"]
        rest = client.store.search_items(["docs"], limit=2, offset=2)["items"]
        assert len(first) == 2 and len(rest) == 2
        assert {i["key"] for i in first + rest} == {"dog", "cat", "soup", "raw"}

    def test_should_rank_by_meaning_when_a_query_is_given(self, client: SyncLangGraphClient,
                                                          pod: tuple[ServiceProcess, str]) -> None:
        with psycopg.connect(pod[1]) as conn:  # the configured field was embedded, in pgvector
            vectors = conn.execute("SELECT key, vector_dims(embedding) FROM store_vectors "
                                   "WHERE prefix LIKE 'docs%' ORDER BY key").fetchall()
        assert vectors == [("cat", DIMS), ("dog", DIMS), ("soup", DIMS)]
        found = client.store.search_items(["docs"], query="which dogs bark", limit=2)["items"]
        assert found[0]["key"] == "dog"
        assert found[0]["score"] > found[1]["score"]
        # An item put with index=False has no embedding: a semantic query never finds it.
        keys = [i["key"] for i in client.store.search_items(["docs"], query="dogs bark", limit=10)["items"]]
        assert "raw" not in keys and "dog" in keys
        soup = client.store.search_items(["docs"], query="basil soup", filter={"kind": "food"}, limit=1)["items"]
        assert [i["key"] for i in soup] == ["soup"]

    def test_should_list_namespaces(self, client: SyncLangGraphClient) -> None:
        client.store.put_item(["docs", "pets", "old"], "x", {"text": "archived"})
        spaces = client.store.list_namespaces(prefix=["docs"])["namespaces"]
        assert sorted(spaces) == [["docs", "food"], ["docs", "pets"], ["docs", "pets", "old"]]
        assert client.store.list_namespaces(prefix=["docs"], suffix=["pets"])["namespaces"] == [["docs", "pets"]]
        assert sorted(client.store.list_namespaces(prefix=["docs"], max_depth=2)["namespaces"]) == [
            ["docs", "food"], ["docs", "pets"]]
        assert len(client.store.list_namespaces(prefix=["docs"], limit=1, offset=1)["namespaces"]) == 1


class TestBadInput:
    @pytest.mark.parametrize(("method", "path", "body"), [
        ("PUT", "/store/items", {"namespace": ["a.b"], "key": "k", "value": {}}),
        ("PUT", "/store/items", {"namespace": [], "key": "k", "value": {}}),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": "not an object"}),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": -1}),
        ("PUT", "/store/items", {"namespace": ["langgraph"], "key": "k", "value": {}}),
        ("POST", "/store/items/search", {"namespace_prefix": ["a"], "limit": -1}),
        ("POST", "/store/items/search", {"namespace_prefix": ["a"], "filter": {"kind": {"$regex": "x"}}}),
        ("POST", "/store/namespaces", {"max_depth": 0}),
        ("DELETE", "/store/items", {"namespace": ["a"]}),
    ])
    def test_should_answer_422_problem_json(self, pod: tuple[ServiceProcess, str], method: str, path: str,
                                             body: dict[str, Any]) -> None:
        r = httpx.request(method, pod[0].url + path, json=body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == 422 and r.json()["detail"]

    def test_should_answer_400_without_a_key(self, pod: tuple[ServiceProcess, str]) -> None:
        r = httpx.get(pod[0].url + "/store/items", params={"namespace": "a"})
        assert r.status_code == 400
        assert r.headers["content-type"].startswith("application/problem+json")


def test_should_serve_every_store_operation_of_the_js_client(pod: tuple[ServiceProcess, str]) -> None:
    """@langchain/langgraph-sdk (npm, pinned in tests/e2e/js): tests/e2e/js/store.mjs."""
    tag = uuid.uuid4().hex[:10]
    out = run_js("store.mjs", pod[0].url, TAG=tag)
    ns = ["js", tag]

    def keys(found: dict[str, Any]) -> list[str]:
        return [i["key"] for i in found["items"]]

    assert out["dog"]["namespace"] == [*ns, "pets"] and out["dog"]["key"] == "dog"
    assert out["dog"]["value"] == {"text": "dogs bark loudly at the mailman", "kind": "pet"}
    assert out["cat"]["value"]["text"] == "cats purr quietly on the sofa" and out["missing"] is None
    assert sorted(keys(out["filtered"])) == ["cat", "dog", "fish"]
    assert keys(out["query"])[0] == "dog" and out["query"]["items"][0]["score"] > out["query"]["items"][1]["score"]
    assert "soup" not in keys(out["queryFood"])  # put with index: false, so no embedding to find
    assert sorted(keys(out["pageOne"]) + keys(out["pageTwo"])) == ["cat", "dog", "fish", "soup"]
    assert out["namespaces"]["namespaces"] == [[*ns, "food"], [*ns, "pets"], [*ns, "pets", "old"]]
    assert out["namespacesSuffix"]["namespaces"] == [[*ns, "pets"]]
    assert out["namespacesDepth"]["namespaces"] == [[*ns, "food"], [*ns, "pets"]]
    assert out["namespacesPage"]["namespaces"] == [[*ns, "pets"]]
    assert out["dogAgain"]["value"]["text"] == "dogs sleep all day"
    assert out["dogAgain"]["created_at"] == out["dog"]["created_at"] < out["dogAgain"]["updated_at"]
    assert out["afterDelete"] is None
    assert (out["reservedNamespace"], out["badTtl"]) == (422, 422)
    with psycopg.connect(pod[1]) as conn:
        stored: dict[str, Any] = dict(conn.execute(
            "SELECT key, extract(epoch FROM expires_at - updated_at) FROM store WHERE prefix LIKE %s",
            (f"js.{tag}%",)).fetchall())
        vectors = [k for (k,) in conn.execute(
            "SELECT DISTINCT key FROM store_vectors WHERE prefix LIKE %s ORDER BY key", (f"js.{tag}%",))]
    assert sorted(stored) == ["cat", "fish", "soup"]
    assert stored["fish"] is None and 29 * 60 <= float(stored["cat"]) <= 31 * 60  # ttl is in minutes
    assert vectors == ["cat", "fish"]
