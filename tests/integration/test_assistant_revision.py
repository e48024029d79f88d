"""A run is built from its assistant as the row is when the run's row is written.

Each process remembers the assistants its runs used (``PostgresAssistantStore.for_run``), so a
run costs no statement for its assistant; the run queue's submit checks the remembered row's
revision in the statement that writes the run, and writes nothing when another process changed
it meanwhile (``StaleAssistant``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service.assistants import PostgresAssistantStore, assistant_for_run
from service.graphs import assistant_id_for, load_graphs
from service.runs.queue import RunQueue, StaleAssistant

CONTEXTUAL = "tests.support.graphs:contextual"


async def scenario(conninfo: str, step: Any) -> Any:
    graphs = await load_graphs({"contextual": CONTEXTUAL}, None, None)
    async with AsyncConnectionPool(conninfo, min_size=1, max_size=2, open=False,
                                   kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        store = PostgresAssistantStore(pool, graphs)
        queue = RunQueue(pool, pod="test", lease=3600)
        return await step(store, queue, graphs)


def change_in_another_process(conninfo: str, assistant_id: str, model: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("UPDATE assistants SET context = %s, version = version + 1 WHERE assistant_id = %s",
                     (Jsonb({"model": model}), assistant_id))


def submit(queue: RunQueue, assistant_id: str, revision: str | None, thread_id: str, *,
           create: bool, run_now: bool = True) -> Any:
    return queue.submit(thread_id=thread_id, assistant_id=assistant_id, kwargs={"input": None}, metadata={},
                        strategy="enqueue", run_now=run_now, create={} if create else None, thread_metadata={},
                        assistant_revision=revision)


def counts(conninfo: str, thread_id: str) -> tuple[int, int]:
    with psycopg.connect(conninfo) as conn:
        threads = conn.execute("SELECT count(*) FROM threads WHERE thread_id = %s", (thread_id,)).fetchone()
        runs = conn.execute("SELECT count(*) FROM runs WHERE thread_id = %s", (thread_id,)).fetchone()
    assert threads is not None and runs is not None
    return int(threads[0]), int(runs[0])


class TestRemembered:
    def test_should_read_an_assistant_once_then_again_only_when_asked(self, migrated_db: str) -> None:
        system = assistant_id_for("contextual")

        async def step(store: PostgresAssistantStore, queue: RunQueue, graphs: Any) -> Any:
            first, entry, revision = await assistant_for_run(store, graphs, "contextual")
            change_in_another_process(migrated_db, system, "large")
            again, _, same = await assistant_for_run(store, graphs, "contextual")  # remembered: not read
            fresh, _, newer = await assistant_for_run(store, graphs, "contextual", fresh=True)
            return first, entry, revision, again, same, fresh, newer

        first, entry, revision, again, same, fresh, newer = asyncio.run(scenario(migrated_db, step))
        assert entry.graph_id == "contextual" and first.assistant_id == system
        assert again is first and same == revision and again.context == {}
        assert fresh.context == {"model": "large"} and newer != revision


class TestGuard:
    @pytest.mark.parametrize(("create", "run_now"), [(True, True), (True, False), (False, True), (False, False)],
                             ids=["new-thread", "new-thread-queued", "thread", "thread-queued"])
    def test_should_write_nothing_for_an_assistant_changed_since_it_was_read(
        self, migrated_db: str, create: bool, run_now: bool
    ) -> None:
        system = assistant_id_for("contextual")
        thread_id = f"t-{create}-{run_now}"
        if not create:
            with psycopg.connect(migrated_db) as conn:
                conn.execute("INSERT INTO threads (thread_id) VALUES (%s)", (thread_id,))

        async def step(store: PostgresAssistantStore, queue: RunQueue, graphs: Any) -> Any:
            assistant, _, revision = await assistant_for_run(store, graphs, "contextual")
            change_in_another_process(migrated_db, system, "large")
            with pytest.raises(StaleAssistant):
                await submit(queue, assistant.assistant_id, revision, thread_id, create=create, run_now=run_now)
            stale = counts(migrated_db, thread_id)
            assistant, _, revision = await assistant_for_run(store, graphs, "contextual", fresh=True)
            submitted = await submit(queue, assistant.assistant_id, revision, thread_id, create=create,
                                     run_now=run_now)
            return stale, submitted, assistant

        stale, submitted, assistant = asyncio.run(scenario(migrated_db, step))
        # A thread the run would have created may be there (created on its own when the run is
        # queued for later, as before); the run is not.
        assert stale[1] == 0
        assert stale[0] == (1 if not create or not run_now else 0)
        assert submitted.row["run_id"] is not None and submitted.taken == run_now
        assert assistant.context == {"model": "large"}
        assert counts(migrated_db, thread_id) == (1, 1)

    def test_should_not_find_an_assistant_deleted_since_it_was_read(self, migrated_db: str) -> None:
        system = assistant_id_for("contextual")

        async def step(store: PostgresAssistantStore, queue: RunQueue, graphs: Any) -> Any:
            assistant, _, revision = await assistant_for_run(store, graphs, "contextual")
            with psycopg.connect(migrated_db, autocommit=True) as conn:
                conn.execute("DELETE FROM assistants WHERE assistant_id = %s", (system,))
            with pytest.raises(StaleAssistant):
                await submit(queue, assistant.assistant_id, revision, "t-deleted", create=True)
            return counts(migrated_db, "t-deleted")

        assert asyncio.run(scenario(migrated_db, step)) == (0, 0)
