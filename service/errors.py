"""The service's errors and their one mapping to RFC 9457 problem+json responses.

Handlers raise :class:`ServiceError` subclasses; database and framework errors are mapped
here too, so no traceback, SQL or DSN ever reaches a client.
"""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from psycopg_pool import PoolTimeout

from service import metrics
from service.db import first_line as db_first_line
from service.logging import get_logger

log = get_logger("service.errors")
PROBLEM_JSON = "application/problem+json"


class ServiceError(Exception):
    status = 500
    title = "Internal Server Error"
    headers: dict[str, str] | None = None  # e.g. WWW-Authenticate on a 401

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(ServiceError):
    status = 400
    title = "Bad Request"


class Unprocessable(ServiceError):
    status = 422
    title = "Unprocessable Content"


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"


class NotFound(ServiceError):
    status = 404
    title = "Not Found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class NotSupported(ServiceError):
    """An operation this configuration cannot serve (background runs, storage with CHECKPOINTER=memory)."""

    status = 501
    title = "Not Implemented"


class Unavailable(ServiceError):
    status = 503
    title = "Service Unavailable"

    def __init__(self, detail: str, retry_after: int = 2, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


def problem(status: int, title: str, detail: str, instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _service_error(request: Request[Any, Any, Any], exc: ServiceError) -> Response[dict[str, Any]]:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else exc.headers
    if exc.status >= 500:
        log.warning("request_failed", status=exc.status, detail=exc.detail)
    return problem(exc.status, exc.title, exc.detail, request.url.path, headers, **exc.extra)


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    fields = [{"field": e.get("key"), "message": e.get("message"), "source": e.get("source")}
              for e in errors if isinstance(e, dict)]
    detail = exc.detail or "the request is invalid"
    if fields:
        detail = "; ".join(f"{f['field'] or 'body'}: {f['message']}" for f in fields)
    if "JSON" in detail or "decode" in detail.lower():
        detail = "the request body is not valid JSON"
    return problem(422, "Unprocessable Content", detail, request.url.path, errors=fields)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status == 400:  # the framework's only 400s are bodies it cannot decode
        return problem(422, "Unprocessable Content", f"the request body is not valid JSON: {exc.detail}",
                       request.url.path)
    title = {404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large"}.get(status, "Error")
    detail = exc.detail if status != 404 or isinstance(exc, NotFoundException) else "not found"
    if status == 413:
        detail = "the request body is larger than this service accepts"
    if status >= 500:
        log.error("request_failed", status=status)
        detail = "internal error"
    return problem(status, title, detail, request.url.path, exc.headers)


def _database(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    metrics.record_database_error(exc)
    if isinstance(exc, PoolTimeout):
        reason = "no database connection became free in time"
    elif isinstance(exc, (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)):
        reason = "the database schema is not migrated (run python -m migrate)"
    else:
        reason = "the database is unavailable"
    log.warning("database_unavailable", error_type=type(exc).__name__, sqlstate=getattr(exc, "sqlstate", None),
                path=request.url.path)
    return problem(503, "Service Unavailable", reason, request.url.path, {"Retry-After": "2"})


# Errors that mean "the database cannot serve this now": 503 with Retry-After, never 500.
UNAVAILABLE_ERRORS = (psycopg.OperationalError, PoolTimeout, psycopg.errors.UndefinedTable,
                psycopg.errors.UndefinedColumn, psycopg.errors.QueryCanceled, psycopg.errors.AdminShutdown)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return _database(request, exc)
    if isinstance(exc, UnicodeDecodeError):
        return problem(422, "Unprocessable Content", "the request body is not valid UTF-8", request.url.path)
    if isinstance(exc, RecursionError):
        # The JSON decoder gave up on a body nested thousands of levels deep.
        return problem(422, "Unprocessable Content", "the request body is nested too deeply", request.url.path)
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        # Every foreign key points at a thread or an assistant, and each cascades on delete: the
        # request raced the deletion of what it refers to, which is now gone.
        return problem(404, "Not Found", "what this request refers to was deleted meanwhile", request.url.path)
    if isinstance(exc, psycopg.errors.DataError):
        # Class 22: a value the database cannot take (bad text, out-of-range number): the input's fault.
        return problem(422, "Unprocessable Content", "a value in the request cannot be stored: "
                       + db_first_line(exc), request.url.path)
    # One line, no traceback (it may carry values from the request or the database).
    message = str(exc).splitlines()[0][:300] if str(exc) else ""
    log.error("unhandled_error", error_type=type(exc).__name__, error=message, path=request.url.path)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error", "internal error", request.url.path)


class ProblemDetails(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem, as every error of this service answers (for the OpenAPI document)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


# For handlers that answer 400 themselves (the LangGraph Server's 400s): documented as problem+json,
# in place of the framework's default 400 entry (its own 400s are answered 422 here).
BAD_REQUEST_RESPONSES = {400: ResponseSpec(data_container=ProblemDetails, media_type=PROBLEM_JSON,
                                           description="Bad Request (RFC 9457 problem)", generate_examples=False)}


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ServiceError: _service_error,
    ValidationException: _validation,
    HTTPException: _http,
    psycopg.Error: _unexpected,
    PoolTimeout: _database,
    Exception: _unexpected,
}
