from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

from tests.chart.conftest import CHART_DIR, FULLNAME, NAMESPACE, RELEASE, expand_dotted, run_helm


@functools.cache
def _notes(values_json: str) -> str:
    """NOTES.txt as `helm install --dry-run=client` prints it (helm template leaves it out)."""
    with tempfile.TemporaryDirectory() as tmp:
        values = Path(tmp) / "values.json"
        values.write_text(json.dumps(expand_dotted(json.loads(values_json))))
        output = run_helm("install", RELEASE, str(CHART_DIR), "--dry-run=client", "--namespace", NAMESPACE,
                          "--values", str(values)).stdout
    assert "NOTES:" in output
    return output.split("NOTES:", 1)[1]


def notes(values: dict | None = None) -> str:
    return _notes(json.dumps(values or {}, sort_keys=True))


class TestNotes:
    def test_should_explain_the_hook_migration_and_how_to_reach_the_service(self) -> None:
        text = notes()
        assert f'installed as release "{RELEASE}" in namespace "{NAMESPACE}"' in text
        assert f"The Job {FULLNAME}-migrate ran as a pre-install hook" in text
        assert "A failed run is kept for\n  86400 seconds" in text
        assert f"kubectl -n {NAMESPACE} logs job/{FULLNAME}-migrate" in text
        assert f"port-forward service/{FULLNAME} 8000:8000" in text
        assert f"helm test -n {NAMESPACE} {RELEASE}" in text

    def test_should_say_a_failed_run_is_kept_when_there_is_no_ttl(self) -> None:
        assert "A failed run is kept for\n  ever" in notes({"migration.ttlSecondsAfterFinished": None})

    def test_should_explain_the_plain_job_and_the_wait(self) -> None:
        text = notes({"migration.useHelmHooks": False})
        assert "runs alongside the Deployment" in text
        assert '"wait-for-schema" init container' in text
        assert f"logs -f job/{FULLNAME}-migrate-1-" in text
        assert "stay unready" in notes({"migration.useHelmHooks": False, "migration.waitForSchema.enabled": False})

    def test_should_explain_a_disabled_migration(self) -> None:
        assert "The chart runs no migration" in notes({"migration.enabled": False})

    def test_should_warn_about_the_example_database_url(self) -> None:
        assert "WARNING: database.url is the chart's example value" in notes()
        assert "WARNING" not in notes({"database.url": "postgresql://app:pw@db.example.com/agents"})

    def test_should_name_the_existing_secret_and_its_keys(self) -> None:
        text = notes({"database.existingSecret": "langgraph-db"})
        assert 'Secret "langgraph-db" (keys database-url and\nmigrate-database-url)' in text
        assert "WARNING" not in text

    def test_should_mention_helm_test_and_metrics_only_when_enabled(self) -> None:
        assert "helm test" not in notes({"tests.enabled": False})
        assert "ServiceMonitor" not in notes()
        assert f"ServiceMonitor {FULLNAME} scrapes /metrics every 30s" in notes({"serviceMonitor.enabled": True})
