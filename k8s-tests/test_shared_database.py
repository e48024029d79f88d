"""Two releases installed at the same time, in two other namespaces, on one new database.

Both pre-install migration hooks start together against the same empty database: exactly one
applies the schema, the other waits for the lock or finds the schema current; both releases come
up, and a thread paused through one release is resumed through the other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re

import pytest
from conftest import APP_ROLE, OWNER_ROLE, Cluster, Release, create_database, ddl_statements, port_forward
from langgraph_sdk import get_client

pytestmark = pytest.mark.k8s

DATABASE = "langgraph_shared"


def test_concurrent_installs_should_share_one_database(postgres: Cluster, image: tuple[str, str],
                                                       release: Release) -> None:
    create_database(postgres, DATABASE)
    b = Release("lgpg-b", "lgpg-b", DATABASE, postgres)
    c = Release("lgpg-c", "lgpg-c", DATABASE, postgres)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda r: r.install(image, {"replicaCount": 1}, check=False), [b, c]))
        for rel, result in zip((b, c), results, strict=True):
            assert result.returncode == 0, f"{rel.name}: {result.stderr}"
            events = rel.migration_events()
            assert events.get("SuccessfulCreate") == 1 and events.get("Completed") == 1, (rel.name, events)
        ddl = ddl_statements(postgres, DATABASE)
        assert ddl
        assert {d.user for d in ddl} == {OWNER_ROLE}
        assert [d for d in ddl if d.user == APP_ROLE] == []
        apps = {d.app for d in ddl}
        assert len(apps) == 1 and next(iter(apps)).startswith("langgraph-migrate:"), apps
        creates = [d.sql for d in ddl if re.match(r"(?i)create\s", d.sql)]
        assert len(creates) == len(set(creates))
        # The first release's database is untouched by these installs.
        assert all(d.database == DATABASE for d in ddl)
        with contextlib.ExitStack() as stack:
            url_b = stack.enter_context(port_forward(postgres, b.namespace, f"svc/{b.fullname}"))
            url_c = stack.enter_context(port_forward(postgres, c.namespace, f"svc/{c.fullname}"))
            asyncio.run(_pause_on_one_resume_on_other(url_b, url_c))
    finally:
        for rel in (b, c):
            postgres.helm("uninstall", rel.name, "--namespace", rel.namespace, "--wait", check=False)
            postgres.kubectl("delete", "namespace", rel.namespace, "--wait=false", check=False)


async def _pause_on_one_resume_on_other(url_b: str, url_c: str) -> None:
    b, c = get_client(url=url_b), get_client(url=url_c)
    thread = await b.threads.create(graph_id="support")
    thread_id = thread["thread_id"]
    await b.runs.wait(thread_id, "support",
                      input={"messages": [{"role": "user", "content": "Is investing with you guaranteed?"}]})
    assert (await c.threads.get(thread_id))["status"] == "interrupted"
    reply = "Approved through the other release."
    await c.threads.update_state(thread_id, {"approved_reply": reply})
    final = await c.runs.wait(thread_id, "support", input=None)
    assert final["messages"][-1]["content"] == reply  # type: ignore[index,call-overload]
