"""values.yaml and values.schema.json: documented, strict, in step with each other and with the tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART_DIR, render_chart, render_error

VALUES_TEXT = (CHART_DIR / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_-]*):(?: |$)")

# Kubernetes objects the chart passes through verbatim: the schema checks their top level only,
# and the rendered result is checked against the Kubernetes OpenAPI schemas (test_kubernetes_schemas).
PASS_THROUGH = {
    "nodeAffinity", "podAffinity", "podAntiAffinity", "configMapKeyRef", "secretKeyRef", "fieldRef",
    "resourceFieldRef", "secret", "configMap", "emptyDir", "projected", "persistentVolumeClaim", "csi",
    "downwardAPI", "ephemeral", "seLinuxOptions", "sysctls", "labelSelector", "podSelector", "namespaceSelector",
    "ipBlock", "scaleUp", "scaleDown",
}


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return resolve(SCHEMA["definitions"][ref.rsplit("/", 1)[1]])
    return schema


def options(schema: dict[str, Any] = SCHEMA, prefix: str = "") -> dict[str, str]:
    """{dotted path: "group" | "option"}: a group is an object the chart defines (inline properties);
    an option is anything else (a scalar, a list, a map, or a Kubernetes object passed through)."""
    found: dict[str, str] = {}
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        if "properties" in sub and "$ref" not in sub:
            found[path] = "group"
            found.update(options(sub, f"{path}."))
        else:
            found[path] = "option"
    return found


def value_at(path: str) -> Any:
    node: Any = VALUES
    for part in path.split("."):
        node = node[part]
    return node


def key_lines() -> dict[str, tuple[int, list[str]]]:
    """{dotted path: (line number, the comment lines right above it)} for every key in values.yaml."""
    stack: list[tuple[int, str]] = []
    found: dict[str, tuple[int, list[str]]] = {}
    lines = VALUES_TEXT.splitlines()
    for number, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        comments = []
        above = number - 1
        while above >= 0 and lines[above].strip().startswith("#") and \
                len(lines[above]) - len(lines[above].lstrip()) == indent:
            comments.insert(0, lines[above].strip().lstrip("#").strip())
            above -= 1
        found[".".join(key for _, key in stack)] = (number + 1, comments)
    return found


class TestValuesDocumentation:
    @pytest.mark.parametrize("path", sorted(options()))
    def test_should_document_every_key_with_a_full_sentence(self, path: str) -> None:
        line, comments = key_lines()[path]
        text = " ".join(comments)
        assert comments, f"values.yaml:{line}: {path} has no comment"
        assert re.match(r"^[A-Z]", text) and text.endswith(".") and len(text.split()) >= 4, \
            f"values.yaml:{line}: the comment of {path} is not a full sentence: {text!r}"


class TestValuesSchema:
    def test_should_describe_exactly_the_keys_of_values_yaml(self) -> None:
        documented = options()
        for path, kind in documented.items():
            value = value_at(path)  # KeyError: in the schema but not in values.yaml
            if kind == "group":
                assert isinstance(value, dict), path
                assert set(value) == set(resolve(schema_at(path))["properties"]), path
        assert set(VALUES) == set(SCHEMA["properties"])

    def test_should_forbid_unknown_keys_in_every_object(self) -> None:
        loose: list[str] = []

        def walk(node: Any, where: str) -> None:
            if isinstance(node, dict):
                if node.get("type") == "object" or "properties" in node:
                    if "properties" in node:
                        assert node.get("additionalProperties") is False, f"{where} allows unknown keys"
                    elif "additionalProperties" not in node:
                        loose.append(where.rsplit("/", 1)[-1])
                    else:
                        assert isinstance(node["additionalProperties"], dict), f"{where}: untyped map"
                for key, sub in node.items():
                    walk(sub, f"{where}/{key}")
            elif isinstance(node, list):
                for i, sub in enumerate(node):
                    walk(sub, f"{where}/{i}")

        walk(SCHEMA, "#")
        assert set(loose) <= PASS_THROUGH, f"objects that accept any key: {set(loose) - PASS_THROUGH}"

    @pytest.mark.parametrize(("values", "message"), [
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
        ({"database.poolSize": 3}, "additional properties 'poolSize' not allowed"),
        ({"migration.waitForSchema.interval": 3}, "additional properties 'interval' not allowed"),
        ({"resources": {"request": {"cpu": "1"}}}, "additional properties 'request' not allowed"),
        ({"securityContext.runAsRoot": True}, "additional properties 'runAsRoot' not allowed"),
        ({"tolerations": [{"key": "a", "effects": "NoSchedule"}]}, "additional properties 'effects' not allowed"),
        ({"extraEnv": [{"name": "A", "valueFrom": {"secretRef": {}}}]}, "additional properties 'secretRef'"),
        ({"replicaCount": "2"}, "replicaCount"),
        ({"config.logLevel": "VERBOSE"}, "logLevel"),
        ({"config.port": 80}, "minimum"),
        ({"config.graphs": {"bad": "no-colon"}}, "graphs"),
        ({"image.digest": "latest"}, "digest"),
        ({"image.pullPolicy": "Sometimes"}, "pullPolicy"),
        ({"serviceMonitor.interval": "30 seconds"}, "interval"),
        ({"migration.failFastExitCodes": [0]}, "failFastExitCodes"),
        ({"apiKeys.keys": ["a,b"]}, "keys"),
        ({"podDisruptionBudget.maxUnavailable": "half"}, "maxUnavailable"),
        ({"migration.pushgatewayUrl": "pushgateway:9091"}, "pushgatewayUrl"),
        ({"webhooks.attempts": 0}, "minimum"),
        ({"crons.maxSleepSeconds": "5s"}, "maxSleepSeconds"),
    ], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
    def test_should_reject_invalid_values(self, values: dict[str, Any], message: str) -> None:
        assert message in render_error(values)

    def test_should_accept_every_ci_values_file_and_the_defaults(self) -> None:
        assert render_chart()


def schema_at(path: str) -> dict[str, Any]:
    node = SCHEMA
    for part in path.split("."):
        node = resolve(node)["properties"][part]
    return node


class TestValuesCoverage:
    def test_should_name_every_option_in_a_chart_test(self) -> None:
        # Each option appears, as the quoted dotted path a test renders it with, in some test here;
        # with one test class per template this is how "every option has an assertion" is kept.
        sources = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py") if p.name != Path(
            __file__).name)
        missing = [path for path, kind in options().items() if kind == "option" and f'"{path}"' not in sources]
        assert missing == []
