from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.chart.conftest import (
    FULLNAME,
    container,
    env_of,
    one,
    pod_metadata,
    pod_spec,
    render_chart,
    render_error,
)

SHOW = ["templates/deployment.yaml"]


def deployment(values: dict | None = None) -> dict:
    return one(render_chart(values=values, show_only=SHOW), "Deployment")


class TestDeployment:
    def test_should_run_the_service_command_on_the_http_port(self) -> None:
        server = container(deployment(), "server")
        assert server["command"] == ["python", "-m", "service"]
        assert server["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
        assert server["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]

    def test_should_use_config_port_for_the_container_port(self) -> None:
        server = container(deployment({"config.port": 9000}), "server")
        assert server["ports"][0]["containerPort"] == 9000

    def test_should_read_database_url_from_the_secret(self) -> None:
        env = env_of(container(deployment(), "server"))
        assert env["DATABASE_URL"] == {"secretKeyRef": {"name": FULLNAME, "key": "database-url"}}
        assert "MIGRATE_DATABASE_URL" not in env  # the pods never get the migration role

    def test_should_read_database_url_from_an_existing_secret(self) -> None:
        env = env_of(container(deployment({"database.existingSecret": "db"}), "server"))
        assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "db", "key": "database-url"}}

    def test_should_probe_startup_readiness_and_liveness(self) -> None:
        server = container(deployment(), "server")
        assert server["startupProbe"]["httpGet"] == {"path": "/ok", "port": "http"}
        assert server["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
        assert server["livenessProbe"]["httpGet"] == {"path": "/ok", "port": "http"}

    def test_should_take_probe_timings_from_values(self) -> None:
        server = container(deployment({
            "probes.startup.periodSeconds": 3, "probes.startup.timeoutSeconds": 4,
            "probes.startup.failureThreshold": 50,
            "probes.readiness.periodSeconds": 7, "probes.readiness.timeoutSeconds": 2,
            "probes.readiness.failureThreshold": 4, "probes.readiness.successThreshold": 2,
            "probes.liveness.periodSeconds": 20, "probes.liveness.timeoutSeconds": 5,
            "probes.liveness.failureThreshold": 3,
        }), "server")
        assert {k: server["startupProbe"][k] for k in ("periodSeconds", "timeoutSeconds", "failureThreshold")} == \
            {"periodSeconds": 3, "timeoutSeconds": 4, "failureThreshold": 50}
        assert {k: server["readinessProbe"][k] for k in
                ("periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold")} == \
            {"periodSeconds": 7, "timeoutSeconds": 2, "failureThreshold": 4, "successThreshold": 2}
        assert {k: server["livenessProbe"][k] for k in ("periodSeconds", "timeoutSeconds", "failureThreshold")} == \
            {"periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 3}

    def test_should_roll_out_without_losing_capacity(self) -> None:
        strategy = deployment({"rollingUpdate.maxSurge": 2})["spec"]["strategy"]
        assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 2}}
        assert deployment()["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == "25%"

    def test_should_set_replicas_and_revision_history(self) -> None:
        spec = deployment({"replicaCount": 5, "revisionHistoryLimit": 2})["spec"]
        assert spec["replicas"] == 5
        assert spec["revisionHistoryLimit"] == 2

    def test_should_omit_replicas_when_autoscaling(self) -> None:
        assert "replicas" not in deployment({"autoscaling.enabled": True, "replicaCount": 5})["spec"]

    def test_should_sleep_in_pre_stop_and_allow_for_the_drain(self) -> None:
        doc = deployment()
        server = container(doc, "server")
        assert server["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
        assert pod_spec(doc)["terminationGracePeriodSeconds"] == 5 + 30 + 15

    def test_should_compute_the_grace_period_from_the_shutdown_values(self) -> None:
        doc = deployment({"shutdown.preStopSleepSeconds": 12, "shutdown.drainTimeoutSeconds": 100})
        assert container(doc, "server")["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "12"]
        assert pod_spec(doc)["terminationGracePeriodSeconds"] == 127

    def test_should_accept_a_grace_period_longer_than_sleep_plus_drain(self) -> None:
        doc = deployment({"shutdown.terminationGracePeriodSeconds": 36})
        assert pod_spec(doc)["terminationGracePeriodSeconds"] == 36

    @pytest.mark.parametrize("grace", [35, 10])
    def test_should_refuse_a_grace_period_not_longer_than_sleep_plus_drain(self, grace: int) -> None:
        error = render_error({"shutdown.terminationGracePeriodSeconds": grace}, show_only=SHOW)
        assert "must be greater than shutdown.preStopSleepSeconds + shutdown.drainTimeoutSeconds (35)" in error

    def test_should_roll_pods_when_config_or_secret_change(self) -> None:
        base = pod_metadata(deployment())["annotations"]
        config = pod_metadata(deployment({"config.logLevel": "DEBUG"}))["annotations"]
        secret = pod_metadata(deployment({"database.url": "postgresql://other@db/x"}))["annotations"]
        assert len(base["checksum/config"]) == 64
        assert config["checksum/config"] != base["checksum/config"]
        assert config["checksum/secret"] == base["checksum/secret"]
        assert secret["checksum/secret"] != base["checksum/secret"]
        assert secret["checksum/config"] == base["checksum/config"]

    def test_should_roll_pods_when_api_keys_change(self) -> None:
        one_key = pod_metadata(deployment({"apiKeys.enabled": True, "apiKeys.keys": ["a"]}))["annotations"]
        two_keys = pod_metadata(deployment({"apiKeys.enabled": True, "apiKeys.keys": ["a", "b"]}))["annotations"]
        assert one_key["checksum/secret"] != two_keys["checksum/secret"]

    def test_should_have_no_secret_checksum_when_the_chart_creates_no_secret(self) -> None:
        annotations = pod_metadata(deployment({"database.existingSecret": "db"}))["annotations"]
        assert "checksum/secret" not in annotations
        assert "checksum/config" in annotations

    def test_should_run_restricted(self) -> None:
        doc = deployment()
        spec = pod_spec(doc)
        assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                           "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
        server = container(doc, "server")
        assert server["securityContext"]["readOnlyRootFilesystem"] is True
        assert server["securityContext"]["allowPrivilegeEscalation"] is False
        assert server["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert server["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False

    def test_should_mount_an_empty_dir_at_tmp(self) -> None:
        doc = deployment()
        assert {"name": "tmp", "mountPath": "/tmp"} in container(doc, "server")["volumeMounts"]  # noqa: S108
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "128Mi"}} in pod_spec(doc)["volumes"]

    def test_should_size_the_tmp_volume_and_choose_its_medium(self) -> None:
        volumes = pod_spec(deployment({"tmpVolume.sizeLimit": "1Gi", "tmpVolume.medium": "Memory"}))["volumes"]
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi", "medium": "Memory"}} in volumes

    def test_should_set_resources(self) -> None:
        assert container(deployment(), "server")["resources"] == {
            "requests": {"cpu": "250m", "memory": "384Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
        resources = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "4", "memory": "2Gi"}}
        assert container(deployment({"resources": resources}), "server")["resources"] == resources

    def test_should_spread_pods_over_zones_and_nodes(self) -> None:
        constraints = pod_spec(deployment())["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in constraints] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        for constraint in constraints:
            assert constraint["maxSkew"] == 1
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
            assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
            assert constraint["matchLabelKeys"] == ["pod-template-hash"]

    def test_should_take_spread_settings_from_values(self) -> None:
        constraints = pod_spec(deployment({
            "topologySpread.maxSkew": 2, "topologySpread.whenUnsatisfiable": "DoNotSchedule",
            "topologySpread.topologyKeys": ["example.com/rack"],
        }))["topologySpreadConstraints"]
        assert len(constraints) == 1
        assert constraints[0]["topologyKey"] == "example.com/rack"
        assert constraints[0]["maxSkew"] == 2
        assert constraints[0]["whenUnsatisfiable"] == "DoNotSchedule"

    def test_should_render_extra_spread_constraints_after_the_charts(self) -> None:
        extra = {"maxSkew": 3, "topologyKey": "example.com/rack", "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": {"matchLabels": {"a": "b"}}}
        constraints = pod_spec(deployment({"topologySpreadConstraints": [extra]}))["topologySpreadConstraints"]
        assert len(constraints) == 3
        assert constraints[-1] == extra

    def test_should_omit_spread_constraints_when_disabled(self) -> None:
        assert "topologySpreadConstraints" not in pod_spec(deployment({"topologySpread.enabled": False}))

    def test_should_set_the_priority_class(self) -> None:
        assert "priorityClassName" not in pod_spec(deployment())
        assert pod_spec(deployment({"priorityClassName": "critical"}))["priorityClassName"] == "critical"

    def test_should_pass_api_keys_from_the_secret_when_enabled(self) -> None:
        assert "API_KEYS" not in env_of(container(deployment(), "server"))
        env = env_of(container(deployment({"apiKeys.enabled": True, "apiKeys.keys": ["k"]}), "server"))
        assert env["API_KEYS"] == {"secretKeyRef": {"name": FULLNAME, "key": "api-keys"}}

    def test_should_pass_api_keys_from_an_existing_secret(self) -> None:
        env = env_of(container(deployment({"apiKeys.enabled": True, "apiKeys.existingSecret": "keys"}), "server"))
        assert env["API_KEYS"] == {"secretKeyRef": {"name": "keys", "key": "api-keys"}}

    def test_should_never_run_ddl(self) -> None:
        # No container of the server runs the migration itself; at most it checks the schema.
        doc = deployment({"migration.useHelmHooks": False})
        commands = [c.get("command", []) for c in pod_spec(doc)["containers"]]
        assert commands == [["python", "-m", "service"]]
        for init in pod_spec(doc).get("initContainers", []):
            script = " ".join(init["command"])
            assert "python -m migrate --check" in script
            assert "python -m migrate\n" not in script


class TestWaitForSchema:
    def test_should_not_wait_when_the_migration_is_a_hook(self) -> None:
        assert "initContainers" not in pod_spec(deployment())

    @pytest.mark.parametrize("values", [{"migration.useHelmHooks": False}, {"migration.enabled": False}],
                             ids=["plain-job", "no-migration"])
    def test_should_wait_for_the_schema_without_a_hook(self, values: dict) -> None:
        init = container(deployment(values), "wait-for-schema", init=True)
        script = init["command"][2]
        assert init["command"][:2] == ["/bin/sh", "-c"]
        assert "python -m migrate --check" in script
        assert "4|9)" in script  # unreachable and behind are retried; anything else fails the container
        assert "interval=5" in script
        env = env_of(init)
        assert env["DATABASE_URL"] == {"secretKeyRef": {"name": FULLNAME, "key": "database-url"}}
        assert env["MIGRATE_CONNECT_TIMEOUT"] == "30"
        assert "MIGRATE_DATABASE_URL" not in env
        assert init["securityContext"]["readOnlyRootFilesystem"] is True
        assert init["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}

    def test_should_take_the_interval_and_resources_from_values(self) -> None:
        resources = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
        init = container(deployment({"migration.useHelmHooks": False, "migration.waitForSchema.intervalSeconds": 11,
                                     "migration.waitForSchema.resources": resources}), "wait-for-schema", init=True)
        assert "interval=11" in init["command"][2]
        assert init["resources"] == resources

    def test_should_rely_on_readiness_when_waiting_is_disabled(self) -> None:
        doc = deployment({"migration.useHelmHooks": False, "migration.waitForSchema.enabled": False})
        assert "initContainers" not in pod_spec(doc)

    def test_should_tell_the_check_about_pgbouncer(self) -> None:
        init = container(deployment({"migration.useHelmHooks": False, "database.pgbouncer": True,
                                     "database.migrateUrl": "postgresql://o@db/x"}), "wait-for-schema", init=True)
        assert env_of(init)["PGBOUNCER"] == "true"

    @pytest.mark.parametrize(("exit_codes", "expected_rc", "expected_calls"), [
        ([9, 4, 0], 0, 3),  # behind, unreachable, then current: wait, then start the server
        ([9, 5], 5, 2),  # authentication failed: no point looping, fail the container
        ([0], 0, 1),
    ], ids=["waits-then-passes", "stops-on-fatal-error", "current-at-once"])
    def test_should_loop_on_behind_and_unreachable_only(
        self, tmp_path: Path, exit_codes: list[int], expected_rc: int, expected_calls: int,
    ) -> None:
        init = container(deployment({"migration.useHelmHooks": False, "migration.waitForSchema.intervalSeconds": 1}),
                         "wait-for-schema", init=True)
        # A stand-in for `python -m migrate --check` that exits with the next code of the list.
        codes = tmp_path / "codes"
        codes.write_text("\n".join(map(str, exit_codes)) + "\n")
        calls = tmp_path / "calls"
        stub = tmp_path / "python"
        stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\ncode=$(head -n1 {codes})\n'
                        f'sed -i 1d {codes}\nexit "$code"\n')
        stub.chmod(0o755)
        result = subprocess.run(init["command"], env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
                                capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == expected_rc
        assert calls.read_text().splitlines() == ["-m migrate --check"] * expected_calls
        retries = sum(1 for code in exit_codes[:expected_calls] if code in (4, 9))
        assert result.stderr.count("wait-for-schema: not ready") == retries
