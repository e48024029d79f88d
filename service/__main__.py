"""``python -m service``: serve the LangGraph graphs over HTTP with uvicorn.

Settings come from the environment (see README, "The service"); a bad value stops the process
with one line. SIGTERM: /ready fails at once, runs in flight finish (up to DRAIN_TIMEOUT), then
the pool closes.

``WEB_CONCURRENCY`` (default 1) worker processes share the port: uvicorn's supervisor starts
them (``spawn``), restarts one that dies and passes SIGTERM on; each has its own app, pool
(``DB_POOL_MAX_SIZE`` each) and run workers (``N_JOBS_PER_WORKER`` each). With more than one,
metrics go to files in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory unless set;
emptied at start), which every worker's ``/metrics`` reads, so a scrape sees the pod's sums.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from service import logging as service_logging
from service.settings import ConfigError, Settings

log = service_logging.get_logger("service")


class _Server(uvicorn.Server):
    """Marks the app draining the moment a stop signal arrives, before uvicorn winds down."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: Any) -> None:
        _mark_draining(self._app, sig)
        super().handle_exit(sig, frame)


def _mark_draining(app: Any, sig: int) -> None:
    resources = getattr(app.state, "resources", None)
    if resources is not None and not resources.readiness.draining:
        resources.readiness.draining = True
        log.info("draining", signal=sig)


def _build(settings: Settings) -> tuple[Any, Any]:
    """The Litestar app and the ASGI app uvicorn serves (ConfigError for a bad graph or http.app)."""
    service_logging.configure(settings.log_level)
    # langgraph.json's ``env``: set for the graphs' own code, never over the process environment.
    os.environ.update(settings.extra_env)
    if settings.config_path:  # graphs named as modules beside langgraph.json import from its directory
        sys.path.insert(0, os.path.dirname(os.path.abspath(settings.config_path)))
    from service.app import create_app
    from service.asgi import create_asgi

    app = create_app(settings)
    return app, create_asgi(app, settings.http_app, app.state.gate if settings.http_app_auth else None)


def worker_app() -> Any:
    """uvicorn's factory in each worker process (WEB_CONCURRENCY > 1): the settings were checked
    by the supervisor already. uvicorn's own server runs it, with its stop-signal handlers already
    installed; they are wrapped so that the app is marked draining first, as _Server does."""
    app, asgi = _build(Settings.from_env())
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if callable(previous):
            def handler(signum: int, frame: Any, previous: Callable[[int, Any], Any] = previous) -> None:
                _mark_draining(app, signum)
                previous(signum, frame)

            signal.signal(sig, handler)
    return asgi


def web_concurrency(env: Any = None) -> int:
    raw = (os.environ if env is None else env).get("WEB_CONCURRENCY", "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise ConfigError(f"WEB_CONCURRENCY must be a whole number from 1 to 64, got {raw!r}")
    return int(raw)


def _metrics_dir() -> None:
    """PROMETHEUS_MULTIPROC_DIR for several workers: set (a temporary directory) and emptied, so
    files of an earlier run's processes do not add to this one's sums."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="langgraph-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    Path(path).mkdir(parents=True, exist_ok=True)
    for entry in Path(path).iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _serve_metrics(settings: Settings) -> bool:
    """METRICS_PORT: /metrics on a port of its own (the API port then serves none); with several
    workers the supervisor serves it, summing the workers' files as their own /metrics would."""
    port = settings.server.metrics_port
    if port is None:
        return True
    import prometheus_client
    from prometheus_client import multiprocess

    registry = prometheus_client.REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        prometheus_client.start_http_server(port, addr=settings.server.host, registry=registry)
    except OSError as exc:
        print(f"service: error: METRICS_PORT {port}: {exc.strerror}", file=sys.stderr)
        return False
    log.info("metrics_listening", port=port)
    return True


def main() -> int:
    try:
        settings = Settings.from_env()
        workers = web_concurrency()
    except ConfigError as exc:
        print(f"service: error: {exc}", file=sys.stderr)
        return 2
    options: dict[str, Any] = dict(
        host=settings.server.host, port=settings.server.port, log_config=None, access_log=False,
        timeout_graceful_shutdown=int(settings.server.drain_timeout) or None, lifespan="on",
        proxy_headers=True, server_header=False, loop="uvloop", http="httptools",
    )
    if workers > 1:
        _metrics_dir()
        service_logging.configure(settings.log_level)
        if not _serve_metrics(settings):
            return 2
        config = uvicorn.Config("service.__main__:worker_app", factory=True, workers=workers, **options)
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    try:
        app, asgi = _build(settings)
    except ConfigError as exc:
        print(f"service: error: {exc}", file=sys.stderr)
        return 2
    server = _Server(uvicorn.Config(asgi, **options), app)
    if not _serve_metrics(settings):
        return 2
    server.run()
    return 0 if server.started else 3


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
