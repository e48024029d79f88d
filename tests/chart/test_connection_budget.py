"""The connection budget (database.maxConnections) and multi-host database URLs in the chart."""

from __future__ import annotations

import base64

import pytest

from tests.chart.conftest import one, render_chart, render_error
from tests.chart.test_notes import notes

MULTI_HOST = "postgresql://app:pw@db1:5432,db2:5432/app?target_session_attrs=read-write"


class TestConnectionBudget:
    def test_should_count_every_pod_of_a_rollout_times_the_pool_plus_the_jobs(self) -> None:
        # 2 pods + 25% surge rounded up (1) = 3 pods x 16 + 1 migration.
        assert "Database connections, worst case: 49 ((2 pods + 1 rollout surge) x pool 16 + 1 migration)" in notes()

    def test_should_count_the_hpa_maximum_and_the_prune_job(self) -> None:
        text = notes({"autoscaling.enabled": True, "autoscaling.maxReplicas": 10, "database.pool.maxSize": 8,
                      "prune.enabled": True, "rollingUpdate.maxSurge": 2})
        assert "worst case: 99 ((10 pods + 2 rollout surge) x pool 8 + 1 migration + 2 prune)" in text

    def test_should_count_every_worker_process_of_a_pod(self) -> None:
        # Each of a pod's config.workers processes has its own pool: 3 pods x 16 x 2 + 1 migration.
        assert "worst case: 97 ((2 pods + 1 rollout surge) x pool 16 x 2 workers + 1 migration)" in notes(
            {"config.workers": 2})
        values = {"config.workers": 2, "database.maxConnections": 96, "database.maxConnectionsPolicy": "fail"}
        assert "worst case: 97 = (2 pods + 1 rollout surge) x 32 (database.pool.maxSize x config.workers)" in \
            render_error(values)

    def test_should_round_a_percentage_surge_up(self) -> None:
        text = notes({"replicaCount": 5, "rollingUpdate.maxSurge": "10%", "migration.enabled": False})
        assert "worst case: 96 ((5 pods + 1 rollout surge) x pool 16)" in text

    def test_should_warn_in_the_notes_when_the_worst_case_exceeds_max_connections(self) -> None:
        text = notes({"autoscaling.enabled": True, "database.maxConnections": 100})
        assert ("WARNING: database connections in the worst case: 209 = (10 pods + 3 rollout surge) x 16 "
                "(database.pool.maxSize) + 1 migration + 0 prune, above database.maxConnections (100)") in text
        assert render_chart(values={"autoscaling.enabled": True, "database.maxConnections": 100})  # only a warning

    def test_should_say_when_it_fits_and_when_no_limit_is_set(self) -> None:
        assert "Within database.maxConnections (49)." in notes({"database.maxConnections": 49})
        assert "WARNING: database connections" not in notes({"database.maxConnections": 49})
        assert "Set database.maxConnections to have the chart check it" in notes()

    def test_should_fail_the_render_with_the_fail_policy(self) -> None:
        values = {"database.maxConnections": 48, "database.maxConnectionsPolicy": "fail"}
        assert "worst case: 49 = (2 pods + 1 rollout surge) x 16" in render_error(values)
        assert render_chart(values={**values, "database.maxConnections": 49})

    @pytest.mark.parametrize("value", [0, "lots"])
    def test_should_refuse_a_bad_limit(self, value: object) -> None:
        assert "maxConnections" in render_error({"database.maxConnections": value})

    def test_should_refuse_an_unknown_policy(self) -> None:
        assert "maxConnectionsPolicy" in render_error({"database.maxConnectionsPolicy": "ignore"})


class TestDatabaseUrls:
    @pytest.mark.parametrize("url", [
        MULTI_HOST,
        "postgresql+asyncpg://app:pw@db1,db2:6432/app?target_session_attrs=read-write",
        "host=db1,db2 port=5432,5432 user=app dbname=app target_session_attrs=read-write",
    ])
    def test_should_pass_a_multi_host_url_to_the_pods_and_the_migration_unchanged(self, url: str) -> None:
        docs = render_chart(values={"database.url": url},
                            show_only=["templates/secret.yaml", "templates/migration-secret.yaml"])
        values = {base64.b64decode(v).decode() for d in docs for v in d.get("data", {}).values()}
        assert url in values
        secret = one(render_chart(values={"database.url": url, "database.migrateUrl": url},
                                  show_only=["templates/migration-secret.yaml"]))
        assert base64.b64decode(secret["data"]["migrate-database-url"]).decode() == url

    @pytest.mark.parametrize("key", ["database.url", "database.migrateUrl"])
    def test_should_refuse_a_url_that_is_not_postgresql(self, key: str) -> None:
        assert "does not match pattern" in render_error({key: "mysql://app:pw@db/app"})
