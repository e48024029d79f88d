"""langgraph.json from a ConfigMap: templates/langgraph-json-configmap.yaml and where the pods see it."""

from __future__ import annotations

import json
from typing import Any

from tests.chart.conftest import FULLNAME, by_kind, container, env_of, one, pod_spec, render_chart, render_error

PROJECT = {
    "dependencies": ["."],
    "graphs": {"agent": "my_project.agent:graph", "planner": {"path": "/app/planner.py:make", "description": "x"}},
    "env": {"MODEL": "local"},
    "http": {"app": "my_project.routes:app", "cors": {"allow_origins": ["https://ui.example"],
                                                      "expose_headers": ["Content-Location"]}},
    "store": {"index": {"dims": 64, "embed": "my_project.embed:embed", "fields": ["text"]},
              "ttl": {"default_ttl": 60, "sweep_interval_minutes": 10}},
    "checkpointer": {"ttl": {"strategy": "delete", "default_ttl": 43200}},
}


def rendered(values: dict[str, Any]) -> dict[str, Any]:
    # One template per render: --show-only fails as a whole when any one of them renders nothing.
    def show(template: str) -> list[dict[str, Any]]:
        return render_chart(values=values, show_only=[f"templates/{template}"])

    return {
        "files": by_kind(show("langgraph-json-configmap.yaml"), "ConfigMap"),
        "settings": one(show("configmap.yaml"), "ConfigMap")["data"],
        "deployment": one(show("deployment.yaml"), "Deployment"),
        "job": one(show("migration-job.yaml"), "Job"),
    }


def mounts(c: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}


def volumes(doc: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v for v in pod_spec(doc).get("volumes", [])}


class TestLanggraphJsonConfigMap:
    def test_should_render_nothing_by_default(self) -> None:
        out = rendered({})
        assert out["files"] == []
        assert "LANGGRAPH_CONFIG" not in out["settings"] and "GRAPHS" in out["settings"]
        assert "langgraph-json" not in volumes(out["deployment"])
        assert "LANGGRAPH_STORE" not in env_of(container(out["job"], "migrate"))

    def test_should_mount_the_content_into_the_server_pods(self) -> None:
        out = rendered({"langgraphJson.content": PROJECT})
        (cm,) = out["files"]
        assert cm["metadata"]["name"] == f"{FULLNAME}-langgraph-json"
        assert json.loads(cm["data"]["langgraph.json"]) == PROJECT
        # GRAPHS would win over the file's graphs, so it is not rendered beside it.
        assert out["settings"]["LANGGRAPH_CONFIG"] == "/etc/langgraph/langgraph.json"
        assert "GRAPHS" not in out["settings"]
        assert volumes(out["deployment"])["langgraph-json"]["configMap"]["name"] == cm["metadata"]["name"]
        server = container(out["deployment"], "server")
        assert mounts(server)["langgraph-json"] == "/etc/langgraph"
        assert next(m for m in server["volumeMounts"] if m["name"] == "langgraph-json")["readOnly"] is True
        # Without hooks the pods wait for the schema; their check reads the same file (store.index).
        plain = rendered({"langgraphJson.content": PROJECT, "migration.useHelmHooks": False})["deployment"]
        wait = container(plain, "wait-for-schema", init=True)
        assert env_of(wait)["LANGGRAPH_CONFIG"] == "/etc/langgraph/langgraph.json"
        assert mounts(wait)["langgraph-json"] == "/etc/langgraph"
        annotations = out["deployment"]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["checksum/langgraph-json"]

    def test_should_give_the_migration_hook_the_store_section_without_a_configmap(self) -> None:
        out = rendered({"langgraphJson.content": PROJECT})
        migrate = container(out["job"], "migrate")
        assert json.loads(env_of(migrate)["LANGGRAPH_STORE"]) == PROJECT["store"]
        # The hook runs before the chart's ConfigMap exists: it must not mount it.
        assert "langgraph-json" not in volumes(out["job"])
        no_store = rendered({"langgraphJson.content": {"graphs": PROJECT["graphs"]}})
        assert "LANGGRAPH_STORE" not in env_of(container(no_store["job"], "migrate"))

    def test_should_roll_the_pods_when_the_file_changes(self) -> None:
        def checksum(content: dict[str, Any]) -> str:
            doc = rendered({"langgraphJson.content": content})["deployment"]
            return str(doc["spec"]["template"]["metadata"]["annotations"]["checksum/langgraph-json"])

        assert checksum(PROJECT) != checksum({**PROJECT, "env": {"MODEL": "other"}})

    def test_should_use_an_existing_configmap_everywhere(self) -> None:
        out = rendered({"langgraphJson.existingConfigMap": "my-project", "langgraphJson.mountPath": "/srv/project",
                        "langgraphJson.content": PROJECT})
        assert out["files"] == []
        assert out["settings"]["LANGGRAPH_CONFIG"] == "/srv/project/langgraph.json"
        assert volumes(out["deployment"])["langgraph-json"]["configMap"]["name"] == "my-project"
        migrate = container(out["job"], "migrate")
        assert env_of(migrate)["LANGGRAPH_CONFIG"] == "/srv/project/langgraph.json"
        assert "LANGGRAPH_STORE" not in env_of(migrate)
        assert mounts(migrate)["langgraph-json"] == "/srv/project"
        assert volumes(out["job"])["langgraph-json"]["configMap"]["name"] == "my-project"

    def test_should_set_jobs_per_worker(self) -> None:
        assert rendered({"config.jobsPerWorker": 3})["settings"]["N_JOBS_PER_WORKER"] == "3"

    def test_should_reject_invalid_files(self) -> None:
        assert "graphs" in render_error({"langgraphJson.content": {"graphs": {"a": "no-attribute"}}})
        assert "dims" in render_error({"langgraphJson.content": {"store": {"index": {"dims": 0, "embed": "m:f"}}}})
        assert "allow_origin" in render_error({"langgraphJson.content": {"http": {"cors": {"allow_origin": []}}}})
        assert "mountPath" in render_error({"langgraphJson.mountPath": "relative/dir"})
        assert "jobsPerWorker" in render_error({"config.jobsPerWorker": 0})
