"""Real-cluster tests: `make k8s-test` (`pytest k8s-tests -m k8s`).

Which cluster (the first that applies):
  * $KUBECONFIG set: that cluster, whatever it is (this machine's, kind, a real one);
  * K8S_CLUSTER=kind: the kind cluster $KIND_CLUSTER (default "langgraph-pg"), reused when it
    exists, otherwise created and deleted at the end (K8S_KEEP_CLUSTER=1 keeps it); its
    kubeconfig goes to a temporary file, so the user's current context is never used or changed;
  * otherwise the single-node cluster of `make cluster` (k8s/cluster/cluster.sh).
Without a reachable cluster (or, for kind, without docker, kind and kubectl) every test is skipped
with the reason; with K8S_REQUIRE=1 (CI) the run fails instead. kubectl is $KUBECTL, the one
k8s/build/build.sh built, or kubectl on PATH; helm comes from $HELM, .tools/bin/helm, PATH, or
scripts/install-helm.sh. The root `pytest` never
collects this directory (testpaths = ["tests"]).

What the session sets up, once:
  * the image under test (K8S_TEST_IMAGE, default langgraph-pg:k8s-test; K8S_SKIP_BUILD=1 uses one
    already there): on `make cluster`'s cluster built FROM a debootstrap base and imported into
    the node's containerd (`k8s/cluster/cluster.sh images`); on kind `docker build` + `kind load`;
    on another cluster it must already be pullable (K8S_IMAGE_PULL_POLICY, default IfNotPresent);
  * PostgreSQL from k8s-tests/manifests/postgres.yaml, recreated empty (namespace langgraph-db),
    with Debian's PostgreSQL image on `make cluster`'s cluster (K8S_POSTGRES_IMAGE overrides);
  * release "lgpg" in namespace "lgpg-a": `helm install --wait` of charts/langgraph-pg with
    ci/dev-values.yaml, the slow test graph (k8s-tests/graphs, from a ConfigMap) and a short
    run lease.

On a failure, the test's report gets `kubectl describe` of the pods, the events and every pod's
logs of the namespaces involved; they are also written to $K8S_ARTIFACTS_DIR (default
/tmp/k8s-test-artifacts) for CI to upload.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import functools
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
CHART_DIR = REPO_ROOT / "charts" / "langgraph-pg"
DEV_VALUES = CHART_DIR / "ci" / "dev-values.yaml"
POSTGRES_MANIFEST = HERE / "manifests" / "postgres.yaml"
DEFAULT_CLUSTER = "langgraph-pg"
DB_NAMESPACE = "langgraph-db"
RELEASE_NAMESPACES = ("lgpg-a", "lgpg-b", "lgpg-c", "lgpg-fail", "lgpg-plain", "lgpg-mon", "lgpg-helm3",
                      "lgpg-ct")
ARTIFACTS = Path(os.environ.get("K8S_ARTIFACTS_DIR", "/tmp/k8s-test-artifacts"))  # noqa: S108
APP_ROLE, OWNER_ROLE = "langgraph_app", "langgraph_owner"
POD_TMP = "/tmp"  # noqa: S108 - an emptyDir of the loader Pod, not this machine's /tmp
HELM_TIMEOUT = "15m"
LOCAL_STATE = Path(os.environ.get("K8S_LOCAL_STATE", "/var/lib/langgraph-pg/cluster"))
LOCAL_KUBECONFIG = LOCAL_STATE / "admin.kubeconfig"
CLUSTER_SCRIPT = REPO_ROOT / "k8s" / "cluster" / "cluster.sh"
BUILD_CACHE = Path(os.environ.get("K8S_CACHE", "/var/cache/langgraph-pg/k8s"))
LOCAL_POSTGRES_IMAGE = "langgraph-pg-postgres:15"


def target() -> str:
    """"kubeconfig" ($KUBECONFIG is set), "kind" (K8S_CLUSTER=kind) or "local" (`make cluster`)."""
    if os.environ.get("KUBECONFIG"):
        return "kubeconfig"
    mode = os.environ.get("K8S_CLUSTER", "local")
    if mode not in ("local", "kind"):
        raise pytest.UsageError(f"K8S_CLUSTER must be local or kind, not {mode!r}")
    return mode


def kubectl_binary() -> str | None:
    """$KUBECTL, else the kubectl k8s/build/build.sh built (newest version), else kubectl on PATH."""
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    built = sorted(BUILD_CACHE.glob("v*/bin/kubectl"), key=lambda p: [int(x) for x in re.findall(r"\d+", p.parts[-3])])
    if built:
        return str(built[-1])
    return shutil.which("kubectl")


def kubeconfig_path() -> Path:
    return Path(os.environ["KUBECONFIG"]) if target() == "kubeconfig" else LOCAL_KUBECONFIG


def missing_requirements() -> str | None:
    """Why the k8s tests cannot run here (every missing piece), or None."""
    mode = target()
    if mode == "kind":
        return missing_kind_requirements()
    kubectl = kubectl_binary()
    if kubectl is None:
        return "no kubectl ($KUBECTL, k8s/build/build.sh's, or on PATH)"
    config = kubeconfig_path()
    if not config.is_file():
        if mode == "local":
            return f"the local cluster is not running (no {config}): run `make cluster`"
        return f"KUBECONFIG={config} does not exist"
    try:
        probe = subprocess.run([kubectl, "--kubeconfig", str(config), "--request-timeout=20s", "get", "--raw",
                                "/readyz"], capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return f"the cluster of {config} did not answer within 60 s"
    if probe.returncode != 0:
        detail = (probe.stderr.strip().splitlines() or [""])[-1]
        return f"the cluster of {config} is not ready: {detail}"
    return None


def missing_kind_requirements() -> str | None:
    missing = [f"`{tool}` is not on PATH" for tool in ("docker", "kind", "kubectl") if shutil.which(tool) is None]
    if shutil.which("docker") is not None:
        try:
            info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                  text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            missing.append("`docker info` did not answer within 60 s")
        else:
            if info.returncode != 0:
                lines = [line.strip() for line in (info.stderr + info.stdout).splitlines() if line.strip()]
                detail = next((line for line in lines if "daemon" in line.lower()), lines[-1] if lines else "")
                missing.append(f"`docker info` failed (no Docker engine): {detail}")
    return "; ".join(missing) or None


@functools.cache
def _reason() -> str | None:
    return missing_requirements()


def pytest_report_header(config: pytest.Config) -> str:
    """Which cluster, and how the session treats it (scripts/k8s-test-kubeconfig.sh checks this line)."""
    mode = target()
    if mode == "kind":
        return f"k8s cluster: kind {os.environ.get('KIND_CLUSTER', DEFAULT_CLUSTER)}"
    path = kubeconfig_path()
    if path.resolve() == LOCAL_KUBECONFIG.resolve():
        return f"k8s cluster: make cluster's, kubeconfig {path} (images built here and imported into its node)"
    image = os.environ.get("K8S_TEST_IMAGE", "langgraph-pg:k8s-test")
    policy = os.environ.get("K8S_IMAGE_PULL_POLICY", "IfNotPresent")
    return f"k8s cluster: an existing cluster, kubeconfig {path} (image {image} must be pullable there, {policy})"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "own_database: deploys k8s-tests/manifests/postgres.yaml itself (namespace "
                            "langgraph-db, skaffold); runs before the session's PostgreSQL, which replaces it")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that deploy the manifest's PostgreSQL themselves go first: the session's PostgreSQL
    # (the `postgres` fixture) starts by deleting theirs, and they would replace the session's.
    items.sort(key=lambda item: item.get_closest_marker("own_database") is None)
    reason = _reason()
    if reason is None:
        return
    if os.environ.get("K8S_REQUIRE") == "1":  # CI: a cluster that is not there is a failure, not a skip
        raise pytest.UsageError(f"K8S_REQUIRE=1 and the k8s tests cannot run: {reason}")
    for item in items:
        if item.get_closest_marker("k8s") is not None:
            item.add_marker(pytest.mark.skip(reason=f"k8s tests need a cluster: {reason}"))


class CommandError(AssertionError):
    pass


def run(args: list[str], *, env: dict[str, str] | None = None, input: str | None = None,
        timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, env=env, input=input, timeout=timeout,
                            check=False)
    if check and result.returncode != 0:
        raise CommandError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-4000:]}\n"
                           f"{result.stderr[-4000:]}")
    return result


def helm_binary() -> str:
    for candidate in (os.environ.get("HELM"), str(REPO_ROOT / ".tools" / "bin" / "helm"), shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return run([str(REPO_ROOT / "scripts" / "install-helm.sh")]).stdout.strip().splitlines()[-1]


@dataclass
class Cluster:
    name: str
    kubeconfig: Path
    helm_path: str

    kubectl_path: str = "kubectl"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 600,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.kubectl_path, *args], env=self.env, input=input, timeout=timeout, check=check)

    def helm(self, *args: str, timeout: float = 1200, check: bool = True,
             helm_path: str | None = None) -> subprocess.CompletedProcess[str]:
        return run([helm_path or self.helm_path, *args], env=self.env, timeout=timeout, check=check)

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]]) -> None:
        items = obj if isinstance(obj, list) else [obj]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def psql(self, sql: str, database: str = "langgraph") -> list[list[str]]:
        """Rows of a query run as the superuser inside the PostgreSQL pod (CSV: values may span lines)."""
        out = self.kubectl("exec", "-n", DB_NAMESPACE, "deploy/postgresql", "--", "psql", "-U", "postgres",
                           "-d", database, "-X", "--csv", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql).stdout
        return parse_psql_csv(out)

    def postgres_log(self) -> str:
        return self.kubectl("logs", "-n", DB_NAMESPACE, "deploy/postgresql", "--tail=-1").stdout

    def events(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("events", "-n", namespace)["items"]
        return items

    def wait_ready(self, namespace: str, deployment: str, replicas: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            dep = self.get("deployment", "-n", namespace, deployment)
            status = dep.get("status", {})
            if (status.get("readyReplicas") == replicas and status.get("updatedReplicas") == replicas
                    and status.get("replicas") == replicas):
                return
            time.sleep(2)
        raise AssertionError(f"{namespace}/{deployment} not {replicas} ready replicas in {timeout}s: {status}")

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("pods", "-n", namespace, "-l", selector)["items"]
        return items

    def dump(self, namespaces: list[str]) -> str:
        """kubectl describe, events and logs of every pod, for a failure report."""
        parts = []
        for ns in namespaces:
            for args in (["describe", "pods", "-n", ns], ["get", "events", "-n", ns, "--sort-by=.lastTimestamp"],
                         ["get", "all,jobs", "-n", ns, "-o", "wide"]):
                result = self.kubectl(*args, check=False, timeout=120)
                parts.append(f"$ kubectl {' '.join(args)}\n{result.stdout}{result.stderr}")
            names = self.kubectl("get", "pods", "-n", ns, "-o", "name", check=False).stdout.split()
            for pod in names:
                for previous in ([], ["--previous"]):
                    args = ["logs", "-n", ns, pod, "--all-containers", "--prefix", "--tail=300", *previous]
                    result = self.kubectl(*args, check=False, timeout=120)
                    if result.returncode == 0 and result.stdout:
                        parts.append(f"$ kubectl {' '.join(args)}\n{result.stdout}")
        return "\n".join(parts)


def parse_psql_csv(out: str) -> list[list[str]]:
    """Rows of `psql --csv -t` output; a quoted value may hold newlines (a multi-line query text)."""
    return [row for row in csv.reader(io.StringIO(out)) if row]


_ACTIVE: dict[str, Cluster] = {}
# Figures the tests measure (install time, requests and failures under upgrade and rollback),
# printed as one line at the end of the run and written to $K8S_ARTIFACTS_DIR/figures.json.
FIGURES: dict[str, float | int | str] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.write_line("k8s-test figures: " + " ".join(f"{k}={v}" for k, v in sorted(FIGURES.items())))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "figures.json").write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    cluster = _ACTIVE.get("cluster")
    if report.failed and cluster is not None:
        text = cluster.dump([DB_NAMESPACE, *RELEASE_NAMESPACES])
        report.sections.append(("kubernetes state (describe, events, logs)", text))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', item.nodeid)}.{report.when}.txt").write_text(text)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    reason = _reason()
    if reason is not None:  # selected without -m k8s on a machine without a cluster
        pytest.skip(f"k8s tests need a cluster: {reason}")
    mode = target()
    created = False
    if mode == "kind":
        name = os.environ.get("KIND_CLUSTER", DEFAULT_CLUSTER)
        existing = run(["kind", "get", "clusters"]).stdout.split()
        created = name not in existing
        if created:
            run(["kind", "create", "cluster", "--name", name, "--wait", "180s"], timeout=900)
        kubeconfig = Path(tempfile.mkdtemp(prefix="k8s-tests-")) / "kubeconfig"
        kubeconfig.write_text(run(["kind", "get", "kubeconfig", "--name", name]).stdout)
        kubectl = shutil.which("kubectl") or "kubectl"
    else:
        name, kubeconfig = mode, kubeconfig_path()
        kubectl = kubectl_binary() or "kubectl"
    found = Cluster(name=name, kubeconfig=kubeconfig, helm_path=helm_binary(), kubectl_path=kubectl)
    _ACTIVE["cluster"] = found
    try:
        yield found
    finally:
        _ACTIVE.pop("cluster", None)
        if created and os.environ.get("K8S_KEEP_CLUSTER") != "1":
            run(["kind", "delete", "cluster", "--name", name], check=False, timeout=600)


@pytest.fixture(scope="session")
def image(cluster: Cluster) -> tuple[str, str]:
    """(repository, tag) of the image under test, present on every kind node."""
    ref = os.environ.get("K8S_TEST_IMAGE", "langgraph-pg:k8s-test")
    local = cluster.kubeconfig.resolve() == LOCAL_KUBECONFIG.resolve()
    if os.environ.get("K8S_SKIP_BUILD") != "1":
        if local:  # FROM a debootstrap base, imported into the node's containerd
            run([str(CLUSTER_SCRIPT), "images"], env={**os.environ, "K8S_TEST_IMAGE": ref}, timeout=3600)
        elif target() == "kind":
            run(["docker", "build", "--tag", ref, str(REPO_ROOT)], timeout=1800)
    if target() == "kind":
        run(["kind", "load", "docker-image", ref, "--name", cluster.name], timeout=900)
    repository, _, tag = ref.rpartition(":")
    return repository, tag


def pull_policy(cluster: Cluster) -> str:
    """Never where the tests put the image on the node themselves; else K8S_IMAGE_PULL_POLICY."""
    if target() == "kind" or cluster.kubeconfig.resolve() == LOCAL_KUBECONFIG.resolve():
        return "Never"
    return os.environ.get("K8S_IMAGE_PULL_POLICY", "IfNotPresent")


def postgres_objects(cluster: Cluster) -> list[dict[str, Any]]:
    """k8s-tests/manifests/postgres.yaml, with Debian's PostgreSQL image on `make cluster`'s cluster."""
    docs = [d for d in yaml.safe_load_all(POSTGRES_MANIFEST.read_text()) if d]
    image = os.environ.get("K8S_POSTGRES_IMAGE")
    if image is None and cluster.kubeconfig.resolve() == LOCAL_KUBECONFIG.resolve():
        image = LOCAL_POSTGRES_IMAGE
    if image is not None:
        for doc in docs:
            if doc["kind"] == "Deployment":
                container = doc["spec"]["template"]["spec"]["containers"][0]
                container["image"] = image
                container["imagePullPolicy"] = "Never" if image == LOCAL_POSTGRES_IMAGE else "IfNotPresent"
    return docs


@pytest.fixture(scope="session")
def postgres(cluster: Cluster, image: tuple[str, str]) -> Cluster:
    """An empty PostgreSQL from the manifest; leftovers of an earlier run on a reused cluster go first.

    After `image`: on `make cluster`'s cluster that also imports the PostgreSQL and pause images.
    """
    cluster.kubectl("delete", "namespace", DB_NAMESPACE, *RELEASE_NAMESPACES, "--ignore-not-found",
                    "--wait=true", "--timeout=600s", timeout=700)
    objects = postgres_objects(cluster)
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))
    cluster.kubectl("rollout", "status", "-n", DB_NAMESPACE, "deploy/postgresql", "--timeout=600s", timeout=700)
    deadline = time.monotonic() + 120
    while True:  # ready means listening on TCP, which the image does only after the init scripts
        try:
            if cluster.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'langgraph_app'") == [["1"]]:
                return cluster
        except CommandError:
            if time.monotonic() > deadline:
                raise
        time.sleep(2)


def create_database(cluster: Cluster, name: str) -> None:
    """A second database, set up like the manifest's (owner and app roles, default privileges)."""
    cluster.psql(f"CREATE DATABASE {name} OWNER {OWNER_ROLE}")
    cluster.psql(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}; "
                 f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public "
                 f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}; "
                 f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public "
                 f"GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}", database=name)


@dataclass
class Release:
    name: str
    namespace: str
    database: str
    cluster: Cluster

    @property
    def fullname(self) -> str:
        return f"{self.name}-langgraph-pg"

    @property
    def url(self) -> str:
        """The Service, as seen from inside the cluster."""
        return f"http://{self.fullname}.{self.namespace}:8000"

    def values_args(self, image: tuple[str, str], extra: dict[str, Any] | None = None) -> list[str]:
        base = yaml.safe_load(DEV_VALUES.read_text())["database"]
        values = {
            "image": {"repository": image[0], "tag": image[1],
                      "pullPolicy": pull_policy(self.cluster) if self.cluster is not None else "Never"},
            "database": {key: base[key].replace("/langgraph?", f"/{self.database}?") for key in ("url", "migrateUrl")},
            "config": {"graphs": {"support": "service.graphs.support:graph", "slow": "k8s_graphs:slow"}},
            "extraEnv": [{"name": "PYTHONPATH", "value": "/k8s-graphs"},
                         {"name": "RUN_LEASE_SECONDS", "value": "10"}],
            "extraVolumes": [{"name": "k8s-graphs", "configMap": {"name": "k8s-graphs"}}],
            "extraVolumeMounts": [{"name": "k8s-graphs", "mountPath": "/k8s-graphs", "readOnly": True}],
            # kind's nodes have no zone label; one node: do not insist on spreading.
            "topologySpread": {"enabled": False},
            **(extra or {}),
        }
        path = Path(tempfile.mkdtemp(prefix="values-")) / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        return ["--values", str(DEV_VALUES), "--values", str(path)]

    def install(self, image: tuple[str, str], extra: dict[str, Any] | None = None, check: bool = True,
                helm_path: str | None = None, timeout: str = HELM_TIMEOUT) -> subprocess.CompletedProcess[str]:
        self.cluster.kubectl("create", "namespace", self.namespace, check=False)
        self.cluster.kubectl("create", "configmap", "k8s-graphs", "-n", self.namespace,
                             f"--from-file={HERE / 'graphs' / 'k8s_graphs.py'}", check=False)
        return self.cluster.helm("install", self.name, str(CHART_DIR), "--namespace", self.namespace, "--wait",
                                 "--timeout", timeout, *self.values_args(image, extra), check=check,
                                 helm_path=helm_path)

    def upgrade(self, image: tuple[str, str], extra: dict[str, Any] | None = None,
                helm_path: str | None = None) -> None:
        self.cluster.helm("upgrade", self.name, str(CHART_DIR), "--namespace", self.namespace, "--wait",
                          "--timeout", HELM_TIMEOUT, *self.values_args(image, extra), helm_path=helm_path)

    def uninstall(self, helm_path: str | None = None) -> None:
        """helm uninstall (waiting for the resources to go), then the namespace."""
        self.cluster.helm("uninstall", self.name, "--namespace", self.namespace, "--wait", "--timeout", "5m",
                          check=False, helm_path=helm_path)
        self.cluster.kubectl("delete", "namespace", self.namespace, "--wait=false", "--ignore-not-found")

    def secrets_holding(self, text: str) -> list[str]:
        """Names of the Secrets in the release's namespace any of whose values contain `text`."""
        found = []
        for secret in self.cluster.get("secrets", "-n", self.namespace)["items"]:
            for value in (secret.get("data") or {}).values():
                if text in base64.b64decode(value).decode(errors="replace"):
                    found.append(secret["metadata"]["name"])
                    break
        return found

    def server_pods(self) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=server"
        return [p for p in self.cluster.pods(self.namespace, selector)
                if p["metadata"].get("deletionTimestamp") is None]

    def migration_events(self) -> dict[str, int]:
        """Reasons (with counts) of the events of the migration Job(s) named after this release."""
        counts: dict[str, int] = {}
        for event in self.cluster.events(self.namespace):
            involved = event["involvedObject"]
            if involved.get("kind") == "Job" and involved.get("name") == f"{self.fullname}-migrate":
                counts[event["reason"]] = counts.get(event["reason"], 0) + int(event.get("count") or 1)
        return counts


@pytest.fixture(scope="session")
def helm3(cluster: Cluster) -> str:
    """A helm 3 binary ($HELM3, .tools/bin/helm3, or scripts/install-helm.sh 3)."""
    for candidate in (os.environ.get("HELM3"), str(REPO_ROOT / ".tools" / "bin" / "helm3")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return run([str(REPO_ROOT / "scripts" / "install-helm.sh"), "3"]).stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def release(postgres: Cluster, image: tuple[str, str]) -> Release:
    """Release "lgpg" in lgpg-a, installed with --wait on the empty database "langgraph"."""
    rel = Release("lgpg", "lgpg-a", "langgraph", postgres)
    started = time.monotonic()
    rel.install(image)
    FIGURES["install_seconds"] = round(time.monotonic() - started, 1)
    versions = json.loads(postgres.kubectl("version", "-o", "json").stdout)
    FIGURES["server_version"] = versions["serverVersion"]["gitVersion"]
    FIGURES["helm_version"] = postgres.helm("version", "--template", "{{.Version}}").stdout.strip()
    return rel


@contextlib.contextmanager
def port_forward(cluster: Cluster, namespace: str, target: str, port: int = 8000) -> Iterator[str]:
    """`kubectl port-forward` to one pod or Service on a free local port; yields the base URL."""
    proc = subprocess.Popen([cluster.kubectl_path, "port-forward", "-n", namespace, target, f":{port}",
                             "--address", "127.0.0.1"], env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not match:
            proc.kill()
            raise AssertionError(f"port-forward to {target} failed: {line}{proc.stderr.read() if proc.stderr else ''}")
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


# DDL as PostgreSQL logs it with log_statement=ddl and the manifest's log_line_prefix.
DDL_LINE = re.compile(r"user=(?P<user>\S*) db=(?P<db>\S*) app=(?P<app>\S*) LOG:\s+"
                      r"(?:statement|execute [^:]*):\s+(?P<sql>.*)")


@dataclass
class Ddl:
    user: str
    database: str
    app: str
    sql: str


# The start of every log entry (log_line_prefix "%m [%p] "): a line without it continues the entry
# above it (PostgreSQL logs a multi-line statement as it was sent, its further lines unprefixed).
LOG_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[\d+\] ")


def parse_ddl_log(text: str, database: str) -> list[Ddl]:
    """DDL logged in one database, whole statements, less the superuser's set-up."""
    entries: list[str] = []
    for line in text.splitlines():
        if LOG_ENTRY.match(line) or not entries:
            entries.append(line)
        else:
            entries[-1] += "\n" + line
    found = []
    for entry in entries:
        match = DDL_LINE.search(entry.split("\n", 1)[0])
        if match and match["db"] == database and match["user"] != "postgres":
            sql = match["sql"] + ("\n" + entry.split("\n", 1)[1] if "\n" in entry else "")
            found.append(Ddl(match["user"], match["db"], match["app"], sql.strip()))
    return found


def ddl_statements(cluster: Cluster, database: str) -> list[Ddl]:
    """DDL logged in one database, less the superuser's set-up (the manifest's init script, create_database)."""
    return parse_ddl_log(cluster.postgres_log(), database)


class Loader:
    """k8s-tests/loader.py in a Pod of the image under test, sending conversations to a release's Service."""

    def __init__(self, release: Release, image: tuple[str, str], name: str) -> None:
        self.cluster, self.namespace, self.name = release.cluster, release.namespace, name
        self.cluster.kubectl("create", "configmap", "k8s-loader", "-n", self.namespace,
                             f"--from-file={HERE / 'loader.py'}", check=False)
        self.cluster.apply({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {"app": "k8s-loader"}},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "loader", "image": f"{image[0]}:{image[1]}",
                    "imagePullPolicy": pull_policy(self.cluster),
                    "command": ["python", "/loader/loader.py", "--url", release.url, "--stop-file", f"{POD_TMP}/stop"],
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "loader", "mountPath": "/loader"}, {"name": "tmp", "mountPath": POD_TMP}],
                }],
                "volumes": [{"name": "loader", "configMap": {"name": "k8s-loader"}},
                            {"name": "tmp", "emptyDir": {}}],
            },
        })

    def lines(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("logs", "-n", self.namespace, self.name, check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def wait_for(self, conversations: int, timeout: float = 300) -> int:
        """Wait until the loader has finished this many conversations; returns how many it has."""
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            progress = self.lines()
            done = int(progress[-1]["conversations"]) if progress else 0
            if done >= conversations:
                return done
            time.sleep(2)
        raise AssertionError(f"loader {self.name}: {done} of {conversations} conversations in {timeout}s")

    def stop(self, timeout: float = 300) -> dict[str, Any]:
        self.cluster.kubectl("exec", "-n", self.namespace, self.name, "--", "python", "-c",
                             f"open('{POD_TMP}/stop', 'w').close()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            phase = self.cluster.get("pod", "-n", self.namespace, self.name)["status"].get("phase")
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(2)
        summary = [line for line in self.lines() if line["event"] == "summary"]
        assert summary, f"loader {self.name} printed no summary (phase {phase})"
        self.cluster.kubectl("delete", "pod", "-n", self.namespace, self.name, "--wait=false", check=False)
        return summary[-1]
