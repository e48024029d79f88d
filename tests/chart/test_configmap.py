from __future__ import annotations

import json

from tests.chart.conftest import FULLNAME, one, render_chart

SHOW = ["templates/configmap.yaml"]


def config(values: dict | None = None) -> dict[str, str]:
    cm = one(render_chart(values=values, show_only=SHOW), "ConfigMap")
    assert cm["metadata"]["name"] == FULLNAME
    return cm["data"]


class TestConfigMap:
    def test_should_hold_the_service_settings_with_their_defaults(self) -> None:
        assert config() == {
            "HOST": "0.0.0.0",  # noqa: S104 - the pod listens on all its interfaces
            "PORT": "8000",
            "CHECKPOINTER": "postgres",
            "PGBOUNCER": "false",
            "DB_POOL_MIN_SIZE": "2",
            "DB_POOL_MAX_SIZE": "16",
            "DB_POOL_TIMEOUT": "5",
            "DB_POOL_MAX_LIFETIME": "1800",
            "DB_STATEMENT_TIMEOUT": "10",
            "GRAPHS": '{"support":"service.graphs.support:graph"}',
            "N_JOBS_PER_WORKER": "10",
            "WEB_CONCURRENCY": "1",
            "MAX_BODY_BYTES": "1048576",
            "DRAIN_TIMEOUT": "30",
            "LOG_LEVEL": "INFO",
            "CRON_SCHEDULER": "true",
            "CRON_MAX_SLEEP": "5",
            "WEBHOOK_TIMEOUT": "10",
            "WEBHOOK_ATTEMPTS": "3",
            "WEBHOOK_BACKOFF": "1",
            "WEBHOOK_ALLOW_LINK_LOCAL": "false",
            "WEBHOOK_ALLOW_LOOPBACK": "false",
        }

    def test_should_take_each_setting_from_values(self) -> None:
        data = config({
            "config.port": 8080, "database.pgbouncer": True, "database.migrateUrl": "postgresql://o@db/x",
            "database.pool.minSize": 0, "database.pool.maxSize": 4, "database.pool.timeoutSeconds": 2,
            "database.pool.maxLifetimeSeconds": 600, "database.statementTimeoutSeconds": 0,
            "config.maxBodyBytes": 10000000, "shutdown.drainTimeoutSeconds": 120, "config.logLevel": "DEBUG",
        })
        assert {k: data[k] for k in ("PORT", "PGBOUNCER", "DB_POOL_MIN_SIZE", "DB_POOL_MAX_SIZE", "DB_POOL_TIMEOUT",
                                     "DB_POOL_MAX_LIFETIME", "DB_STATEMENT_TIMEOUT", "MAX_BODY_BYTES",
                                     "DRAIN_TIMEOUT", "LOG_LEVEL")} == {
            "PORT": "8080", "PGBOUNCER": "true", "DB_POOL_MIN_SIZE": "0", "DB_POOL_MAX_SIZE": "4",
            "DB_POOL_TIMEOUT": "2", "DB_POOL_MAX_LIFETIME": "600", "DB_STATEMENT_TIMEOUT": "0",
            "MAX_BODY_BYTES": "10000000", "DRAIN_TIMEOUT": "120", "LOG_LEVEL": "DEBUG"}

    def test_should_render_graphs_as_a_json_object(self) -> None:
        graphs = {"support": "service.graphs.support:graph", "triage": "agents.triage:build"}
        data = config({"config.graphs": graphs})
        # Helm merges maps, so the default "support" entry stays unless overridden.
        assert json.loads(data["GRAPHS"]) == graphs

    def test_should_drop_a_default_graph_set_to_null(self) -> None:
        data = config({"config.graphs": {"support": None, "triage": "agents.triage:build"}})
        assert json.loads(data["GRAPHS"]) == {"triage": "agents.triage:build"}

    def test_should_always_use_the_postgres_checkpointer(self) -> None:
        assert config({"database.pgbouncer": True, "database.migrateUrl": "postgresql://o@db/x"})["CHECKPOINTER"] == \
            "postgres"

    def test_should_take_the_cron_and_webhook_settings_from_values(self) -> None:
        data = config({
            "crons.schedulerEnabled": False, "crons.maxSleepSeconds": 0.5, "webhooks.timeoutSeconds": 2.5,
            "webhooks.attempts": 5, "webhooks.backoffSeconds": 0, "webhooks.allowLinkLocal": True,
            "webhooks.allowLoopback": True,
        })
        assert {k: v for k, v in data.items() if k.startswith(("CRON_", "WEBHOOK_"))} == {
            "CRON_SCHEDULER": "false", "CRON_MAX_SLEEP": "0.5", "WEBHOOK_TIMEOUT": "2.5", "WEBHOOK_ATTEMPTS": "5",
            "WEBHOOK_BACKOFF": "0", "WEBHOOK_ALLOW_LINK_LOCAL": "true", "WEBHOOK_ALLOW_LOOPBACK": "true"}

    def test_should_be_read_by_the_service_settings(self) -> None:
        """What the chart renders is what the service accepts (its own parser, not a copy of it)."""
        from service.settings import CronSettings, WebhookSettings

        data = config({"crons.maxSleepSeconds": 0.5, "webhooks.allowLinkLocal": True})
        assert CronSettings.from_env(data) == CronSettings(enabled=True, max_sleep=0.5)
        assert WebhookSettings.from_env(data) == WebhookSettings(allow_link_local=True)
