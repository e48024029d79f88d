"""`make cluster`'s network: a pod reaches the node (API server) but nothing outside the pod network.

The outside address is the far end of the node's own veth, 10.250.0.2 in the network namespace
`lgpg-node` that k8s/cluster/cluster.sh made: a listener there answers the node itself (so the
probe can succeed), while the pod's connection is dropped on the way out (LGPG-FORWARD). Nothing
leaves the machine and no other address is probed. Only on `make cluster`'s cluster.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from conftest import LOCAL_KUBECONFIG, Cluster, pull_policy

pytestmark = pytest.mark.k8s

NETNS, OUTSIDE, NODE_IP = "lgpg-node", "10.250.0.2", "10.250.0.1"
PROBE = """
import json, socket, sys
def probe(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
print(json.dumps({"node": probe(sys.argv[1], 6443), "outside": probe(sys.argv[2], int(sys.argv[3]))}))
"""


@pytest.fixture
def outside_listener(cluster: Cluster) -> Iterator[int]:
    if cluster.kubeconfig.resolve() != LOCAL_KUBECONFIG.resolve():
        pytest.skip("the network checks are about make cluster's own network")
    port = 18080
    proc = subprocess.Popen(["ip", "netns", "exec", NETNS, "python3", "-c",
                             "import socket, sys\n"
                             "s = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
                             "while True: s.accept()[0].close()\n", OUTSIDE, str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:  # the node itself reaches it: the listener is up and the address routable
            try:
                socket.create_connection((OUTSIDE, port), timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the listener in the netns never answered the node"
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_pod_should_reach_the_node_but_nothing_outside(cluster: Cluster, image: tuple[str, str],
                                                       outside_listener: int) -> None:
    namespace, name = "default", "k8s-isolation-probe"
    cluster.kubectl("delete", "pod", "-n", namespace, name, "--ignore-not-found", "--wait=true")
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "probe", "image": f"{image[0]}:{image[1]}", "imagePullPolicy": pull_policy(cluster),
            "command": ["python", "-c", PROBE, NODE_IP, OUTSIDE, str(outside_listener)]}]},
    })
    try:
        deadline = time.monotonic() + 180
        phase = None
        while phase not in ("Succeeded", "Failed"):
            assert time.monotonic() < deadline, f"probe pod still {phase} after 180 s"
            time.sleep(1)
            phase = cluster.get("pod", "-n", namespace, name)["status"].get("phase")
        result = json.loads(cluster.kubectl("logs", "-n", namespace, name).stdout.strip().splitlines()[-1])
    finally:
        cluster.kubectl("delete", "pod", "-n", namespace, name, "--ignore-not-found", "--wait=false")
    assert result == {"node": "connected", "outside": "TimeoutError"}, result
