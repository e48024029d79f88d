"""A first install whose migration cannot log in (wrong password), with helm 4 and with helm 3.

The migration Job makes one attempt (exit code 5, authentication, is in failFastExitCodes), its
status says why in the documented exit code, no server pod is ever created, and nothing that holds
the database password outlives the release: with helm 4 the hook Secret and ServiceAccount are gone
as soon as the install fails; helm 3 leaves them until `helm uninstall` (or `--atomic`), which
removes them. The failed Job itself stays for the operator to read; it holds no secret.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from conftest import DEV_VALUES, Cluster, Release

pytestmark = pytest.mark.k8s

WRONG_PASSWORD = "wrong-k8s-test-password"  # noqa: S105 - the point of the test
AUTHENTICATION_EXIT = 5  # migrate.runner.ExitCode.AUTHENTICATION, documented in docs/install.md


def wrong_password_values() -> dict[str, Any]:
    database = yaml.safe_load(DEV_VALUES.read_text())["database"]
    return {"database": {**database, "migrateUrl": database["migrateUrl"].replace("owner-dev-password",
                                                                                  WRONG_PASSWORD)}}


def leftovers(rel: Release) -> dict[str, list[str]]:
    """What of the release's migration prerequisites is still in its namespace."""
    accounts = [sa["metadata"]["name"] for sa in rel.cluster.get("serviceaccounts", "-n", rel.namespace)["items"]
                if sa["metadata"]["name"] == f"{rel.fullname}-migrate"]
    return {"secrets holding the password": rel.secrets_holding(WRONG_PASSWORD), "service accounts": accounts}


@pytest.mark.parametrize("helm_major", ["4", "3"])
def test_wrong_password_should_fail_once_and_leave_no_secret(postgres: Cluster, image: tuple[str, str],
                                                             helm3: str, helm_major: str) -> None:
    helm_path = helm3 if helm_major == "3" else None
    rel = Release("lgpg-fail", "lgpg-fail", "langgraph", postgres)
    try:
        result = rel.install(image, {**wrong_password_values(), "replicaCount": 1}, check=False,
                             helm_path=helm_path, timeout="5m")
        assert result.returncode != 0, result.stdout
        job = postgres.get("job", "-n", rel.namespace, f"{rel.fullname}-migrate")
        status = job["status"]
        assert status.get("failed") == 1 and not status.get("succeeded"), status
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert failed["status"] == "True" and failed["reason"] == "PodFailurePolicy", failed
        assert f"exit code {AUTHENTICATION_EXIT}" in failed["message"], failed
        pods = postgres.pods(rel.namespace, f"job-name={rel.fullname}-migrate")
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == AUTHENTICATION_EXIT
        logs = postgres.kubectl("logs", "-n", rel.namespace, pods[0]["metadata"]["name"]).stdout
        assert WRONG_PASSWORD not in logs and "authentication" in logs.lower(), logs
        # The pre-install hook failed: no server Deployment (so no pod) was ever created.
        assert postgres.get("deployments", "-n", rel.namespace)["items"] == []
        if helm_major == "4":
            # Helm 4 deletes the hooks that ran before the failed one by their hook-succeeded policy.
            assert leftovers(rel) == {"secrets holding the password": [], "service accounts": []}
        # Helm 3 (3.18 here) leaves them after the failure; `helm uninstall` (or --atomic, which
        # uninstalls) removes them: they are post-delete hooks with before-hook-creation.
        rel.cluster.helm("uninstall", rel.name, "--namespace", rel.namespace, "--wait", "--timeout", "5m",
                         helm_path=helm_path)
        assert leftovers(rel) == {"secrets holding the password": [], "service accounts": []}
    finally:
        rel.uninstall(helm_path)
        postgres.kubectl("wait", "--for=delete", f"namespace/{rel.namespace}", "--timeout=300s", check=False,
                         timeout=360)
