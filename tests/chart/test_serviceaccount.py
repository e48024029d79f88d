from __future__ import annotations

import pytest

from tests.chart.conftest import FULLNAME, by_kind, one, pod_spec, render_chart

SHOW = ["templates/serviceaccount.yaml"]
WORKLOADS = ["templates/deployment.yaml", "templates/prune-cronjob.yaml", "templates/tests/test-smoke.yaml"]


class TestServiceAccount:
    def test_should_create_an_account_without_a_token(self) -> None:
        sa = one(render_chart(show_only=SHOW), "ServiceAccount")
        assert sa["metadata"]["name"] == FULLNAME
        assert sa["automountServiceAccountToken"] is False
        assert "annotations" not in sa["metadata"]

    def test_should_carry_annotations_and_a_name(self) -> None:
        sa = one(render_chart(values={"serviceAccount.name": "agents",
                                      "serviceAccount.annotations": {"iam.example.com/role": "agents"}},
                              show_only=SHOW))
        assert sa["metadata"]["name"] == "agents"
        assert sa["metadata"]["annotations"] == {"iam.example.com/role": "agents"}

    def test_should_mount_a_token_when_asked(self) -> None:
        values = {"serviceAccount.automountServiceAccountToken": True, "prune.enabled": True}
        assert one(render_chart(values=values, show_only=SHOW))["automountServiceAccountToken"] is True
        for doc in render_chart(values=values, show_only=WORKLOADS):
            assert pod_spec(doc)["automountServiceAccountToken"] is True

    @pytest.mark.parametrize(("values", "expected"), [
        ({}, FULLNAME),
        ({"serviceAccount.name": "agents"}, "agents"),
        ({"serviceAccount.create": False}, "default"),
        ({"serviceAccount.create": False, "serviceAccount.name": "shared"}, "shared"),
    ])
    def test_should_be_used_by_the_server_prune_and_test_pods(self, values: dict, expected: str) -> None:
        docs = render_chart(values={**values, "prune.enabled": True}, show_only=WORKLOADS)
        assert len(docs) == 3
        assert {pod_spec(doc)["serviceAccountName"] for doc in docs} == {expected}

    def test_should_not_render_when_not_created(self) -> None:
        docs = render_chart(values={"serviceAccount.create": False})
        assert [sa["metadata"]["name"] for sa in by_kind(docs, "ServiceAccount")] == [f"{FULLNAME}-migrate"]
