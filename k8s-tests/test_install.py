"""helm install on kind: the migration hook ran exactly once, the pods never ran DDL, helm test."""

from __future__ import annotations

import re

import pytest
from conftest import APP_ROLE, OWNER_ROLE, Release, ddl_statements

pytestmark = pytest.mark.k8s


def test_migration_hook_should_complete_exactly_once(release: Release) -> None:
    # The Job is a hook deleted on success, so its events are what is left to count: one pod
    # created, one completion, no failed pod or retry.
    events = release.migration_events()
    assert events.get("SuccessfulCreate") == 1, events
    assert events.get("Completed") == 1, events
    assert not {"BackoffLimitExceeded", "DeadlineExceeded", "FailedCreate"} & set(events), events
    # PostgreSQL's own log: all of the schema's DDL came from one migration pod, as the owner role,
    # and each statement ran once.
    ddl = ddl_statements(release.cluster, release.database)
    assert ddl, "no DDL logged: is log_statement=ddl set on the PostgreSQL of the manifest?"
    assert {d.user for d in ddl} == {OWNER_ROLE}
    apps = {d.app for d in ddl}
    assert len(apps) == 1 and next(iter(apps)).startswith("langgraph-migrate:"), apps
    creates = [d.sql for d in ddl if re.match(r"(?i)create\s", d.sql)]
    assert len(creates) == len(set(creates)), "a CREATE statement ran more than once"


def test_pods_should_never_run_ddl(release: Release) -> None:
    ddl = ddl_statements(release.cluster, release.database)
    assert [d for d in ddl if d.user == APP_ROLE or d.app.startswith("langgraph-service")] == []
    # pg_stat_statements counts utility statements per role, including ones that failed to plan.
    rows = release.cluster.psql(
        "SELECT r.rolname, s.calls, left(s.query, 120) FROM pg_stat_statements s "
        "JOIN pg_roles r ON r.oid = s.userid "
        r"WHERE s.query ~* '^\s*(create|alter|drop|truncate|comment|grant|revoke|reindex)\s'")
    assert rows, "pg_stat_statements saw no DDL at all: is the extension loaded?"
    assert {row[0] for row in rows} <= {OWNER_ROLE, "postgres"}, rows
    assert [row for row in rows if row[0] == APP_ROLE] == []


def test_pods_should_be_ready_and_helm_test_pass(release: Release) -> None:
    pods = release.server_pods()
    assert len(pods) == 2
    for pod in pods:
        assert all(c["ready"] for c in pod["status"]["containerStatuses"]), pod["metadata"]["name"]
        assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    # helm exits non-zero when the test Pod (python -m service.smoke: /ready, then one
    # conversation that is answered, paused, approved and resumed) does not succeed.
    result = release.cluster.helm("test", release.name, "--namespace", release.namespace, "--timeout", "5m")
    assert re.search(r"Phase:\s+Succeeded", result.stdout), result.stdout
