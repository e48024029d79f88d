"""Health, information and metrics: /ok, /ready, /info, /metrics."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from litestar import Request, Response, get
from litestar.plugins.prometheus import PrometheusController

from service.app_types import ResourcesT
from service.errors import PROBLEM_JSON


@get("/ok", opt={"public": True}, include_in_schema=True, sync_to_thread=False)
def ok() -> dict[str, bool]:
    """Liveness: the process answers. Never touches the database."""
    return {"ok": True}


@get("/ready", opt={"public": True})
async def ready(request: Request[Any, Any, Any], resources: ResourcesT) -> Response[dict[str, Any]]:
    """Readiness: database reachable, schema at or beyond what this code needs, not draining."""
    is_ready, detail = await resources.readiness.check()
    if is_ready:
        return Response({"ready": True, **detail})
    return Response({"type": "about:blank", "title": "Service Unavailable", "status": 503,
                     "detail": f"not ready: {detail.get('reason')}", "instance": request.url.path, **detail},
                    status_code=503, media_type=PROBLEM_JSON, headers={"Retry-After": "5"})


@get("/info")
async def info(resources: ResourcesT) -> dict[str, Any]:
    return {
        "version": _version("langgraph-pg"),
        "langgraph_py_version": _version("langgraph"),
        "langgraph_checkpoint_postgres_version": _version("langgraph-checkpoint-postgres"),
        "checkpointer": resources.settings.checkpointer,
        "graphs": sorted(resources.graphs),
        "flags": {"assistants": True, "crons": False, "langsmith": False, "background_runs": False},
        "metadata": {},  # the spec requires it (the LangGraph Server's deployment metadata); none here
    }


def _version(dist: str) -> str:
    try:
        return version(dist)
    except Exception:
        return "unknown"


class MetricsController(PrometheusController):
    path = "/metrics"
    opt = {"public": True}  # noqa: RUF012 - Litestar's controller attribute
    include_in_schema = False


ROUTES = [ok, ready, info, MetricsController]
