"""skaffold.yaml, checked without skaffold or a cluster.

The documents are validated against the published JSON schema of their apiVersion, taken from the
skaffold module's own source (github.com/GoogleContainerTools/skaffold/v2, docs-v2/content/en/
schemas/v4beta11.json, fetched with `go mod download`; skipped with the reason without Go), and
against a hand-written, stricter subset of it (skaffold-v4beta11.subset.schema.json: every object
rejects unknown keys, apiVersion is pinned). Beyond the schemas: the
files it names exist, every profile's JSON patches apply and still validate, and the chart rendered
the way skaffold deploys it has the Service and Deployment the port-forwards name.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonpatch
import pytest
import yaml

from tests.chart.conftest import CHART_DIR, REPO_ROOT, render_chart, tool

SKAFFOLD = REPO_ROOT / "skaffold.yaml"
SCHEMA = Path(__file__).parent / "skaffold-v4beta11.subset.schema.json"
DEV_VALUES = CHART_DIR / "ci" / "dev-values.yaml"
POSTGRES = REPO_ROOT / "k8s-tests" / "manifests" / "postgres.yaml"


def configs() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(SKAFFOLD.read_text()) if doc]


def config(name: str) -> dict[str, Any]:
    return next(c for c in configs() if c["metadata"]["name"] == name)


SKAFFOLD_MODULE = "github.com/GoogleContainerTools/skaffold/v2@v2.16.1"


@functools.cache
def published_schema() -> Path:
    """docs-v2/content/en/schemas/v4beta11.json of the skaffold module (go mod download, cached)."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        pytest.skip("no Go toolchain to download the skaffold module's published schema")
    result = subprocess.run([go, "mod", "download", "-json", SKAFFOLD_MODULE], capture_output=True, text=True,
                            check=False, timeout=900, cwd=REPO_ROOT / "k8s" / "build")
    assert result.returncode == 0, result.stdout + result.stderr
    path = Path(json.loads(result.stdout)["Dir"]) / "docs-v2" / "content" / "en" / "schemas" / "v4beta11.json"
    assert path.is_file(), path
    return path


def schema_errors(docs: list[dict[str, Any]], schema: Path = SCHEMA) -> list[str]:
    """Validation errors of each document (jsonschema runs in the chart tools' venv)."""
    program = (
        "import json, sys, jsonschema\n"
        "schema, docs = json.load(open(sys.argv[1])), json.load(sys.stdin)\n"
        "jsonschema.Draft7Validator.check_schema(schema)\n"
        "v = jsonschema.Draft7Validator(schema)\n"
        "print(json.dumps([f'{i}:{\"/\".join(map(str, e.absolute_path))}: {e.message}'\n"
        "                  for i, d in enumerate(docs) for e in v.iter_errors(d)]))\n"
    )
    result = subprocess.run([tool("python"), "-c", program, str(schema)], input=json.dumps(docs),
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    errors: list[str] = json.loads(result.stdout)
    return errors


def with_profile(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """The config with a profile applied as skaffold does: its sections replace the config's, then its patches."""
    profile = next(p for p in cfg["profiles"] if p["name"] == name)
    base = {k: v for k, v in cfg.items() if k != "profiles"}
    base.update({k: v for k, v in profile.items() if k in ("build", "test", "render", "manifests", "deploy",
                                                            "portForward", "resourceSelector", "verify")})
    return jsonpatch.apply_patch(base, profile.get("patches", []))


class TestSchema:
    def test_should_validate_every_config(self) -> None:
        docs = configs()
        assert [d["metadata"]["name"] for d in docs] == ["postgresql", "langgraph-pg"]
        assert schema_errors(docs) == []

    @pytest.mark.parametrize("profile", ["kind", "remote", "local"])
    def test_should_validate_each_profile_applied(self, profile: str) -> None:
        assert schema_errors([with_profile(config("langgraph-pg"), profile)]) == []

    def test_should_validate_the_database_config_with_its_local_profile(self) -> None:
        assert schema_errors([with_profile(config("postgresql"), "local")]) == []

    def test_should_reject_a_misspelt_key_and_a_wrong_version(self) -> None:
        bad = copy.deepcopy(config("langgraph-pg"))
        release = bad["deploy"]["helm"]["releases"][0]
        release["chartpath"] = release.pop("chartPath")
        other = copy.deepcopy(config("postgresql"))
        other["apiVersion"] = "skaffold/v2beta29"
        errors = schema_errors([bad, other])
        assert any("chartpath" in e for e in errors), errors
        assert any(e.startswith("1:apiVersion") for e in errors), errors


class TestPublishedSchema:
    def test_should_validate_every_config_and_profile(self) -> None:
        docs = [*configs(), *(with_profile(config("langgraph-pg"), p) for p in ("kind", "remote", "local")),
                with_profile(config("postgresql"), "local")]
        assert json.loads(published_schema().read_text())["$schema"].startswith("http://json-schema.org/draft-07/")
        assert schema_errors(docs, published_schema()) == []

    def test_should_reject_a_misspelt_key(self) -> None:
        bad = copy.deepcopy(config("langgraph-pg"))
        bad["deploy"]["helm"]["releases"][0]["chartpath"] = bad["deploy"]["helm"]["releases"][0].pop("chartPath")
        assert schema_errors([bad], published_schema()) != []


SKAFFOLD_BINARY = Path(os.environ.get("SKAFFOLD", "/var/cache/langgraph-pg/tools/skaffold-v2.16.1/skaffold"))


def skaffold(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real skaffold (scripts/install-skaffold.sh builds it from its module), offline: no update
    check, no usage metrics (a private global config), helm 3 first on PATH (skaffold 2.16 runs
    `helm version --client`, a flag helm 4 no longer has)."""
    if not SKAFFOLD_BINARY.is_file():
        pytest.skip(f"no skaffold binary at {SKAFFOLD_BINARY}: scripts/install-skaffold.sh builds one")
    helm3 = subprocess.run([str(REPO_ROOT / "scripts" / "install-helm.sh"), "3"], capture_output=True, text=True,
                           check=True, timeout=600).stdout.strip().splitlines()[-1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "helm").symlink_to(helm3)
    (tmp_path / ".skaffold").mkdir()  # $HOME/.skaffold/config, as `skaffold config set --global` writes it
    (tmp_path / ".skaffold" / "config").write_text("global:\n  update-check: false\n  collect-metrics: false\n"
                                                   "kubeContexts: []\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(tmp_path),
           "SKAFFOLD_UPDATE_CHECK": "false"}
    return subprocess.run([str(SKAFFOLD_BINARY), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=600)


class TestSkaffoldBinary:
    def test_should_render_the_chart_and_the_database(self, tmp_path: Path) -> None:
        result = skaffold(tmp_path, "render", "--digest-source=tag", "--offline=true")
        assert result.returncode == 0, result.stderr[-3000:]
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert ("Deployment", "postgresql") in kinds and ("Deployment", "langgraph-pg") in kinds
        server = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "langgraph-pg")
        assert server["metadata"]["namespace"] == "langgraph-dev"
        assert server["spec"]["template"]["spec"]["containers"][0]["image"].startswith("langgraph-pg:")

    def test_should_refuse_a_misspelt_key(self, tmp_path: Path) -> None:
        bad = tmp_path / "skaffold.yaml"
        bad.write_text(SKAFFOLD.read_text().replace("chartPath:", "chartpath:"))
        result = skaffold(tmp_path, "diagnose", "--yaml-only", "--filename", str(bad))
        assert result.returncode != 0
        assert "chartpath" in result.stderr


class TestReferences:
    def test_should_name_files_that_exist(self) -> None:
        main, pg = config("langgraph-pg"), config("postgresql")
        artifact = main["build"]["artifacts"][0]
        assert (REPO_ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]).is_file()
        release = main["deploy"]["helm"]["releases"][0]
        assert (REPO_ROOT / release["chartPath"] / "Chart.yaml").is_file()
        for path in [*release["valuesFiles"], *pg["manifests"]["rawYaml"]]:
            assert (REPO_ROOT / path).is_file(), path

    def test_should_set_the_image_skaffold_built(self) -> None:
        main = config("langgraph-pg")
        image = main["build"]["artifacts"][0]["image"]
        key = image.replace("-", "_")  # skaffold's template names replace - with _
        release = main["deploy"]["helm"]["releases"][0]
        assert release["setValueTemplates"] == {"image.repository": f"{{{{.IMAGE_REPO_{key}}}}}",
                                                "image.tag": f"{{{{.IMAGE_TAG_{key}}}}}"}

    def test_should_forward_ports_of_objects_the_chart_renders(self) -> None:
        main = config("langgraph-pg")
        release = main["deploy"]["helm"]["releases"][0]
        docs = render_chart(name=release["name"], namespace=release["namespace"],
                            values_files=[REPO_ROOT / p for p in release["valuesFiles"]],
                            values={"image.repository": "langgraph-pg", "image.tag": "abc123"})
        by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        forwards = main["portForward"]
        assert {f["resourceType"] for f in forwards} == {"service", "deployment"}
        for forward in forwards:
            obj = by_kind[(forward["resourceType"].capitalize(), forward["resourceName"])]
            assert obj["metadata"]["namespace"] == forward["namespace"] == release["namespace"]
            if obj["kind"] == "Service":
                assert forward["port"] in [p["port"] for p in obj["spec"]["ports"]]
            else:
                container = obj["spec"]["template"]["spec"]["containers"][0]
                assert container["image"] == "langgraph-pg:abc123"
                assert forward["port"] in [p["containerPort"] for p in container["ports"]]
        assert len({f["localPort"] for f in forwards}) == len(forwards)

    def test_should_pin_the_kind_profile_to_the_kind_cluster_of_the_tests(self) -> None:
        applied = with_profile(config("langgraph-pg"), "kind")
        conftest = (REPO_ROOT / "k8s-tests" / "conftest.py").read_text()
        assert applied["deploy"]["kubeContext"] == "kind-langgraph-pg"
        assert 'DEFAULT_CLUSTER = "langgraph-pg"' in conftest

    def test_should_push_only_in_the_remote_profile(self) -> None:
        assert config("langgraph-pg")["build"]["local"]["push"] is False
        assert with_profile(config("langgraph-pg"), "kind")["build"]["local"]["push"] is False
        assert with_profile(config("langgraph-pg"), "local")["build"]["local"]["push"] is False
        assert with_profile(config("postgresql"), "local")["build"]["local"]["push"] is False
        assert with_profile(config("langgraph-pg"), "remote")["build"]["local"]["push"] is True

    def test_should_build_locally_and_import_into_the_cluster_in_the_local_profile(self) -> None:
        # `make cluster`'s cluster pulls nothing: both images are built from local bases and
        # copied into the node's containerd by an after-build hook; the deploys pin its context.
        main, pg = with_profile(config("langgraph-pg"), "local"), with_profile(config("postgresql"), "local")
        cluster_sh = (REPO_ROOT / "k8s" / "cluster" / "cluster.sh").read_text()
        assert "    import-built) shift; import_built" in cluster_sh
        build_images = (REPO_ROOT / "k8s" / "image" / "build-images.sh").read_text()
        for cfg in (main, pg):
            assert cfg["deploy"]["kubeContext"] == "lgpg"  # k8s/cluster/cluster.sh's kubeconfig context
            assert "contexts:\n  - name: lgpg\n" in cluster_sh
            artifact = cfg["build"]["artifacts"][0]
            assert artifact["hooks"]["after"] == [
                {"command": ["sh", "-c", 'k8s/cluster/cluster.sh import-built "$SKAFFOLD_IMAGE"']}]
            assert cfg["build"]["local"]["useBuildkit"] is False
        assert main["build"]["artifacts"][0]["docker"]["buildArgs"] == {"PYTHON_IMAGE": "langgraph-pg-base:bookworm"}
        assert "import \"$IMAGE_CACHE/bookworm-python\" langgraph-pg-base:bookworm" in build_images
        # The artifact "postgres" stands for the manifest's image (skaffold replaces it by name),
        # built FROM the image build-images.sh makes.
        artifact = pg["build"]["artifacts"][0]
        manifest = [d for d in yaml.safe_load_all(POSTGRES.read_text()) if d]
        deployment = next(d for d in manifest if d["kind"] == "Deployment")
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert artifact["image"] == image.split(":")[0]
        dockerfile = (REPO_ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).read_text()
        assert "ARG BASE=langgraph-pg-postgres:15\nFROM ${BASE}" in dockerfile
        assert "import \"$pg\" langgraph-pg-postgres:15" in build_images


class TestDevDatabase:
    """dev-values.yaml and the PostgreSQL manifest agree: host, roles, passwords, database."""

    def test_should_point_the_dev_values_at_the_manifest_postgresql(self) -> None:
        manifest = [d for d in yaml.safe_load_all(POSTGRES.read_text()) if d]
        service = next(d for d in manifest if d["kind"] == "Service")
        init_sql = next(d for d in manifest if d["kind"] == "ConfigMap")["data"]["10-roles.sql"]
        database = yaml.safe_load(DEV_VALUES.read_text())["database"]
        roles = {}
        for key in ("url", "migrateUrl"):
            url = urlsplit(database[key])
            assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}"
            assert url.port == service["spec"]["ports"][0]["port"]
            assert url.path == "/langgraph"
            assert f"CREATE ROLE {url.username} LOGIN PASSWORD '{url.password}';" in init_sql
            roles[key] = url.username
        # The server pods' role is not the database owner, so it cannot change the schema.
        assert "CREATE DATABASE langgraph OWNER langgraph_owner;" in init_sql
        assert roles == {"url": "langgraph_app", "migrateUrl": "langgraph_owner"}

    def test_should_log_ddl_and_load_pg_stat_statements(self) -> None:
        manifest = [d for d in yaml.safe_load_all(POSTGRES.read_text()) if d]
        deployment = next(d for d in manifest if d["kind"] == "Deployment")
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        settings = dict(a.split("=", 1) for a in args if a != "-c")
        assert settings["log_statement"] == "ddl"
        assert settings["shared_preload_libraries"] == "pg_stat_statements"
        assert "%u" in settings["log_line_prefix"] and "%a" in settings["log_line_prefix"]
