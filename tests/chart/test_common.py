"""What every template shares: names, labels, the image, and the same extension points on every pod."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import (
    FULLNAME,
    container,
    env_of,
    one,
    pod_metadata,
    pod_spec,
    render_chart,
)

# Every values set that renders every template at least once.
EVERYTHING = {"autoscaling.enabled": True, "prune.enabled": True, "serviceMonitor.enabled": True,
              "prometheusRule.enabled": True, "dashboards.enabled": True, "apiKeys.enabled": True,
              "apiKeys.keys": ["k"]}

# (workload, template, kind, main container, {extension point: its values key for this workload})
JOB_WORKLOADS = [
    ("migration", "templates/migration-job.yaml", "Job", "migrate", {
        "podAnnotations": "migration.podAnnotations", "podLabels": "migration.podLabels",
        "extraEnv": "migration.extraEnv", "resources": "migration.resources",
        "nodeSelector": "migration.nodeSelector", "tolerations": "migration.tolerations",
        "affinity": "migration.affinity"}),
    ("prune", "templates/prune-cronjob.yaml", "CronJob", "prune", {
        "podAnnotations": "prune.podAnnotations", "podLabels": "prune.podLabels",
        "extraEnv": "prune.extraEnv", "resources": "prune.resources",
        "nodeSelector": "prune.nodeSelector", "tolerations": "prune.tolerations",
        "affinity": "prune.affinity"}),
]
ALL_PODS = {
    "server": ("templates/deployment.yaml", "server"),
    "migration": ("templates/migration-job.yaml", "migrate"),
    "prune": ("templates/prune-cronjob.yaml", "prune"),
    "smoke-test": ("templates/tests/test-smoke.yaml", "smoke"),
}


def workload(template: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    return one(render_chart(values={"prune.enabled": True, **(values or {})}, show_only=[template]))


def all_pods(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return {name: workload(template, values) for name, (template, _) in ALL_PODS.items()}


class TestNames:
    def test_should_name_resources_after_release_and_chart(self) -> None:
        names = {doc["metadata"]["name"] for doc in render_chart(values=EVERYTHING)}
        assert all(name.startswith(FULLNAME) for name in names), names

    def test_should_use_the_release_name_when_it_contains_the_chart_name(self) -> None:
        docs = render_chart(name="my-langgraph-pg", show_only=["templates/service.yaml"])
        assert one(docs)["metadata"]["name"] == "my-langgraph-pg"

    def test_should_take_a_name_override(self) -> None:
        doc = one(render_chart(values={"nameOverride": "agents"}, show_only=["templates/deployment.yaml"]))
        assert doc["metadata"]["name"] == "release-name-agents"
        assert doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "agents"

    def test_should_take_a_full_name_override(self) -> None:
        names = {doc["metadata"]["name"] for doc in render_chart(values={**EVERYTHING, "fullnameOverride": "agents"})}
        assert all(name.startswith("agents") for name in names), names
        assert "agents" in names

    def test_should_put_every_object_in_the_release_namespace(self) -> None:
        for doc in render_chart(values=EVERYTHING, namespace="agents"):
            assert doc["metadata"]["namespace"] == "agents", doc["kind"]


class TestLabels:
    def test_should_label_every_object(self) -> None:
        for doc in render_chart(values=EVERYTHING):
            labels = doc["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "langgraph-pg"
            assert labels["app.kubernetes.io/instance"] == "release-name"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["helm.sh/chart"] == "langgraph-pg-0.1.0"
            assert labels["app.kubernetes.io/version"] == "0.1.0"

    def test_should_add_common_labels_to_every_object_but_not_to_selectors(self) -> None:
        docs = render_chart(values={**EVERYTHING, "commonLabels": {"team": "agents"}})
        for doc in docs:
            assert doc["metadata"]["labels"]["team"] == "agents", doc["kind"]
        deployment = one(docs, "Deployment")
        assert "team" not in deployment["spec"]["selector"]["matchLabels"]

    def test_should_tell_components_apart(self) -> None:
        components = {name: pod_metadata(doc)["labels"]["app.kubernetes.io/component"]
                      for name, doc in all_pods().items()}
        assert components == {"server": "server", "migration": "migration", "prune": "prune",
                              "smoke-test": "smoke-test"}

    def test_should_select_only_server_pods(self) -> None:
        deployment = workload("templates/deployment.yaml")
        selector = deployment["spec"]["selector"]["matchLabels"]
        for name, doc in all_pods().items():
            selected = selector.items() <= pod_metadata(doc)["labels"].items()
            assert selected == (name == "server"), name


class TestImage:
    def test_should_default_the_tag_to_the_app_version(self) -> None:
        for name, (template, main) in ALL_PODS.items():
            assert container(workload(template), main)["image"] == "langgraph-pg:0.1.0", name

    def test_should_use_repository_tag_digest_and_pull_policy_everywhere(self) -> None:
        digest = "sha256:" + "ab" * 32
        values = {"image.repository": "registry.example.com/lg", "image.tag": "1.2.3", "image.digest": digest,
                  "image.pullPolicy": "Always", "migration.useHelmHooks": False}
        for name, (template, main) in ALL_PODS.items():
            doc = workload(template, values)
            containers = pod_spec(doc)["containers"] + pod_spec(doc).get("initContainers", [])
            for c in containers:
                assert c["image"] == f"registry.example.com/lg:1.2.3@{digest}", name
                assert c["imagePullPolicy"] == "Always", name
            assert container(doc, main)

    def test_should_label_the_version_with_the_tag(self) -> None:
        doc = workload("templates/deployment.yaml", {"image.tag": "1.2.3"})
        assert doc["metadata"]["labels"]["app.kubernetes.io/version"] == "1.2.3"

    def test_should_set_image_pull_secrets_on_every_pod(self) -> None:
        for name, doc in all_pods({"imagePullSecrets": [{"name": "regcred"}]}).items():
            assert pod_spec(doc)["imagePullSecrets"] == [{"name": "regcred"}], name
        for name, doc in all_pods().items():
            assert "imagePullSecrets" not in pod_spec(doc), name


class TestExtensionPoints:
    """The same extension points on every pod: top-level for the server (and shared ones for all),
    migration.* and prune.* for the jobs."""

    def test_should_apply_security_contexts_to_every_pod(self) -> None:
        values = {"podSecurityContext": {"runAsNonRoot": True, "runAsUser": 2000, "fsGroup": 2000,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                  "securityContext": {"runAsUser": 2000, "readOnlyRootFilesystem": True,
                                      "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                  "migration.useHelmHooks": False}
        for name, doc in all_pods(values).items():
            assert pod_spec(doc)["securityContext"]["runAsUser"] == 2000, name
            for c in pod_spec(doc)["containers"] + pod_spec(doc).get("initContainers", []):
                assert c["securityContext"]["runAsUser"] == 2000, (name, c["name"])

    def test_should_add_extra_env_to_every_container(self) -> None:
        extra = [{"name": "PGSSLMODE", "value": "verify-full"}]
        for name, doc in all_pods({"extraEnv": extra, "migration.useHelmHooks": False}).items():
            for c in pod_spec(doc)["containers"] + pod_spec(doc).get("initContainers", []):
                assert env_of(c)["PGSSLMODE"] == "verify-full", (name, c["name"])

    def test_should_add_extra_volumes_and_mounts_to_every_pod(self) -> None:
        values = {"extraVolumes": [{"name": "ca", "secret": {"secretName": "db-ca"}}],
                  "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readOnly": True}],
                  "migration.useHelmHooks": False}
        for name, doc in all_pods(values).items():
            assert {"name": "ca", "secret": {"secretName": "db-ca"}} in pod_spec(doc)["volumes"], name
            for c in pod_spec(doc)["containers"] + pod_spec(doc).get("initContainers", []):
                assert {"name": "ca", "mountPath": "/etc/ca", "readOnly": True} in c["volumeMounts"], name

    @pytest.mark.parametrize(("name", "template", "kind", "main", "keys"), JOB_WORKLOADS,
                             ids=[w[0] for w in JOB_WORKLOADS])
    def test_should_add_job_only_extra_env(self, name: str, template: str, kind: str, main: str,
                                           keys: dict[str, str]) -> None:
        values = {keys["extraEnv"]: [{"name": "ONLY_HERE", "value": "1"}]}
        assert env_of(container(workload(template, values), main))["ONLY_HERE"] == "1"
        assert "ONLY_HERE" not in env_of(container(workload("templates/deployment.yaml", values), "server"))

    def test_should_take_server_pod_annotations_labels_and_scheduling(self) -> None:
        values = {"podAnnotations": {"a.example.com/x": "1"}, "podLabels": {"tier": "backend"},
                  "nodeSelector": {"pool": "agents"},
                  "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "agents",
                                   "effect": "NoSchedule"}],
                  "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                      "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "Exists"}]}]}}}}
        doc = workload("templates/deployment.yaml", values)
        assert pod_metadata(doc)["annotations"]["a.example.com/x"] == "1"
        assert pod_metadata(doc)["labels"]["tier"] == "backend"
        assert pod_spec(doc)["nodeSelector"] == values["nodeSelector"]
        assert pod_spec(doc)["tolerations"] == values["tolerations"]
        assert pod_spec(doc)["affinity"] == values["affinity"]

    @pytest.mark.parametrize(("name", "template", "kind", "main", "keys"), JOB_WORKLOADS,
                             ids=[w[0] for w in JOB_WORKLOADS])
    def test_should_take_job_pod_annotations_labels_resources_and_scheduling(
        self, name: str, template: str, kind: str, main: str, keys: dict[str, str],
    ) -> None:
        resources = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "20m", "memory": "32Mi"}}
        toleration = [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}]
        affinity = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
        values = {keys["podAnnotations"]: {"a.example.com/job": name},
                  keys["podLabels"]: {"job-kind": name}, keys["resources"]: resources,
                  keys["nodeSelector"]: {"pool": "batch"}, keys["tolerations"]: toleration,
                  keys["affinity"]: affinity}
        doc = workload(template, values)
        assert doc["kind"] == kind
        assert pod_metadata(doc)["annotations"]["a.example.com/job"] == name
        assert pod_metadata(doc)["labels"]["job-kind"] == name
        assert container(doc, main)["resources"] == resources
        assert pod_spec(doc)["nodeSelector"] == {"pool": "batch"}
        assert pod_spec(doc)["tolerations"] == toleration
        assert pod_spec(doc)["affinity"] == affinity
        # The server keeps its own.
        server = workload("templates/deployment.yaml", values)
        assert "annotations" not in pod_metadata(server) or "a.example.com/job" not in pod_metadata(server)[
            "annotations"]
        assert "nodeSelector" not in pod_spec(server)

    @pytest.mark.parametrize("name", ["migration", "prune", "smoke-test"])
    def test_should_fall_back_to_the_top_level_node_selector_and_tolerations(self, name: str) -> None:
        toleration = [{"key": "dedicated", "operator": "Exists"}]
        affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
        doc = all_pods({"nodeSelector": {"pool": "agents"}, "tolerations": toleration, "affinity": affinity})[name]
        assert pod_spec(doc)["nodeSelector"] == {"pool": "agents"}
        assert pod_spec(doc)["tolerations"] == toleration
        # A server affinity (often anti-affinity against its own pods) never reaches the jobs.
        assert "affinity" not in pod_spec(doc)

    def test_should_render_no_scheduling_fields_by_default(self) -> None:
        for name, doc in all_pods().items():
            for field in ("nodeSelector", "tolerations", "affinity"):
                assert field not in pod_spec(doc), (name, field)
