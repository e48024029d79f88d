"""The built-in bearer JWT: a ``langgraph_sdk.Auth`` that verifies tokens and isolates owners.

Tokens are verified with the public keys of a PEM file or a JWKS document (both mounted from a
Secret; re-read when the file changes), for the configured algorithms (RS256/ES256 by default),
issuer, audience, leeway and required claims. The user is the ``AUTH_JWT_IDENTITY_CLAIM`` claim;
permissions come from ``AUTH_JWT_PERMISSIONS_CLAIM`` (a list, or a space-separated string).

Isolation, as the LangGraph auth tutorial writes it: whatever a user creates (threads, runs and
the threads they create, assistants, crons) gets ``metadata.owner``, and every read, search,
update and delete is filtered to the user's own. The system assistant of each graph stays
readable. Store namespaces of a user start with the user's identity: searches and listings
without a prefix are confined to it, any other namespace is 403.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import jwt
from langgraph_sdk import Auth

from service.settings import ConfigError, JwtSettings

OWNER_KEY = "owner"
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidAudienceError, "the token is not for this audience"),
    (jwt.InvalidIssuerError, "the token is from another issuer"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted"),
)


class Keys:
    """The verification keys, re-read when the file's modification time changes (a rotated Secret)."""

    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self.path = settings.key_file or settings.jwks_file or ""
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._pem: Any = None
        self._jwks: dict[str, Any] = {}
        self.reload(strict=True)

    def reload(self, *, strict: bool = False) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
            if mtime == self._mtime:
                return
            with open(self.path, "rb") as f:
                raw = f.read()
            if self.settings.key_file:
                pem = jwt.algorithms.get_default_algorithms()[self.settings.algorithms[0]].prepare_key(raw)
                self._pem, self._mtime = pem, mtime
            else:
                keys = jwt.PyJWKSet.from_dict(json.loads(raw)).keys
                self._jwks = {k.key_id or "": k for k in keys}
                self._mtime = mtime
        except (OSError, ValueError, TypeError, jwt.PyJWTError) as exc:
            if strict:
                where = "AUTH_JWT_KEY_FILE" if self.settings.key_file else "AUTH_JWT_JWKS_FILE"
                raise ConfigError(f"{where} {self.path}: not a usable public key ({type(exc).__name__})") from None
            # Keep the keys read before: a half-written file does not lock every user out.

    def for_token(self, token: str) -> Any:
        with self._lock:
            self.reload()
        if self.settings.key_file:
            return self._pem
        kid = jwt.get_unverified_header(token).get("kid") or ""
        key = self._jwks.get(kid)
        if key is None and not kid and len(self._jwks) == 1:
            key = next(iter(self._jwks.values()))
        if key is None:
            raise jwt.InvalidKeyError("no key with this kid")
        return key.key


def _deny(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=401, detail=detail,
                                         headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def build(settings: JwtSettings) -> Auth:
    keys = Keys(settings)
    auth = Auth()

    @auth.authenticate
    async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Auth.exceptions.HTTPException(status_code=401, detail="a bearer token is required",
                                                headers={"WWW-Authenticate": "Bearer"})
        token = token.strip()
        try:
            claims = jwt.decode(
                token, keys.for_token(token), algorithms=list(settings.algorithms), audience=settings.audience,
                issuer=settings.issuer, leeway=settings.leeway,
                options={"require": list(settings.required_claims), "verify_aud": settings.audience is not None})
        except jwt.PyJWTError as exc:
            reason = next((text for kind, text in _REASONS if isinstance(exc, kind)), "the token is not valid")
            raise _deny(reason) from None
        identity = claims.get(settings.identity_claim)
        if not isinstance(identity, str | int) or isinstance(identity, bool) or str(identity) == "":
            raise _deny(f"the token has no {settings.identity_claim} claim")
        raw = claims.get(settings.permissions_claim) or []
        permissions = raw.split() if isinstance(raw, str) else [str(p) for p in raw if isinstance(p, str)]
        return {"identity": str(identity), "permissions": permissions}

    @auth.on
    async def owner(ctx: Auth.types.AuthContext, value: Any) -> Any:
        identity = ctx.user.identity
        if ctx.resource == "store":
            namespace = tuple(value.get("namespace") or ())
            if ctx.action in ("search", "list_namespaces") and not namespace:
                value["namespace"] = (identity,)
                return None
            if not namespace or namespace[0] != identity:
                raise Auth.exceptions.HTTPException(
                    status_code=403, detail="a user's store namespaces start with the user's identity")
            return None
        if ctx.action in ("create", "create_run", "update") and isinstance(value, dict):
            metadata = value.get("metadata")
            if ctx.action != "update" or (isinstance(metadata, dict) and OWNER_KEY in metadata):
                value["metadata"] = {**(metadata if isinstance(metadata, dict) else {}), OWNER_KEY: identity}
        if ctx.resource == "assistants" and ctx.action in ("read", "search"):
            return {"$or": [{OWNER_KEY: identity}, {"created_by": "system"}]}
        return {OWNER_KEY: identity}

    return auth
