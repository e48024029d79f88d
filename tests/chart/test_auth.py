"""The chart's auth values: the built-in JWT (its Secret, mount and variables) and own Auth handlers."""

from __future__ import annotations

import base64
import json

from tests.chart.conftest import FULLNAME, container, env_of, one, pod_spec, render_chart, render_error

DEPLOYMENT = ["templates/deployment.yaml"]
SECRET = ["templates/auth-secret.yaml"]
PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
JWT = {"apiKeys.enabled": True, "apiKeys.keys": ["k"], "auth.jwt.enabled": True, "auth.jwt.key": PEM,
       "auth.jwt.issuer": "https://issuer.example", "auth.jwt.audience": "agents", "auth.jwt.leewaySeconds": 30}


def server(values: dict) -> dict:
    return container(one(render_chart(values=values, show_only=DEPLOYMENT), "Deployment"), "server")


class TestAuthSecret:
    def test_should_hold_the_key_material(self) -> None:
        secret = one(render_chart(values=JWT, show_only=SECRET), "Secret")
        assert secret["metadata"]["name"] == f"{FULLNAME}-auth"
        assert base64.b64decode(secret["data"]["jwt-key"]).decode() == PEM

    def test_should_not_render_without_the_jwt_or_with_an_existing_secret(self) -> None:
        assert render_chart(show_only=SECRET) == []
        assert render_chart(values={**JWT, "auth.jwt.existingSecret": "keys"}, show_only=SECRET) == []


class TestDeploymentAuth:
    def test_should_mount_the_key_and_name_it_with_every_setting(self) -> None:
        c = server(JWT)
        env = env_of(c)
        assert env["AUTH_JWT_KEY_FILE"] == "/etc/langgraph-auth/public-key.pem"
        assert "AUTH_JWT_JWKS_FILE" not in env
        assert env["AUTH_JWT_ALGORITHMS"] == "RS256,ES256"
        assert env["AUTH_JWT_ISSUER"] == "https://issuer.example" and env["AUTH_JWT_AUDIENCE"] == "agents"
        assert env["AUTH_JWT_LEEWAY_SECONDS"] == "30" and env["AUTH_JWT_REQUIRED_CLAIMS"] == "exp"
        assert env["AUTH_JWT_IDENTITY_CLAIM"] == "sub" and env["AUTH_JWT_PERMISSIONS_CLAIM"] == "permissions"
        mount = next(m for m in c["volumeMounts"] if m["name"] == "auth-keys")
        assert mount == {"name": "auth-keys", "mountPath": "/etc/langgraph-auth", "readOnly": True}  # no subPath
        volume = next(v for v in pod_spec(one(render_chart(values=JWT, show_only=DEPLOYMENT)))["volumes"]
                      if v["name"] == "auth-keys")
        assert volume["secret"] == {"secretName": f"{FULLNAME}-auth",
                                    "items": [{"key": "jwt-key", "path": "public-key.pem"}]}

    def test_should_pass_the_claims_and_mount_path_it_is_given(self) -> None:
        values = {**JWT, "auth.jwt.mountPath": "/var/run/idp/", "auth.jwt.requiredClaims": ["exp", "sub", "aud"],
                  "auth.jwt.identityClaim": "email", "auth.jwt.permissionsClaim": "scope"}
        c = server(values)
        env = env_of(c)
        assert env["AUTH_JWT_KEY_FILE"] == "/var/run/idp/public-key.pem"
        assert env["AUTH_JWT_REQUIRED_CLAIMS"] == "exp,sub,aud"
        assert env["AUTH_JWT_IDENTITY_CLAIM"] == "email" and env["AUTH_JWT_PERMISSIONS_CLAIM"] == "scope"
        assert next(m for m in c["volumeMounts"] if m["name"] == "auth-keys")["mountPath"] == "/var/run/idp/"

    def test_should_read_a_jwks_from_an_existing_secret(self) -> None:
        values = {**JWT, "auth.jwt.keyFormat": "jwks", "auth.jwt.key": "", "auth.jwt.existingSecret": "idp-keys",
                  "auth.jwt.secretKey": "jwks.json", "auth.jwt.algorithms": ["ES256"]}
        env = env_of(server(values))
        assert env["AUTH_JWT_JWKS_FILE"] == "/etc/langgraph-auth/jwks.json" and "AUTH_JWT_KEY_FILE" not in env
        assert env["AUTH_JWT_ALGORITHMS"] == "ES256"
        volume = next(v for v in pod_spec(one(render_chart(values=values, show_only=DEPLOYMENT)))["volumes"]
                      if v["name"] == "auth-keys")
        assert volume["secret"]["secretName"] == "idp-keys"
        assert volume["secret"]["items"] == [{"key": "jwks.json", "path": "jwks.json"}]

    def test_should_set_nothing_of_the_jwt_when_disabled(self) -> None:
        c = server({})
        assert not [name for name in env_of(c) if name.startswith("AUTH_JWT")]
        assert all(m["name"] != "auth-keys" for m in c["volumeMounts"])

    def test_should_serve_own_auth_handlers_from_the_langgraph_json(self) -> None:
        values = {"langgraphJson.content": {"graphs": {"agent": "my_project.agent:graph"},
                                            "auth": {"path": "my_project.auth:auth"}}}
        configmap = one(render_chart(values=values, show_only=["templates/langgraph-json-configmap.yaml"]))
        assert json.loads(configmap["data"]["langgraph.json"])["auth"] == {"path": "my_project.auth:auth"}
        assert not [name for name in env_of(server(values)) if name.startswith("AUTH_JWT")]


class TestAuthValidation:
    def test_should_refuse_a_jwt_without_a_key(self) -> None:
        assert "auth.jwt.key is empty" in render_error({**JWT, "auth.jwt.key": ""})

    def test_should_refuse_a_jwt_without_api_keys(self) -> None:
        assert "auth.jwt.enabled needs apiKeys.enabled" in render_error({**JWT, "apiKeys.enabled": False})

    def test_should_refuse_both_ways_at_once(self) -> None:
        values = {**JWT, "langgraphJson.content": {"graphs": {"a": "m:g"}, "auth": {"path": "m.auth:auth"}}}
        assert "choose your own Auth handlers or the built-in JWT" in render_error(values)

    def test_should_refuse_values_the_schema_does_not_know(self) -> None:
        assert "audiences" in render_error({**JWT, "auth.jwt.audiences": ["x"]})
        assert "keyFormat" in render_error({**JWT, "auth.jwt.keyFormat": "der"})
        assert "algorithms" in render_error({**JWT, "auth.jwt.algorithms": ["HS256"]})
        assert "path" in render_error({"langgraphJson.content": {"graphs": {"a": "m:g"}, "auth": {"path": "noattr"}}})


SPLIT = {"config.metricsPort": 9100, "serviceMonitor.enabled": True,
         "networkPolicy.from": [{"namespaceSelector": {"matchLabels": {"team": "agents"}}}],
         "networkPolicy.metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}


class TestMetricsPort:
    def test_should_serve_metrics_on_their_own_port_when_split(self) -> None:
        docs = render_chart(values=SPLIT, show_only=["templates/deployment.yaml", "templates/service.yaml",
                                                          "templates/servicemonitor.yaml",
                                                          "templates/configmap.yaml"])
        c = container(one(docs, "Deployment"), "server")
        assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in c["ports"]
        assert one(docs, "ConfigMap")["data"]["METRICS_PORT"] == "9100"
        ports = {p["name"]: p for p in one(docs, "Service")["spec"]["ports"]}
        assert ports["metrics"]["targetPort"] == "metrics" and ports["metrics"]["port"] == 9100
        assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"

    def test_should_admit_only_the_scrapers_on_the_metrics_port(self) -> None:
        policies = render_chart(values=SPLIT, show_only=["templates/networkpolicy.yaml"])
        server = next(p for p in policies if p["metadata"]["name"] == FULLNAME)
        api, metrics = server["spec"]["ingress"]
        assert api["ports"] == [{"port": "http", "protocol": "TCP"}]
        assert {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}} not in api["from"]
        assert metrics == {"ports": [{"port": "metrics", "protocol": "TCP"}],
                           "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}

    def test_should_keep_metrics_on_the_http_port_by_default(self) -> None:
        docs = render_chart(values={"serviceMonitor.enabled": True},
                            show_only=["templates/servicemonitor.yaml", "templates/configmap.yaml"])
        assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "http"
        assert "METRICS_PORT" not in one(docs, "ConfigMap")["data"]

    def test_should_refuse_the_api_port_or_a_privileged_one(self) -> None:
        assert "config.metricsPort must be 0" in render_error({"config.metricsPort": 8000})
        assert "config.metricsPort must be 0" in render_error({"config.metricsPort": 80})
