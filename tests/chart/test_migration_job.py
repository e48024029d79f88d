from __future__ import annotations

import base64
import re
from typing import Any, ClassVar

import pytest

from tests.chart.conftest import (
    FULLNAME,
    RELEASE,
    container,
    env_of,
    hook_annotations,
    one,
    pod_metadata,
    pod_spec,
    render_chart,
    render_error,
)

JOB = ["templates/migration-job.yaml"]
SECRET = ["templates/migration-secret.yaml"]
SA = ["templates/migration-serviceaccount.yaml"]
HOOK = {"helm.sh/hook": "pre-install,pre-upgrade",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}
# The Secret (the owner's URL and password) and the ServiceAccount must not outlive a failed
# migration or the release: also deleted on failure, and post-delete hooks so that `helm uninstall`
# removes what a failed install left (before-hook-creation), then the copy (hook-succeeded).
PREREQ_HOOK = {"helm.sh/hook": "pre-install,pre-upgrade,post-delete",
               "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded,hook-failed"}


def job(values: dict | None = None, **kwargs) -> dict:
    return one(render_chart(values=values, show_only=JOB, **kwargs), "Job")


def migrate_env(values: dict | None = None) -> dict:
    return env_of(container(job(values), "migrate"))


class TestMigrationJob:
    def test_should_run_migrate_as_a_pre_install_and_pre_upgrade_hook(self) -> None:
        doc = job()
        assert doc["metadata"]["name"] == f"{FULLNAME}-migrate"
        assert hook_annotations(doc) == {**HOOK, "helm.sh/hook-weight": "0"}
        assert container(doc, "migrate")["command"] == ["python", "-m", "migrate"]
        assert pod_spec(doc)["restartPolicy"] == "Never"

    def test_should_bound_retries_run_time_and_lifetime(self) -> None:
        spec = job({"migration.backoffLimit": 1, "migration.activeDeadlineSeconds": 120,
                    "migration.ttlSecondsAfterFinished": 600})["spec"]
        assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (1, 120, 600)
        defaults = job()["spec"]
        assert (defaults["backoffLimit"], defaults["activeDeadlineSeconds"],
                defaults["ttlSecondsAfterFinished"]) == (3, 600, 86400)

    def test_should_omit_the_ttl_when_null(self) -> None:
        assert "ttlSecondsAfterFinished" not in job({"migration.ttlSecondsAfterFinished": None})["spec"]

    def test_should_fail_fast_on_exit_codes_no_retry_can_fix(self) -> None:
        rules = job()["spec"]["podFailurePolicy"]["rules"]
        assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
        assert rules[1] == {"action": "FailJob", "onExitCodes": {"containerName": "migrate", "operator": "In",
                                                                  "values": [2, 3, 5, 6, 7, 11]}}

    def test_should_take_fail_fast_exit_codes_from_values(self) -> None:
        rules = job({"migration.failFastExitCodes": [3]})["spec"]["podFailurePolicy"]["rules"]
        assert rules[1]["onExitCodes"]["values"] == [3]
        rules = job({"migration.failFastExitCodes": []})["spec"]["podFailurePolicy"]["rules"]
        assert [r["action"] for r in rules] == ["Ignore"]

    def test_should_connect_directly_with_the_migration_url(self) -> None:
        env = migrate_env()
        assert env["MIGRATE_DATABASE_URL"] == {"secretKeyRef": {"name": f"{FULLNAME}-migrate",
                                                                "key": "migrate-database-url"}}
        assert "DATABASE_URL" not in env

    def test_should_pass_timeouts_instance_and_log_level(self) -> None:
        env = migrate_env({"migration.lockTimeoutSeconds": 90, "migration.ddlLockTimeoutSeconds": 2,
                           "migration.connectTimeoutSeconds": 60, "config.logLevel": "WARNING"})
        assert {k: env[k] for k in ("MIGRATE_LOCK_TIMEOUT", "MIGRATE_DDL_LOCK_TIMEOUT", "MIGRATE_CONNECT_TIMEOUT",
                                    "MIGRATE_INSTANCE", "LOG_LEVEL")} == {
            "MIGRATE_LOCK_TIMEOUT": "90", "MIGRATE_DDL_LOCK_TIMEOUT": "2", "MIGRATE_CONNECT_TIMEOUT": "60",
            "MIGRATE_INSTANCE": RELEASE, "LOG_LEVEL": "WARNING"}
        defaults = migrate_env()
        assert (defaults["MIGRATE_LOCK_TIMEOUT"], defaults["MIGRATE_DDL_LOCK_TIMEOUT"],
                defaults["MIGRATE_CONNECT_TIMEOUT"]) == ("30", "5", "30")

    def test_should_push_to_the_pushgateway_when_set(self) -> None:
        assert "PUSHGATEWAY_URL" not in migrate_env()
        env = migrate_env({"migration.pushgatewayUrl": "http://pushgateway.monitoring:9091"})
        assert env["PUSHGATEWAY_URL"] == "http://pushgateway.monitoring:9091"

    def test_should_use_the_existing_secret(self) -> None:
        env = migrate_env({"database.existingSecret": "db"})
        assert env["MIGRATE_DATABASE_URL"] == {"secretKeyRef": {"name": "db", "key": "migrate-database-url"}}

    def test_should_add_job_annotations_next_to_the_hook(self) -> None:
        doc = job({"migration.annotations": {"example.com/owner": "platform"}})
        assert doc["metadata"]["annotations"]["example.com/owner"] == "platform"
        assert hook_annotations(doc)["helm.sh/hook"] == "pre-install,pre-upgrade"

    def test_should_use_its_own_service_account(self) -> None:
        spec = pod_spec(job())
        assert spec["serviceAccountName"] == f"{FULLNAME}-migrate"
        assert spec["automountServiceAccountToken"] is False

    def test_should_run_restricted_with_a_writable_tmp(self) -> None:
        doc = job()
        migrate = container(doc, "migrate")
        assert migrate["securityContext"]["readOnlyRootFilesystem"] is True
        assert migrate["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert pod_spec(doc)["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in migrate["volumeMounts"]  # noqa: S108

    def test_should_label_pods_as_the_migration_component(self) -> None:
        labels = pod_metadata(job())["labels"]
        assert labels["app.kubernetes.io/component"] == "migration"

    def test_should_not_render_when_disabled(self) -> None:
        assert render_chart(values={"migration.enabled": False}, show_only=JOB + SECRET + SA) == []


class TestPlainMigrationJob:
    VALUES: ClassVar[dict[str, Any]] = {"migration.useHelmHooks": False}

    def test_should_be_a_plain_job_named_per_revision_and_content(self) -> None:
        doc = job(self.VALUES)
        assert hook_annotations(doc) == {}
        assert re.fullmatch(rf"{FULLNAME}-migrate-1-[0-9a-f]{{8}}", doc["metadata"]["name"])

    def test_should_change_name_with_the_image_and_the_migration_settings(self) -> None:
        base = job(self.VALUES)["metadata"]["name"]
        assert job({**self.VALUES, "image.tag": "0.2.0"})["metadata"]["name"] != base
        assert job({**self.VALUES, "migration.lockTimeoutSeconds": 60})["metadata"]["name"] != base
        assert job(self.VALUES)["metadata"]["name"] == base  # stable for an unchanged render (Argo CD)

    def test_should_keep_the_name_within_kubernetes_limits(self) -> None:
        doc = job({**self.VALUES, "fullnameOverride": "a" * 63})
        assert len(doc["metadata"]["name"]) <= 63
        assert re.fullmatch(r"a{44}-1-[0-9a-f]{8}", doc["metadata"]["name"])

    def test_should_make_its_secret_and_service_account_plain_resources(self) -> None:
        docs = render_chart(values=self.VALUES, show_only=SECRET + SA)
        assert sorted(d["kind"] for d in docs) == ["Secret", "ServiceAccount"]
        assert all(hook_annotations(d) == {} for d in docs)


class TestMigrationSecret:
    def test_should_be_a_hook_created_before_the_job(self) -> None:
        secret = one(render_chart(show_only=SECRET), "Secret")
        assert secret["metadata"]["name"] == f"{FULLNAME}-migrate"
        assert hook_annotations(secret) == {**PREREQ_HOOK, "helm.sh/hook-weight": "-10"}
        job_weight = int(hook_annotations(job())["helm.sh/hook-weight"])
        assert int(hook_annotations(secret)["helm.sh/hook-weight"]) < job_weight

    def test_should_hold_only_the_migration_url(self) -> None:
        secret = one(render_chart(values={"database.url": "postgresql://app@pgbouncer/db",
                                          "database.migrateUrl": "postgresql://owner@postgres/db"},
                                  show_only=SECRET))
        assert list(secret["data"]) == ["migrate-database-url"]
        assert base64.b64decode(secret["data"]["migrate-database-url"]).decode() == "postgresql://owner@postgres/db"

    def test_should_reuse_the_pods_url_without_pgbouncer(self) -> None:
        secret = one(render_chart(values={"database.url": "postgresql://app@postgres/db"}, show_only=SECRET))
        assert base64.b64decode(secret["data"]["migrate-database-url"]).decode() == "postgresql://app@postgres/db"

    def test_should_refuse_pgbouncer_without_a_direct_migration_url(self) -> None:
        error = render_error({"database.pgbouncer": True}, show_only=JOB)
        assert "database.migrateUrl is empty" in error

    def test_should_not_render_with_an_existing_secret(self) -> None:
        assert render_chart(values={"database.existingSecret": "db"}, show_only=SECRET) == []


class TestMigrationServiceAccount:
    def test_should_be_a_hook_created_before_the_job(self) -> None:
        sa = one(render_chart(show_only=SA), "ServiceAccount")
        assert sa["metadata"]["name"] == f"{FULLNAME}-migrate"
        assert hook_annotations(sa) == {**PREREQ_HOOK, "helm.sh/hook-weight": "-10"}
        assert sa["automountServiceAccountToken"] is False

    def test_should_carry_annotations(self) -> None:
        sa = one(render_chart(values={"migration.serviceAccount.annotations": {"iam.example.com/role": "migrator"}},
                              show_only=SA))
        assert sa["metadata"]["annotations"]["iam.example.com/role"] == "migrator"
        assert sa["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10"

    def test_should_take_a_name(self) -> None:
        values = {"migration.serviceAccount.name": "migrator"}
        assert one(render_chart(values=values, show_only=SA))["metadata"]["name"] == "migrator"
        assert pod_spec(job(values))["serviceAccountName"] == "migrator"

    @pytest.mark.parametrize(("name", "expected"), [("", "default"), ("migrator", "migrator")])
    def test_should_use_an_existing_account_when_not_created(self, name: str, expected: str) -> None:
        values = {"migration.serviceAccount.create": False, "migration.serviceAccount.name": name}
        assert render_chart(values=values, show_only=SA) == []
        assert pod_spec(job(values))["serviceAccountName"] == expected
