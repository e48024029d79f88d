"""The built-in bearer JWT: real keys, real tokens, a real process over a real PostgreSQL.

Tokens are signed here with keys made for the test (RS256 against a PEM file; ES256 against a
JWKS document with key ids, rotated while the service runs). Expired, not-yet-valid, forged,
wrong-audience, wrong-issuer, claim-less, ``alg: none`` and HS256-with-the-public-key tokens are
refused with 401 problem+json; users are isolated route by route (the table of test_auth);
schemathesis runs with a valid token.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.e2e.test_auth import TABLE, World, build_world, check_intact, check_isolated, check_refused, ok
from tests.support.graphs import GRAPHS
from tests.support.race import ROOT, python_env
from tests.support.service import ServiceProcess

ISSUER = "https://issuer.test"
AUDIENCE = "langgraph-pg"
OPERATOR_KEY = "operator-" + uuid.uuid4().hex
SCHEMATHESIS = ROOT / ".venv" / "bin" / "st"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,  # type: ignore[no-any-return]
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def token(key: Any, sub: str | None = "user1", alg: str = "RS256", kid: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims}
    if sub is not None:
        body["sub"] = sub
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


U1 = bearer(token(RSA_KEY, "user1", permissions=["threads:write"]))
U2 = bearer(token(RSA_KEY, "user2"))


@pytest.fixture(scope="module")
def pod(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    from migrate.runner import Options, run

    keys = tmp_path_factory.mktemp("jwt") / "public.pem"
    keys.write_bytes(pem(RSA_KEY))
    conninfo = pg_server.create_database("auth_jwt")
    run(Options(conninfo=conninfo))
    graphs = GRAPHS[:-1] + ', "whoami": "tests/support/auth/whoami.py:make"}'
    with ServiceProcess(conninfo, AUTH_JWT_KEY_FILE=str(keys), AUTH_JWT_ISSUER=ISSUER, AUTH_JWT_AUDIENCE=AUDIENCE,
                        AUTH_JWT_LEEWAY_SECONDS="30", AUTH_JWT_REQUIRED_CLAIMS="exp,sub", API_KEYS=OPERATOR_KEY,
                        GRAPHS=graphs) as p:
        yield p
    logs = p.logs()
    assert "Traceback" not in logs and "unhandled_error" not in logs
    assert U1["Authorization"].split()[1] not in logs and OPERATOR_KEY not in logs  # tokens are never logged
    pg_server.drop_database(conninfo)


@pytest.fixture(scope="module")
def world(pod: ServiceProcess) -> Iterator[World]:
    yield from build_world(pod, U1)


def refused(pod: ServiceProcess, headers: dict[str, str]) -> str:
    r = httpx.post(f"{pod.url}/threads/search", headers=headers, json={}, timeout=10)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["www-authenticate"].startswith("Bearer")
    return str(r.json()["detail"])


class TestTokens:
    def test_should_accept_a_valid_token_and_answer_with_the_users_own(self, pod: ServiceProcess) -> None:
        r = httpx.post(f"{pod.url}/threads/search", headers=U1, json={}, timeout=10)
        assert r.status_code == 200, r.text

    def test_should_refuse_a_missing_or_malformed_token(self, pod: ServiceProcess) -> None:
        assert refused(pod, {}) == "a bearer token is required"
        assert refused(pod, {"Authorization": "Bearer"}) == "a bearer token is required"
        assert refused(pod, bearer("not.a.jwt")) == "the token is not valid"

    def test_should_refuse_an_expired_token_past_the_leeway_and_accept_one_within(self, pod: ServiceProcess) -> None:
        now = int(time.time())
        assert refused(pod, bearer(token(RSA_KEY, exp=now - 120, iat=now - 700))) == "the token has expired"
        r = httpx.post(f"{pod.url}/threads/count", headers=bearer(token(RSA_KEY, exp=now - 5)), json={}, timeout=10)
        assert r.status_code == 200, r.text  # 5 s late, within AUTH_JWT_LEEWAY_SECONDS=30

    def test_should_refuse_a_token_not_valid_yet(self, pod: ServiceProcess) -> None:
        assert refused(pod, bearer(token(RSA_KEY, nbf=int(time.time()) + 300))) == "the token is not valid yet"

    def test_should_refuse_a_forged_token(self, pod: ServiceProcess) -> None:
        assert refused(pod, bearer(token(OTHER_RSA_KEY))) == "the token is not valid"
        # The payload of a good token with another's subject, the signature kept: no longer valid.
        head, _, sig = U1["Authorization"].split()[1].split(".")
        body = jwt.utils.base64url_encode(json.dumps({"sub": "user2", "iss": ISSUER, "aud": AUDIENCE,
                                                      "exp": int(time.time()) + 600}).encode()).decode()
        assert refused(pod, bearer(f"{head}.{body}.{sig}")) == "the token is not valid"

    def test_should_refuse_alg_none_and_hs256_signed_with_the_public_key(self, pod: ServiceProcess) -> None:
        unsigned = jwt.encode({"sub": "user1", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
                              None, algorithm="none")
        assert refused(pod, bearer(unsigned)) == "the token's algorithm is not accepted"
        head = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}').decode()
        body = jwt.utils.base64url_encode(json.dumps({"sub": "user1", "iss": ISSUER, "aud": AUDIENCE,
                                                      "exp": int(time.time()) + 60}).encode()).decode()
        import hashlib
        import hmac

        sig = jwt.utils.base64url_encode(hmac.new(pem(RSA_KEY), f"{head}.{body}".encode(), hashlib.sha256).digest())
        assert refused(pod, bearer(f"{head}.{body}.{sig.decode()}")) == "the token's algorithm is not accepted"

    def test_should_refuse_the_wrong_audience_or_issuer(self, pod: ServiceProcess) -> None:
        assert refused(pod, bearer(token(RSA_KEY, aud="another-api"))) == "the token is not for this audience"
        assert refused(pod, bearer(token(RSA_KEY, aud=None))) == "the token lacks a required claim"
        assert refused(pod, bearer(token(RSA_KEY, iss="https://evil.test"))) == "the token is from another issuer"

    def test_should_refuse_a_token_without_the_required_claims(self, pod: ServiceProcess) -> None:
        assert refused(pod, bearer(token(RSA_KEY, exp=None))) == "the token lacks a required claim"
        assert refused(pod, bearer(token(RSA_KEY, sub=None))) == "the token lacks a required claim"

    def test_should_let_the_api_key_through_as_the_operator(self, pod: ServiceProcess) -> None:
        r = httpx.post(f"{pod.url}/threads/count", headers={"x-api-key": OPERATOR_KEY}, json={}, timeout=10)
        assert r.status_code == 200


@pytest.mark.parametrize("route", sorted(TABLE), ids=lambda r: f"{r[0]} {r[1]}")
def test_should_isolate_users_on_every_route(pod: ServiceProcess, world: World, route: tuple[str, str]) -> None:
    check_refused(pod, world, route, [bearer(token(OTHER_RSA_KEY)), bearer(token(RSA_KEY, aud="x"))])
    check_isolated(pod, world, route, U1, U2, {"x-api-key": OPERATOR_KEY})


def test_should_leave_user_1s_resources_as_they_were(pod: ServiceProcess, world: World) -> None:
    check_intact(pod, world, U1, U2)


def test_should_mark_owners_and_confine_the_store(pod: ServiceProcess, world: World) -> None:
    with httpx.Client(base_url=pod.url, timeout=30, headers=U2) as c:
        thread = ok(c.post("/threads", json={"metadata": {"owner": "user1"}}))  # no planting in another's space
        assert thread["metadata"]["owner"] == "user2"
        patched = ok(c.patch(f"/threads/{thread['thread_id']}", json={"metadata": {"owner": "user1"}}))
        assert patched["metadata"]["owner"] == "user2"
        ok(c.put("/store/items", json={"namespace": ["user2", "memories"], "key": "m", "value": {"v": 1}}))
        found = ok(c.post("/store/items/search", json={}))["items"]
        assert [i["namespace"] for i in found] == [["user2", "memories"]]
        assert ok(c.post("/store/namespaces", json={}))["namespaces"] == [["user2", "memories"]]
        r = c.post("/store/items/search", json={"namespace_prefix": ["user1"]})
        assert r.status_code == 403 and world.secret not in r.text
        # The system assistants stay usable by everyone.
        assert ok(c.get("/assistants/slow"))["metadata"] == {"created_by": "system"}
        out = ok(c.post("/runs/wait", json={"assistant_id": "whoami", "input": {}}))
    assert out["config_user"] == "user2" and out["runtime_user"] == "user2" and out["permissions"] == []
    with httpx.Client(base_url=pod.url, timeout=30, headers=U1) as c:
        out = ok(c.post("/runs/wait", json={"assistant_id": "whoami", "input": {}}))
    assert out["config_user_id"] == "user1" and out["permissions"] == ["threads:write"]


def test_should_survive_schemathesis_with_a_valid_token(pod: ServiceProcess) -> None:
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{pod.url}/docs/openapi.json", "--max-examples", "20", "--seed", "20261201",
         "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
         "-H", f"Authorization: {U2['Authorization']}", "--workers", "1", "--no-color",
         "--exclude-path", "/threads/{thread_id}/stream", "--request-timeout", "60"],
        capture_output=True, text=True, timeout=400, env=python_env(), check=False,
    )
    summary = re.search(r"(\d+) generated, (\d+) (?:passed|found)", result.stdout)
    assert result.returncode == 0, result.stdout[-4000:]
    assert summary is not None and int(summary.group(1)) > 300, result.stdout[-2000:]
    print(f"\nschemathesis with a token: {summary.group(0)}")


def test_should_verify_es256_with_a_rotated_jwks(pg_server: Any, tmp_path: Path) -> None:
    from migrate.runner import Options, run

    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def jwks(*pairs: tuple[str, Any]) -> str:
        keys = []
        for kid, key in pairs:
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
        return json.dumps({"keys": keys})

    path = tmp_path / "jwks.json"
    path.write_text(jwks(("k1", old)))
    conninfo = pg_server.create_database("auth_jwks")
    run(Options(conninfo=conninfo))
    try:
        with ServiceProcess(conninfo, AUTH_JWT_JWKS_FILE=str(path), AUTH_JWT_ALGORITHMS="ES256",
                            AUTH_JWT_AUDIENCE=AUDIENCE) as p:
            first = bearer(token(old, alg="ES256", kid="k1"))
            assert httpx.post(f"{p.url}/threads/count", headers=first, json={}).status_code == 200
            second = bearer(token(new, alg="ES256", kid="k2"))
            assert httpx.post(f"{p.url}/threads/count", headers=second, json={}).status_code == 401
            assert httpx.post(f"{p.url}/threads/count", headers=bearer(token(RSA_KEY)), json={}).status_code == 401
            path.write_text(jwks(("k2", new)))  # the Secret rotated: k1 retired, k2 in
            deadline = time.monotonic() + 30
            while httpx.post(f"{p.url}/threads/count", headers=second, json={}).status_code != 200:
                assert time.monotonic() < deadline, "the rotated JWKS was never read"
                time.sleep(0.2)  # the file's mtime must change (1 s resolution on some filesystems)
                path.write_text(jwks(("k2", new)))
            assert httpx.post(f"{p.url}/threads/count", headers=first, json={}).status_code == 401
    finally:
        pg_server.drop_database(conninfo)


@pytest.mark.parametrize(("env", "message"), [
    ({"AUTH_JWT_KEY_FILE": "/nonexistent/key.pem"}, "AUTH_JWT_KEY_FILE /nonexistent/key.pem: not a usable public key"),
    ({"AUTH_JWT_KEY_FILE": "/etc/hostname"}, "not a usable public key"),
    ({"AUTH_JWT_KEY_FILE": "/x", "AUTH_JWT_JWKS_FILE": "/y"}, "set one of AUTH_JWT_KEY_FILE and AUTH_JWT_JWKS_FILE"),
    ({"AUTH_JWT_KEY_FILE": "/x", "AUTH_JWT_ALGORITHMS": "HS256"}, "AUTH_JWT_ALGORITHMS: unsupported algorithm"),
    ({"AUTH_JWT_KEY_FILE": "/x", "AUTH_JWT_LEEWAY_SECONDS": "soon"}, "AUTH_JWT_LEEWAY_SECONDS must be a number"),
])
def test_should_stop_with_one_line_on_a_bad_jwt_setting(migrated_db: str, env: dict[str, str], message: str) -> None:
    logs = ServiceProcess(migrated_db, **env).refused_start()
    assert message in logs and "Traceback" not in logs, logs[-2000:]
