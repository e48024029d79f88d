"""helm upgrade and helm rollback under continuous traffic: no failed request, no DDL from pods.

The tests run in this order on the session's release (revision 1 after install).
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import FIGURES, Loader, Release, ddl_statements

pytestmark = pytest.mark.k8s

ANNOTATION = "k8s-tests/revision"


def server_template_annotations(release: Release) -> dict[str, str]:
    dep = release.cluster.get("deployment", "-n", release.namespace, release.fullname)
    annotations: dict[str, str] = dep["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations


def test_upgrade_under_traffic_should_fail_no_request(release: Release, image: tuple[str, str]) -> None:
    ddl_before = len(ddl_statements(release.cluster, release.database))
    pods_before = {p["metadata"]["uid"] for p in release.server_pods()}
    loader = Loader(release, image, "upgrade-traffic")
    done = loader.wait_for(conversations=3)
    # A pod-template change: every server pod is replaced while the loader keeps talking.
    started = time.monotonic()
    release.upgrade(image, extra={"podAnnotations": {ANNOTATION: "2"}})
    release.cluster.wait_ready(release.namespace, release.fullname, 2)
    FIGURES["upgrade_seconds"] = round(time.monotonic() - started, 1)
    loader.wait_for(conversations=done + 5)
    summary = loader.stop()
    FIGURES["upgrade_requests"], FIGURES["upgrade_failed"] = summary["requests"], summary["failed_requests"]
    assert summary["failed_requests"] == 0, summary["errors"]
    assert summary["conversations"] >= done + 5
    assert pods_before.isdisjoint({p["metadata"]["uid"] for p in release.server_pods()})
    assert server_template_annotations(release).get(ANNOTATION) == "2"
    # The pre-upgrade hook ran once more and found the schema current: no new DDL.
    events = release.migration_events()
    assert events.get("Completed") == 2 and events.get("SuccessfulCreate") == 2, events
    assert len(ddl_statements(release.cluster, release.database)) == ddl_before


def test_rollback_under_traffic_should_restore_revision_one(release: Release, image: tuple[str, str]) -> None:
    ddl_before = len(ddl_statements(release.cluster, release.database))
    events_before = release.migration_events()
    loader = Loader(release, image, "rollback-traffic")
    done = loader.wait_for(conversations=3)
    started = time.monotonic()
    release.cluster.helm("rollback", release.name, "1", "--namespace", release.namespace, "--wait",
                         "--timeout", "15m")
    release.cluster.wait_ready(release.namespace, release.fullname, 2)
    FIGURES["rollback_seconds"] = round(time.monotonic() - started, 1)
    loader.wait_for(conversations=done + 5)
    summary = loader.stop()
    FIGURES["rollback_requests"], FIGURES["rollback_failed"] = summary["requests"], summary["failed_requests"]
    assert summary["failed_requests"] == 0, summary["errors"]
    assert ANNOTATION not in server_template_annotations(release)
    history = release.cluster.helm("history", release.name, "--namespace", release.namespace, "-o", "json")
    revisions = json.loads(history.stdout)
    assert [r["revision"] for r in revisions][-1] == 3
    assert revisions[-1]["status"] == "deployed" and "Rollback to 1" in revisions[-1]["description"]
    # A rollback runs no migration (schema versions only grow; the old code accepts a newer schema).
    assert release.migration_events() == events_before
    assert len(ddl_statements(release.cluster, release.database)) == ddl_before
