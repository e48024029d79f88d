"""Validate many manifests in one process (run with .tools/venv/bin/python, not collected by pytest).

stdin: {"kubernetes_versions": ["1.29", ...], "documents": [{"id": "...", "doc": {...}}, ...],
        "custom_schemas": {"monitoring.coreos.com/v1/ServiceMonitor": "<path to JSON schema>", ...}}
stdout: {"latest": "<newest version kubernetes-validate knows>",
         "errors": [{"id": ..., "version": ..., "kind": ..., "error": "..."}],
         "validated": {"<version>": <count>, "custom": <count>}}

Built-in kinds are checked with kubernetes-validate in strict mode (unknown fields are errors)
against each version's OpenAPI schemas, offline. Kinds listed in custom_schemas (CRDs, which those
schemas do not have) are checked against the given JSON Schema instead. Any other kind is an error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import latest_version


def main() -> int:
    request = json.load(sys.stdin)
    versions = [latest_version() if v == "latest" else v for v in request["kubernetes_versions"]]
    custom = {key: json.loads(Path(path).read_text()) for key, path in request.get("custom_schemas", {}).items()}
    errors: list[dict[str, str]] = []
    validated: dict[str, int] = {v: 0 for v in versions}
    validated["custom"] = 0
    for item in request["documents"]:
        doc = item["doc"]
        key = f"{doc.get('apiVersion')}/{doc.get('kind')}"
        if key in custom:
            validator = jsonschema.Draft7Validator(custom[key])
            for error in validator.iter_errors(doc):
                path = "/".join(str(p) for p in error.absolute_path)
                errors.append({"id": item["id"], "version": "custom", "kind": key, "error": f"{path}: {error.message}"})
            validated["custom"] += 1
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = "/".join(str(p) for p in exc.path)
                errors.append({"id": item["id"], "version": version, "kind": key, "error": f"{path}: {exc.message}"})
            except kubernetes_validate.SchemaNotFoundError:
                errors.append({"id": item["id"], "version": version, "kind": key,
                               "error": "no schema for this kind in this Kubernetes version"})
            validated[version] += 1
    json.dump({"latest": latest_version(), "errors": errors, "validated": validated}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
