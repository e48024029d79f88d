from __future__ import annotations

from tests.chart.conftest import FULLNAME, container, env_of, one, pod_metadata, pod_spec, render_chart

SHOW = ["templates/prune-cronjob.yaml"]
ON = {"prune.enabled": True}


def cronjob(values: dict | None = None) -> dict:
    return one(render_chart(values={**ON, **(values or {})}, show_only=SHOW), "CronJob")


class TestPruneCronJob:
    def test_should_not_render_by_default(self) -> None:
        assert render_chart(show_only=SHOW) == []

    def test_should_prune_threads_older_than_the_retention(self) -> None:
        doc = cronjob()
        assert doc["metadata"]["name"] == f"{FULLNAME}-prune"
        prune = container(doc, "prune")
        assert prune["command"] == ["python", "-m", "service.prune", "--older-than-days", "30"]
        assert env_of(prune)["DATABASE_URL"] == {"secretKeyRef": {"name": FULLNAME, "key": "database-url"}}
        assert prune["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]
        assert pod_spec(doc)["restartPolicy"] == "Never"
        assert pod_metadata(doc)["labels"]["app.kubernetes.io/component"] == "prune"

    def test_should_take_the_retention_from_values(self) -> None:
        assert container(cronjob({"prune.olderThanDays": 7}), "prune")["command"][-1] == "7"

    def test_should_apply_only_the_threads_own_ttls_without_a_retention(self) -> None:
        assert container(cronjob({"prune.olderThanDays": None}), "prune")["command"] == [
            "python", "-m", "service.prune"]

    def test_should_run_one_prune_at_a_time_on_schedule(self) -> None:
        spec = cronjob()["spec"]
        assert spec["schedule"] == "17 3 * * *"
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["suspend"] is False
        assert "timeZone" not in spec
        assert (spec["startingDeadlineSeconds"], spec["successfulJobsHistoryLimit"],
                spec["failedJobsHistoryLimit"]) == (600, 1, 3)
        job = spec["jobTemplate"]["spec"]
        assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (2, 3600)

    def test_should_take_schedule_and_limits_from_values(self) -> None:
        spec = cronjob({"prune.schedule": "0 * * * *", "prune.timeZone": "Europe/Berlin", "prune.suspend": True,
                        "prune.startingDeadlineSeconds": 60, "prune.successfulJobsHistoryLimit": 0,
                        "prune.failedJobsHistoryLimit": 1, "prune.backoffLimit": 0,
                        "prune.activeDeadlineSeconds": 300})["spec"]
        assert (spec["schedule"], spec["timeZone"], spec["suspend"]) == ("0 * * * *", "Europe/Berlin", True)
        assert (spec["startingDeadlineSeconds"], spec["successfulJobsHistoryLimit"],
                spec["failedJobsHistoryLimit"]) == (60, 0, 1)
        job = spec["jobTemplate"]["spec"]
        assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (0, 300)

    def test_should_use_the_existing_database_secret(self) -> None:
        env = env_of(container(cronjob({"database.existingSecret": "db"}), "prune"))
        assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "db", "key": "database-url"}}

    def test_should_run_restricted(self) -> None:
        doc = cronjob()
        prune = container(doc, "prune")
        assert prune["securityContext"]["readOnlyRootFilesystem"] is True
        assert prune["securityContext"]["runAsNonRoot"] is True
        assert pod_spec(doc)["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert prune["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
