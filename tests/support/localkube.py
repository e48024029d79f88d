"""Run the chart's own rendered manifests as local processes, the way Kubernetes would.

No cluster runs on this machine, so this plays the parts the rollout test needs:

* ``render``: the real ``helm template`` of charts/langgraph-pg with the given values;
* ``run_job``: a Job's containers (init containers first) with their rendered command, args and
  env (``secretKeyRef``, ``configMapKeyRef``, ``envFrom`` resolved from the rendered Secrets and
  ConfigMaps), to completion;
* ``Pod``: the Deployment's container as a process on its own loopback port (a pod's IP), with
  its startup, readiness and liveness probes run at their rendered periods and thresholds, and
  termination as the kubelet does it: out of the endpoints at once, the preStop hook, SIGTERM,
  and SIGKILL when ``terminationGracePeriodSeconds`` runs out;
* ``Deployment``: replicas and a rolling update with the rendered ``maxSurge`` and
  ``maxUnavailable``; ``Service``: picks a ready endpoint for each new connection.
"""

from __future__ import annotations

import base64
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from tests.support.race import ROOT, python_env
from tests.support.services import free_port

CHART = ROOT / "charts" / "langgraph-pg"
RELEASE = "rel"
NAMESPACE = "langgraph"


@dataclass
class Manifests:
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for o in self.of_kind(kind):
            if o["metadata"]["name"] == name:
                return o
        raise KeyError(f"{kind}/{name} is not in the rendered chart")

    def secret(self, name: str) -> dict[str, str]:
        obj = self.get("Secret", name)
        data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        data.update(obj.get("stringData") or {})
        return data

    def configmap(self, name: str) -> dict[str, str]:
        return {k: str(v) for k, v in (self.get("ConfigMap", name).get("data") or {}).items()}

    def hook_jobs(self, event: str) -> list[dict[str, Any]]:
        """Jobs annotated with the Helm hook ``event``, in hook-weight order."""
        jobs = [j for j in self.of_kind("Job")
                if event in (j["metadata"].get("annotations") or {}).get("helm.sh/hook", "").split(",")]
        return sorted(jobs, key=lambda j: int(j["metadata"]["annotations"].get("helm.sh/hook-weight", "0")))

    def deployment(self) -> dict[str, Any]:
        (deployment,) = self.of_kind("Deployment")
        return deployment


def render(values: dict[str, Any], *, upgrade: bool = False) -> Manifests:
    from tests.chart.conftest import helm_binary

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(values, fh)
    argv = [helm_binary(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", fh.name]
    if upgrade:
        argv.append("--is-upgrade")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    os.unlink(fh.name)
    return Manifests([o for o in yaml.safe_load_all(out) if o])


def container_env(container: dict[str, Any], manifests: Manifests) -> dict[str, str]:
    """The container's environment as the kubelet would build it (envFrom first, then env)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(manifests.configmap(source["configMapRef"]["name"]))
        if "secretRef" in source:
            env.update(manifests.secret(source["secretRef"]["name"]))
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        ref = var.get("valueFrom") or {}
        if "secretKeyRef" in ref:
            env[var["name"]] = manifests.secret(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            env[var["name"]] = manifests.configmap(ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]]
        elif "fieldRef" in ref:
            env[var["name"]] = {"metadata.namespace": NAMESPACE}.get(ref["fieldRef"]["fieldPath"], "local")
    return env


def argv_of(container: dict[str, Any]) -> list[str]:
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    if not argv:
        raise ValueError(f"container {container['name']} relies on the image's CMD; the chart must set it")
    # The image's python is this interpreter here; /bin/sh stays /bin/sh.
    return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]


def run_job(job: dict[str, Any], manifests: Manifests, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a Job's pod once: its init containers, then its containers, each to completion."""
    spec = job["spec"]["template"]["spec"]
    result: subprocess.CompletedProcess[str] | None = None
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        result = subprocess.run(argv_of(container), env=python_env(**container_env(container, manifests)),
                                cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            return result
    assert result is not None
    return result


@dataclass
class Probe:
    path: str
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int = 1

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Probe:
        return cls(spec["httpGet"]["path"], float(spec.get("periodSeconds", 10)), float(spec.get("timeoutSeconds", 1)),
                   int(spec.get("failureThreshold", 3)), int(spec.get("successThreshold", 1)))


@dataclass
class Pod:
    """One replica of the Deployment's pod template, as a process on its own loopback port."""

    name: str
    template: dict[str, Any]
    manifests: Manifests
    port: int = field(default_factory=free_port)
    ready: bool = False
    terminating: bool = False
    terminating_since: float | None = None
    started: bool = False
    events: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def container(self) -> dict[str, Any]:
        return next(c for c in self.template["spec"]["containers"] if c["name"] == "server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Pod:
        spec = self.template["spec"]
        for init in spec.get("initContainers") or []:
            subprocess.run(argv_of(init), env=python_env(**container_env(init, self.manifests)), cwd=ROOT,
                           check=True, capture_output=True, timeout=120)
        env = container_env(self.container, self.manifests)
        env.update(PORT=str(self.port), HOST="127.0.0.1")  # each pod has its own address
        self.log_path = Path(tempfile.mkdtemp(prefix=f"{self.name}-")) / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in terminate()
        self.proc = subprocess.Popen(argv_of(self.container), env=python_env(**env), cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        threading.Thread(target=self._kubelet, daemon=True).start()
        return self

    def _get(self, probe: Probe) -> bool:
        try:
            return httpx.get(self.url + probe.path, timeout=probe.timeout).status_code < 400
        except httpx.HTTPError:
            return False

    def _kubelet(self) -> None:
        startup = Probe.of(self.container["startupProbe"])
        readiness = Probe.of(self.container["readinessProbe"])
        failures = 0
        while not self._stop.is_set():
            if self._get(startup):
                self.started = True
                break
            failures += 1
            if failures >= startup.failure_threshold:
                self.events.append("startup probe failed")
                return
            self._stop.wait(startup.period)
        successes = failures = 0
        while not self._stop.is_set():
            if self._get(readiness):
                successes, failures = successes + 1, 0
                if successes >= readiness.success_threshold and not self.ready:
                    self.ready = True
                    self.events.append("ready")
            else:
                successes, failures = 0, failures + 1
                if failures >= readiness.failure_threshold and self.ready:
                    self.ready = False
                    self.events.append("not ready")
            self._stop.wait(readiness.period)

    def wait_started(self, timeout: float = 60) -> None:
        """Until the startup probe has passed (``started``)."""
        deadline = time.monotonic() + timeout
        while not self.started:
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline or "startup probe failed" in self.events:
                raise AssertionError(f"{self.name} never started: {self.events}\n{self.logs()[-2000:]}")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready:
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never became ready: {self.events}\n{self.logs()[-2000:]}")
            time.sleep(0.05)

    def terminate(self) -> int | None:
        """As the kubelet: leave the endpoints, run preStop, SIGTERM, SIGKILL after the grace period."""
        self.terminating = True
        started = self.terminating_since = time.monotonic()
        grace = float(self.template["spec"].get("terminationGracePeriodSeconds", 30))
        pre_stop = self.container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        if pre_stop:
            subprocess.run(pre_stop, check=False, timeout=grace)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(max(0.1, grace - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            self.events.append("killed after the grace period")
            self.proc.kill()
            self.proc.wait()
        self._stop.set()
        self.ready = False
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if hasattr(self, "log_path") else ""


class Service:
    """Spreads new connections over the endpoints: pods that are ready and not terminating.

    Like kube-proxy, it learns of a terminating pod late: ``endpoint_lag`` seconds after the
    pod started terminating, it still sends new connections there. That gap is what the chart's
    preStop sleep exists for.
    """

    def __init__(self, endpoint_lag: float = 1.0) -> None:
        self.pods: list[Pod] = []
        self.endpoint_lag = endpoint_lag
        self._next = 0
        self._lock = threading.Lock()

    def _serving(self, pod: Pod, now: float) -> bool:
        if pod.terminating_since is not None:
            return now - pod.terminating_since < self.endpoint_lag
        return pod.ready

    def endpoint(self, wait: float = 10) -> str:
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                now = time.monotonic()
                ready = [p for p in self.pods if self._serving(p, now)]
                if ready:
                    self._next += 1
                    return ready[self._next % len(ready)].url
            if time.monotonic() > deadline:
                raise RuntimeError("no ready endpoints")
            time.sleep(0.02)


def _count(value: int | str, replicas: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        share = replicas * int(value[:-1]) / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(value)


class Deployment:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.pods: list[Pod] = []
        self._serial = 0

    def _new_pod(self, manifests: Manifests, revision: int) -> Pod:
        self._serial += 1
        deployment = manifests.deployment()
        pod = Pod(f"rev{revision}-pod{self._serial}", deployment["spec"]["template"], manifests)
        self.pods.append(pod)
        self.service.pods.append(pod)
        return pod.start()

    def create(self, manifests: Manifests, revision: int) -> None:
        replicas = int(manifests.deployment()["spec"].get("replicas", 1))
        pods = [self._new_pod(manifests, revision) for _ in range(replicas)]
        for pod in pods:
            pod.wait_ready()

    def rolling_update(self, manifests: Manifests, revision: int) -> list[int | None]:
        """Replace every current pod with the new template, as the rendered strategy allows."""
        spec = manifests.deployment()["spec"]
        replicas = int(spec.get("replicas", 1))
        strategy = spec["strategy"]["rollingUpdate"]
        surge = _count(strategy.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = _count(strategy.get("maxUnavailable", "25%"), replicas, round_up=False)
        assert surge + unavailable > 0
        old = [p for p in self.pods if not p.terminating]
        codes: list[int | None] = []
        while old:
            # Start as many new pods as the surge allows, wait until they are ready, then retire
            # as many old ones as were replaced (never going below replicas - maxUnavailable).
            batch = [self._new_pod(manifests, revision) for _ in range(min(max(surge, 1), len(old)))]
            for pod in batch:
                pod.wait_ready()
            retire, old = old[:len(batch) + unavailable], old[len(batch) + unavailable:]
            threads = [threading.Thread(target=lambda p=p: codes.append(p.terminate())) for p in retire]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return codes

    def stop(self) -> None:
        for pod in self.pods:
            if not pod.terminating and pod.proc is not None:
                pod.terminating = True
                pod.proc.kill()
                pod.proc.wait()
                pod._stop.set()
