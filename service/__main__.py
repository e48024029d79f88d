"""``python -m service``: serve the LangGraph graphs over HTTP with uvicorn.

Settings come from the environment (see README, "The service"); a bad value stops the process
with one line. SIGTERM: /ready fails at once, runs in flight finish (up to DRAIN_TIMEOUT), then
the pool closes.
"""

from __future__ import annotations

import os
import sys
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
        resources = getattr(self._app.state, "resources", None)
        if resources is not None and not resources.readiness.draining:
            resources.readiness.draining = True
            log.info("draining", signal=sig)
        super().handle_exit(sig, frame)


def main() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"service: error: {exc}", file=sys.stderr)
        return 2
    service_logging.configure(settings.log_level)
    # langgraph.json's ``env``: set for the graphs' own code, never over the process environment.
    os.environ.update(settings.extra_env)
    if settings.config_path:  # graphs named as modules beside langgraph.json import from its directory
        sys.path.insert(0, os.path.dirname(os.path.abspath(settings.config_path)))
    from service.app import create_app
    from service.asgi import create_asgi

    try:
        app = create_app(settings)
        asgi = create_asgi(app, settings.http_app, app.state.gate if settings.http_app_auth else None)
    except ConfigError as exc:
        print(f"service: error: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        asgi, host=settings.server.host, port=settings.server.port, log_config=None, access_log=False,
        timeout_graceful_shutdown=int(settings.server.drain_timeout) or None, lifespan="on",
        proxy_headers=True, server_header=False,
    )
    server = _Server(config, app)
    if settings.server.metrics_port is not None:
        # The same registry the API port would serve, on a port the API's callers need not reach.
        import prometheus_client

        try:
            prometheus_client.start_http_server(settings.server.metrics_port, addr=settings.server.host)
        except OSError as exc:
            print(f"service: error: METRICS_PORT {settings.server.metrics_port}: {exc.strerror}", file=sys.stderr)
            return 2
        log.info("metrics_listening", port=settings.server.metrics_port)
    server.run()
    return 0 if server.started else 3


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
