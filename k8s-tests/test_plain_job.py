"""migration.useHelmHooks=false (Argo CD, Flux, `helm template | kubectl apply`): the migration is an
ordinary Job of the release, named after the revision, and the server pods wait for the schema.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import APP_ROLE, OWNER_ROLE, Cluster, Release, create_database, ddl_statements

pytestmark = pytest.mark.k8s

DATABASE = "langgraph_plain"


def migration_jobs(rel: Release) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = rel.cluster.get("jobs", "-n", rel.namespace,
                                                 "-l", "app.kubernetes.io/component=migration")["items"]
    return jobs


def test_plain_job_should_migrate_before_the_pods_serve(postgres: Cluster, image: tuple[str, str]) -> None:
    create_database(postgres, DATABASE)
    rel = Release("lgpg-plain", "lgpg-plain", DATABASE, postgres)
    try:
        rel.install(image, {"migration": {"useHelmHooks": False}})
        (job,) = migration_jobs(rel)
        name = job["metadata"]["name"]
        assert name.startswith(f"{rel.fullname}-migrate-1-"), name
        assert not any(k.startswith("helm.sh/hook") for k in job["metadata"].get("annotations") or {})
        assert job["status"].get("succeeded") == 1
        pods = rel.server_pods()
        assert len(pods) == 2 and all(c["ready"] for p in pods for c in p["status"]["containerStatuses"])
        ddl = ddl_statements(postgres, DATABASE)
        assert ddl and {d.user for d in ddl} == {OWNER_ROLE}
        assert [d for d in ddl if d.user == APP_ROLE or d.app.startswith("langgraph-service")] == []
        # An upgrade is a new revision: a new Job (the old one goes with the old manifest).
        rel.upgrade(image, {"migration": {"useHelmHooks": False}, "podAnnotations": {"k8s-tests/revision": "2"}})
        (job,) = migration_jobs(rel)
        assert job["metadata"]["name"].startswith(f"{rel.fullname}-migrate-2-")
        assert job["status"].get("succeeded") == 1
        rel.cluster.wait_ready(rel.namespace, rel.fullname, 2)
        rel.cluster.helm("uninstall", rel.name, "--namespace", rel.namespace, "--wait", "--timeout", "5m")
        assert migration_jobs(rel) == []
        assert rel.secrets_holding("owner-dev-password") == []
    finally:
        rel.uninstall()
