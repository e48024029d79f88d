from __future__ import annotations

import base64

from tests.chart.conftest import FULLNAME, one, render_chart, render_error

SHOW = ["templates/secret.yaml"]


def decoded(values: dict | None = None) -> dict[str, str]:
    secret = one(render_chart(values=values, show_only=SHOW), "Secret")
    assert secret["metadata"]["name"] == FULLNAME
    assert secret["type"] == "Opaque"
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


class TestSecret:
    def test_should_hold_the_pods_database_url(self) -> None:
        assert decoded({"database.url": "postgresql://app:pw@pgbouncer:6432/db"}) == {
            "database-url": "postgresql://app:pw@pgbouncer:6432/db"}

    def test_should_never_hold_the_migration_url(self) -> None:
        data = decoded({"database.url": "postgresql://app@pgbouncer/db",
                        "database.migrateUrl": "postgresql://owner@postgres/db"})
        assert "migrate-database-url" not in data
        assert "postgresql://owner@postgres/db" not in data.values()

    def test_should_not_be_a_hook(self) -> None:
        secret = one(render_chart(show_only=SHOW))
        assert "annotations" not in secret["metadata"]

    def test_should_hold_api_keys_comma_separated(self) -> None:
        data = decoded({"apiKeys.enabled": True, "apiKeys.keys": ["first", "second"]})
        assert data["api-keys"] == "first,second"

    def test_should_ignore_api_keys_when_disabled(self) -> None:
        assert "api-keys" not in decoded({"apiKeys.keys": ["unused"]})

    def test_should_hold_only_api_keys_with_an_existing_database_secret(self) -> None:
        data = decoded({"database.existingSecret": "db", "apiKeys.enabled": True, "apiKeys.keys": ["k"]})
        assert data == {"api-keys": "k"}

    def test_should_not_render_when_every_secret_is_external(self) -> None:
        values = {"database.existingSecret": "db", "apiKeys.enabled": True, "apiKeys.existingSecret": "keys"}
        assert render_chart(values=values, show_only=SHOW) == []
        assert render_chart(values={"database.existingSecret": "db"}, show_only=SHOW) == []

    def test_should_refuse_enabled_api_keys_without_keys(self) -> None:
        assert "apiKeys.keys is empty" in render_error({"apiKeys.enabled": True}, show_only=SHOW)

    def test_should_refuse_an_empty_database_url(self) -> None:
        assert "database.url is empty" in render_error({"database.url": ""}, show_only=SHOW)
