"""What the schema module derives from LangGraph's migration lists and our own."""

from __future__ import annotations

from langgraph.checkpoint.postgres.base import BasePostgresSaver
from langgraph.store.postgres.base import BasePostgresStore

from migrate.runner import DEFAULT_LOCK_KEY, pending_steps
from service import schema


def test_should_require_the_last_version_of_each_component() -> None:
    assert schema.required_versions() == {
        "checkpointer": len(BasePostgresSaver.MIGRATIONS) - 1,
        "store": len(BasePostgresStore.MIGRATIONS) - 1,
        "app": len(schema.APP_MIGRATIONS) - 1,
    }


def test_should_find_every_index_the_statements_define() -> None:
    names = {s.name for s in schema.expected_indexes()}
    assert {"checkpoints_thread_id_idx", "checkpoint_blobs_thread_id_idx", "checkpoint_writes_thread_id_idx",
            "store_prefix_idx", "idx_store_expires_at", "threads_metadata_idx"} <= names
    concurrent = {s.name for s in schema.expected_indexes() if s.concurrent}
    assert "idx_store_expires_at" not in concurrent and "store_prefix_idx" in concurrent


def test_should_list_missing_components_only() -> None:
    versions = {"checkpointer": 99, "store": 1, "app": -1}
    gaps = schema.missing(versions)
    assert set(gaps) == {"store", "app"}
    need = schema.required_versions()
    assert schema.describe_missing(gaps) == f"store at v1 needs v{need['store']}, app at v-1 needs v{need['app']}"


def test_should_order_pending_steps_by_component_then_version() -> None:
    steps = [s.label for s in pending_steps({"checkpointer": 8, "store": 3, "app": 0})]
    need = schema.required_versions()
    assert steps == ["checkpointer:v9", *(f"app:v{v}" for v in range(1, need["app"] + 1))]


def test_should_document_the_lock_key_as_it_appears_in_pg_locks() -> None:
    assert DEFAULT_LOCK_KEY >> 32 == 1279741257
    assert DEFAULT_LOCK_KEY & 0xFFFFFFFF == 1196573012
