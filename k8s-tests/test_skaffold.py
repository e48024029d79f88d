"""`skaffold run -p local` on `make cluster`'s cluster, then `skaffold delete`.

The `local` profile of skaffold.yaml builds both images with the cluster's own dockerd, pulling
nothing: the project image FROM the debootstrap base, and the manifest's PostgreSQL as the artifact
"postgres" (k8s/image/postgres.Dockerfile, Debian's PostgreSQL that `make cluster` built); an
after-build hook copies each into the node's containerd (k8s/cluster/cluster.sh import-built).
skaffold is built from its Go module (scripts/install-skaffold.sh, cached by version; skipped with
the reason without Go) and runs offline: no update check, no usage metrics, helm 3 on PATH
(skaffold 2.16 runs `helm version --client`, which helm 4 dropped).

It deploys k8s-tests/manifests/postgres.yaml into langgraph-db, the namespace of the session's
PostgreSQL, so it is marked own_database and runs before that PostgreSQL is made (conftest).
Only on `make cluster`'s cluster: elsewhere the `kind` or `remote` profile is the one to use.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import DB_NAMESPACE, LOCAL_KUBECONFIG, REPO_ROOT, Cluster, run

pytestmark = [pytest.mark.k8s, pytest.mark.own_database]

SKAFFOLD_YAML = REPO_ROOT / "skaffold.yaml"
DOCKER_HOST = "unix:///run/langgraph-pg/docker.sock"  # k8s/cluster/cluster.sh's private dockerd


@functools.cache
def skaffold_binary() -> str:
    if os.environ.get("SKAFFOLD"):
        return os.environ["SKAFFOLD"]
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        pytest.skip("no Go toolchain to build skaffold from its module")
    return run([str(REPO_ROOT / "scripts" / "install-skaffold.sh")], timeout=1800).stdout.strip().splitlines()[-1]


def release_of_skaffold_yaml() -> dict[str, str]:
    main = next(d for d in yaml.safe_load_all(SKAFFOLD_YAML.read_text()) if d["metadata"]["name"] == "langgraph-pg")
    release: dict[str, str] = main["deploy"]["helm"]["releases"][0]
    return release


class Skaffold:
    def __init__(self, cluster: Cluster, helm3: str, home: Path) -> None:
        bin_dir = home / "bin"  # the helm and kubectl skaffold runs by name
        bin_dir.mkdir()
        (bin_dir / "helm").symlink_to(helm3)
        (bin_dir / "kubectl").symlink_to(shutil.which(cluster.kubectl_path) or cluster.kubectl_path)
        (home / ".skaffold").mkdir()  # $HOME/.skaffold/config, as `skaffold config set --global` writes it
        (home / ".skaffold" / "config").write_text("global:\n  update-check: false\n  collect-metrics: false\n"
                                                   "kubeContexts: []\n")
        self.env = {**cluster.env, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                    "HOME": str(home), "SKAFFOLD_UPDATE_CHECK": "false", "DOCKER_HOST": DOCKER_HOST}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([skaffold_binary(), *args, "--profile", "local"], cwd=REPO_ROOT, env=self.env,
                              capture_output=True, text=True, check=False, timeout=1800)


def wait_gone(cluster: Cluster, *args: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = cluster.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
        if result.returncode == 0 and not result.stdout.strip():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still there after {timeout}s: {result.stdout}{result.stderr}")
        time.sleep(2)


def test_skaffold_run_should_deploy_what_it_built_and_delete_it(cluster: Cluster, request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    if cluster.kubeconfig.resolve() != LOCAL_KUBECONFIG.resolve():
        pytest.skip("the `local` profile is for make cluster's cluster (kind: -p kind, others: -p remote)")
    request.getfixturevalue("image")  # on make cluster's cluster: the bases the profile builds FROM are there
    helm3: str = request.getfixturevalue("helm3")
    release = release_of_skaffold_yaml()
    namespace, name = release["namespace"], release["name"]
    # What an earlier run may have left: skaffold's release and PostgreSQL, or the session's.
    cluster.kubectl("delete", "namespace", namespace, DB_NAMESPACE, "--ignore-not-found", "--wait=true",
                    "--timeout=600s", timeout=700)
    skaffold = Skaffold(cluster, helm3, tmp_path)
    try:
        result = skaffold("run", "--cache-artifacts=false")
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:]
        # The tags skaffold deployed are the images it built, in the node's containerd: the
        # manifest's postgres:16.4-bookworm, which cannot be pulled here, is not what runs.
        tags = dict(re.findall(r"^ - (\S+) -> (\S+)$", output.split("Tags used in deployment:")[-1], re.M))
        assert set(tags) == {"langgraph-pg", "postgres"}, output[-6000:]
        server = cluster.get("deployment", "-n", namespace, name)
        database = cluster.get("deployment", "-n", DB_NAMESPACE, "postgresql")
        assert server["spec"]["template"]["spec"]["containers"][0]["image"] == tags["langgraph-pg"]
        assert database["spec"]["template"]["spec"]["containers"][0]["image"] == tags["postgres"]
        assert tags["postgres"] != "postgres:16.4-bookworm"
        assert server["status"].get("readyReplicas") == server["spec"]["replicas"] == 2, server["status"]
        # The release answers through its Service: helm test's Pod calls it by name (GET /ready,
        # then one conversation answered, paused, approved and resumed).
        tested = cluster.helm("test", name, "--namespace", namespace, "--timeout", "5m", helm_path=helm3)
        assert re.search(r"Phase:\s+Succeeded", tested.stdout), tested.stdout

        deleted = skaffold("delete")
        assert deleted.returncode == 0, (deleted.stdout + deleted.stderr)[-4000:]
        assert cluster.helm("list", "--namespace", namespace, "--short", helm_path=helm3).stdout.split() == []
        wait_gone(cluster, "namespace", DB_NAMESPACE)  # the manifest's Namespace, with its PostgreSQL
        wait_gone(cluster, "pods", "-n", namespace)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false")
