"""A server pod deleted while a run is in flight on it (the slow graph from k8s-tests/graphs).

Graceful deletion (what a rollout, a drain or `kubectl delete pod` does): the pod stops taking
requests and the run in flight finishes and answers. Forced deletion (a node lost): the run's
client loses its connection, and the thread is not stuck: once the dead pod's lease expires
(RUN_LEASE_SECONDS=10 in these releases) the other pod runs the thread's next run.
"""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from conftest import Release, port_forward

pytestmark = pytest.mark.k8s


def slow_run(url: str, thread_id: str, delay: float, text: str) -> httpx.Response:
    return httpx.post(f"{url}/threads/{thread_id}/runs/wait", timeout=120, json={
        "assistant_id": "slow", "input": {"messages": [{"role": "user", "content": text}], "delay": delay}})


def wait_busy(url: str, thread_id: str, timeout: float = 60) -> None:
    """Until the thread's run is in flight (the thread reads busy): no fixed sleep before the deletion."""
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/threads/{thread_id}", timeout=30).json()["status"]
        if status == "busy":
            return
        time.sleep(0.2)
    raise AssertionError(f"thread {thread_id} never became busy within {timeout}s (last status {status})")


def new_thread(url: str) -> str:
    response = httpx.post(f"{url}/threads", json={"metadata": {"source": "k8s-tests"}}, timeout=30)
    response.raise_for_status()
    thread_id: str = response.json()["thread_id"]
    return thread_id


def test_graceful_deletion_should_let_the_run_in_flight_finish(release: Release) -> None:
    victim = release.server_pods()[0]["metadata"]["name"]
    with port_forward(release.cluster, release.namespace, f"pod/{victim}") as url, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        thread_id = new_thread(url)
        running = pool.submit(slow_run, url, thread_id, 8, "finish me")
        wait_busy(url, thread_id)
        release.cluster.kubectl("delete", "pod", "-n", release.namespace, victim, "--wait=false")
        response = running.result(timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["messages"][-1]["content"] == "done: finish me"
    release.cluster.wait_ready(release.namespace, release.fullname, 2)


def test_forced_deletion_should_not_leave_the_thread_stuck(release: Release) -> None:
    victim, survivor = (p["metadata"]["name"] for p in release.server_pods()[:2])
    with port_forward(release.cluster, release.namespace, f"pod/{survivor}") as survivor_url, \
            port_forward(release.cluster, release.namespace, f"pod/{victim}") as victim_url, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        thread_id = new_thread(survivor_url)
        lost = pool.submit(slow_run, victim_url, thread_id, 60, "lost")
        wait_busy(survivor_url, thread_id)
        release.cluster.kubectl("delete", "pod", "-n", release.namespace, victim, "--grace-period=0", "--force")
        try:
            outcome = lost.result(timeout=180)
            assert outcome.status_code != 200, "the run on the killed pod answered: it was not in flight"
        except httpx.HTTPError:
            pass  # the connection died with the pod, as it should
        # Not stuck: the next run is accepted and answered within slow_run's deadline (120 s,
        # far beyond RUN_LEASE_SECONDS=10), however long the dead pod's lease takes to expire.
        response = slow_run(survivor_url, thread_id, 0.1, "next")
    assert response.status_code == 200, response.text
    assert response.json()["messages"][-1]["content"] == "done: next"
    release.cluster.wait_ready(release.namespace, release.fullname, 2)
