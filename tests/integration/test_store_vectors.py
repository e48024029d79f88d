"""The vector migrations for store.index: applied by migrate where pgvector exists, one clear line where not.

Runs on whichever server the suite uses: the embedded PostgreSQL 18 ships pgvector; Debian's
PostgreSQL 15 (``make integration-pg15``) has none, so there the job and the pod must say so.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import psycopg
import pytest

from migrate.runner import ExitCode, MigrationError, Options, run
from service import schema
from service.db import to_url
from service.settings import StoreSettings
from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess

STORE = {"index": {"dims": 8, "embed": "tests.support.embeddings:embed"}}


def has_pgvector(conninfo: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is not None


def components() -> tuple[schema.Component, ...]:
    return schema.components(StoreSettings.from_env({"LANGGRAPH_STORE": json.dumps(STORE)}).index)


def test_should_render_the_vector_steps_for_the_configured_index() -> None:
    index = StoreSettings.from_mapping({"index": {"dims": 12, "embed": "m:f", "distance_type": "l2",
                                                  "ann_index_config": {"kind": "hnsw", "m": 8}}}, "store").index
    assert index is not None
    steps = schema.vector_steps(index)
    assert "CREATE EXTENSION vector" in steps[0]
    assert "embedding vector(12)" in steps[1]
    assert "USING hnsw (embedding vector_l2_ops) WITH (m=8)" in steps[2]
    flat = StoreSettings.from_mapping({"index": {"dims": 4, "embed": "m:f", "ann_index_config": {"kind": "flat"}}},
                                      "store").index
    assert flat is not None and schema.vector_steps(flat)[2].startswith("SELECT 1")
    assert [c.name for c in schema.components(None)] == ["checkpointer", "store", "app"]


def test_should_apply_the_vector_migrations_only_with_an_index(fresh_db: str) -> None:
    run(Options(conninfo=fresh_db))
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT to_regclass('store_vectors')").fetchone() == (None,)
    if not has_pgvector(fresh_db):
        with pytest.raises(MigrationError) as failed:
            run(Options(conninfo=fresh_db, components=components()))
        assert failed.value.code == ExitCode.STEP_FAILED
        assert "pgvector" in failed.value.message
        return
    report = run(Options(conninfo=fresh_db, components=components()))
    assert report.steps_applied == ["store_vectors:v0", "store_vectors:v1", "store_vectors:v2"]
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT max(v) FROM vector_migrations").fetchone() == (2,)
        idx = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'store_vectors_embedding_idx'").fetchone()
        assert idx is not None and "hnsw" in idx[0]
    # --check knows the index too: current with it, and behind on a database migrated without it.
    assert run(Options(conninfo=fresh_db, components=components(), check=True)).outcome == "current"


def test_should_report_a_missing_pgvector_from_the_job_and_the_pod(fresh_db: str) -> None:
    run(Options(conninfo=fresh_db))
    env = python_env(DATABASE_URL=to_url(fresh_db), LANGGRAPH_STORE=json.dumps(STORE))
    job = subprocess.run([sys.executable, "-m", "migrate"], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    if has_pgvector(fresh_db):
        assert job.returncode == 0, job.stderr
        return
    assert job.returncode == ExitCode.STEP_FAILED
    assert job.stderr.strip().count("\n") == 0 and "pgvector" in job.stderr and "Traceback" not in job.stderr
    with ServiceProcess(fresh_db, LANGGRAPH_STORE=json.dumps(STORE)).start(wait=None) as pod:
        pod.wait_for("/ready", status=503, timeout=60)
        body = httpx.get(pod.url + "/ready").json()
        assert "pgvector" in json.dumps(body)


def test_should_need_the_vector_component_only_with_an_index(fresh_db: str) -> None:
    run(Options(conninfo=fresh_db))
    with pytest.raises(MigrationError) as behind:
        run(Options(conninfo=fresh_db, components=components(), check=True))
    assert behind.value.code == ExitCode.BEHIND and "store_vectors" in behind.value.message
