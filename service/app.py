"""The Litestar application: ``create_app()`` assembles; the lifespan owns every resource.

One connection pool, one checkpointer and one store per process, opened at start-up and closed
at shutdown; handlers get them through dependency injection (``resources``), never globals.
The service never runs DDL: against an empty database it starts, stays not-ready and says
which schema versions are missing, and becomes ready once ``python -m migrate`` has run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.store.postgres.base import PostgresIndexConfig
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig
from psycopg_pool import AsyncConnectionPool

from service import auth as auth_config
from service import db, instrumentation, metrics, schema, thread_storage
from service.api import assistants, crons, meta, runs, threads
from service.api import store as store_api
from service.assistants import AssistantStore, MemoryAssistantStore, PostgresAssistantStore
from service.auth.gate import Gate
from service.checkpointer import PooledPostgresSaver
from service.errors import EXCEPTION_HANDLERS
from service.graphs import GraphEntry, GraphSource, bind_graphs, import_graphs
from service.logging import get_logger
from service.middleware import RequestLogMiddleware
from service.pool import Pool
from service.runs.crons import CronScheduler, CronStore
from service.runs.events import EventLog
from service.runs.local import LocalRunManager
from service.runs.manager import QueueRunManager
from service.runs.notify import Notifier
from service.runs.queue import CHANNEL_CRONS, RunQueue
from service.runs.webhooks import WebhookSender, validate_webhook
from service.settings import ConfigError, CorsSettings, Settings
from service.store import config as store_config
from service.threads import MemoryThreadStore, PostgresThreadStore, ThreadStore

log = get_logger("service")
VERSION = "0.1.0"


@dataclass
class Readiness:
    """What /ready reports: database reachable, schema current or newer, not draining."""

    pool: AsyncConnectionPool[Any] | None
    draining: bool = False
    ttl: float = 1.0
    components: tuple[schema.Component, ...] = schema.COMPONENTS
    _cached: tuple[float, bool, dict[str, Any]] | None = None
    _last_ready: bool | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def check(self) -> tuple[bool, dict[str, Any]]:
        if self.draining:
            metrics.READY.set(0)
            return False, {"reason": "draining"}
        if self.pool is None:
            return True, {"checkpointer": "memory"}
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.ttl:
                return self._cached[1], self._cached[2]
            ready, detail = await self._probe()
            self._cached = (now, ready, detail)
            metrics.READY.set(1 if ready else 0)
            metrics.set_schema(detail.get("versions"), schema.required_versions(self.components))
        if ready != self._last_ready:
            self._last_ready = ready
            if ready:
                log.info("service_ready", versions=detail.get("versions"))
            else:
                log.warning("service_not_ready", **detail)
        return ready, detail

    async def _probe(self) -> tuple[bool, dict[str, Any]]:
        assert self.pool is not None
        try:
            async with self.pool.connection(timeout=2) as conn:
                versions = await schema.aread_versions(conn, self.components)
                gaps = schema.missing(versions, self.components)
                vector = None
                if schema.VECTOR_COMPONENT in gaps:
                    cur = await conn.execute(schema.VECTOR_AVAILABLE_SQL)
                    vector = await cur.fetchone()
        except Exception as exc:
            return False, {"reason": "database unreachable", "error": db.first_line(exc)[:200]}
        required = schema.required_versions(self.components)
        if vector is not None and not (vector["installed"] or vector["available"]):
            return False, {"reason": "pgvector missing", "detail": schema.NO_PGVECTOR, "versions": versions,
                           "required": required}
        if gaps:
            return False, {"reason": "schema behind", "missing": schema.describe_missing(gaps),
                           "versions": versions, "required": required}
        return True, {"versions": versions, "required": required}


@dataclass
class Resources:
    settings: Settings
    pool: AsyncConnectionPool[Any] | None
    checkpointer: BaseCheckpointSaver[Any]
    store: BaseStore
    threads: ThreadStore
    graphs: dict[str, GraphEntry]
    runs: LocalRunManager | QueueRunManager
    readiness: Readiness
    assistants: AssistantStore
    # None with CHECKPOINTER=memory (crons live in PostgreSQL).
    crons: CronStore | None = None
    webhooks: WebhookSender | None = None


@asynccontextmanager
async def open_resources(settings: Settings, sources: dict[str, GraphSource] | None = None,
                         index: PostgresIndexConfig | None = None) -> AsyncIterator[Resources]:
    pool: AsyncConnectionPool[Any] | None = None
    checkpointer: BaseCheckpointSaver[Any]
    store: BaseStore
    thread_store: ThreadStore
    sweeper: AsyncPostgresStore | None = None
    if index is None:
        index = store_config.index_config(settings.store)
    if settings.checkpointer == "memory":
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.store.memory import InMemoryStore

        log.warning("memory_checkpointer", detail="CHECKPOINTER=memory: state lives in this process only and is "
                    "lost on restart; for local experiments and benchmarks, never production")
        checkpointer, store = InMemorySaver(), InMemoryStore(index=index)
        thread_store = MemoryThreadStore(checkpointer)
    else:
        assert settings.database is not None
        db.use_fast_json()
        p = settings.pool
        pool_class = instrumentation.InstrumentedPool if settings.metrics_enabled else Pool
        pool = pool_class(
            db.pool_conninfo(settings.database.conninfo, pgbouncer=p.pgbouncer,
                             statement_timeout=p.statement_timeout, connect_timeout=p.connect_timeout),
            min_size=p.min_size, max_size=p.max_size, timeout=p.timeout, max_lifetime=p.max_lifetime,
            max_idle=p.max_idle, kwargs=db.pool_kwargs(pgbouncer=p.pgbouncer),
            configure=_set_statement_timeout(p.statement_timeout) if p.pgbouncer else None,
            check=db.check_if_idle, open=False, name="langgraph",
            connection_class=db.timed_connection_class(p.io_timeout, check_timeout=p.connect_timeout),
        )
        await pool.open(wait=False)
        store_class = instrumentation.InstrumentedStore if settings.metrics_enabled else AsyncPostgresStore
        pg_store = store_class(pool, index=index, ttl=store_config.ttl_config(settings.store))
        store = pg_store
        if settings.store.ttl is not None and settings.store.ttl.sweep_interval_minutes is not None:
            sweeper = pg_store
        if settings.metrics_enabled:
            checkpointer = instrumentation.InstrumentedSaver(pool)
            thread_store = instrumentation.InstrumentedThreadStore(pool, db.application_name("pod"))
        else:
            checkpointer = PooledPostgresSaver(pool)
            thread_store = PostgresThreadStore(pool, db.application_name("pod"))
        log.info("database_pool_opened", database=db.describe(settings.database.conninfo),
                 min_size=p.min_size, max_size=p.max_size, pgbouncer=p.pgbouncer)
    graphs = await bind_graphs(import_graphs(settings.graphs) if sources is None else sources, checkpointer, store)
    assistant_store: AssistantStore = (MemoryAssistantStore(graphs) if pool is None
                                       else PostgresAssistantStore(pool, graphs))
    metrics.precreate(graphs)
    metrics.set_build_info(VERSION)
    metrics.set_schema(None, schema.required_versions(schema.components(settings.store.index)))
    if pool is None:
        metrics.READY.set(1)
    server = settings.server
    webhooks = WebhookSender(settings.webhooks)
    run_manager: LocalRunManager | QueueRunManager
    crons: CronStore | None = None
    scheduler: CronScheduler | None = None
    if pool is None:
        run_manager = LocalRunManager(thread_store, graphs, queue_timeout=server.run_queue_timeout,
                                      assistants=assistant_store)
    else:
        notifier = Notifier(settings.listen_conninfo, poll_interval=server.poll_interval,
                            listen_poll_interval=server.listen_poll_interval)
        run_manager = QueueRunManager(
            RunQueue(pool, f"{socket.gethostname()}/{os.getpid()}", server.run_lease_seconds),
            EventLog(pool, notifier), notifier, thread_store, graphs, assistant_store,
            slots=server.jobs_per_worker, lease=server.run_lease_seconds,
            sample_interval=server.queue_sample_seconds, events_ttl=server.run_events_ttl_seconds,
            webhook_check=functools.partial(validate_webhook, policy=settings.webhooks),
            webhook_send=webhooks.deliver, flush_each_step=server.checkpoint_flush_each_step,
            answer_within=settings.pool.io_timeout or None)
        if settings.crons.enabled:
            scheduler = CronScheduler(pool, run_manager.submit_in, max_sleep=settings.crons.max_sleep)
            wake = scheduler.wake
            notifier.on(CHANNEL_CRONS, lambda _payload: wake())
        crons = CronStore(pool, on_change=scheduler.wake if scheduler is not None else None)
    resources = Resources(settings, pool, checkpointer, store, thread_store, graphs, run_manager,
                          Readiness(pool, components=schema.components(settings.store.index)), assistant_store,
                          crons=crons, webhooks=webhooks)
    if sweeper is not None:  # expired items are deleted by every pod (plain DML, idempotent)
        await sweeper.start_ttl_sweeper()
    # Threads' own TTLs always; idle threads too when checkpointer.ttl sets default_ttl.
    thread_sweeper = (asyncio.create_task(
        thread_storage.sweep_threads(pool, checkpointer, settings.checkpointer_ttl), name="thread-ttl-sweeper")
        if pool is not None else None)
    try:
        if isinstance(run_manager, QueueRunManager):
            await run_manager.start()
        if scheduler is not None:
            scheduler.start()
        async with (instrumentation.pool_gauges(pool) if pool is not None and settings.metrics_enabled
                    else contextlib.nullcontext()):
            yield resources
    finally:
        resources.readiness.draining = True
        if scheduler is not None:
            await scheduler.stop()  # no new firings; one in flight rolls back and another pod fires it
        left = await run_manager.drain(server.drain_timeout)
        if left:
            log.warning("drain_timeout", runs_still_running=left)
        await webhooks.close(timeout=settings.webhooks.timeout)
        if sweeper is not None:
            await sweeper.stop_ttl_sweeper(timeout=5)
        if thread_sweeper is not None:
            thread_sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await thread_sweeper
        if pool is not None:
            await pool.close()
            log.info("database_pool_closed")


def _set_statement_timeout(seconds: float) -> Any:
    async def configure(conn: Any) -> None:
        if seconds > 0:
            await conn.execute(f"SET statement_timeout = {int(seconds * 1000)}")

    return configure


def _cors(cors: CorsSettings | None) -> CORSConfig | None:
    if cors is None:
        return None
    return CORSConfig(allow_origins=list(cors.allow_origins), allow_methods=list(cors.allow_methods),  # type: ignore[arg-type]
                      allow_headers=list(cors.allow_headers), allow_credentials=cors.allow_credentials,
                      allow_origin_regex=cors.allow_origin_regex, expose_headers=list(cors.expose_headers),
                      max_age=cors.max_age)


def create_app(settings: Settings) -> Litestar:
    """Assemble the application: routes, plugins, handlers, dependencies. No side effects."""

    sources = import_graphs(settings.graphs)  # a graph that does not import stops the start (ConfigError)
    index = store_config.index_config(settings.store)  # so does an embedding function that does not
    gate = Gate(auth_config.from_settings(settings), settings.server.api_keys)  # so does an auth.path that does not

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            async with open_resources(settings, sources, index) as resources:
                app.state.resources = resources
                await resources.readiness.check()  # logs what is missing, if anything
                yield
        except ConfigError as exc:  # e.g. a graph factory that fails: one line for the operator (service.asgi)
            app.state.startup_error = str(exc)
            raise

    def provide_resources(state: State) -> Resources:
        return state.resources  # type: ignore[no-any-return]

    prometheus = PrometheusConfig(app_name="langgraph-pg", prefix="litestar", group_path=True,
                                  exclude=["/metrics", "/ok", "/ready"])
    # METRICS_PORT: /metrics is served on its own port (service.__main__), not beside the API.
    meta_routes = [r for r in meta.ROUTES if settings.server.metrics_port is None or r is not meta.MetricsController]
    handlers: list[Any] = [*meta_routes, *assistants.ROUTES, *threads.ROUTES, *runs.ROUTES, *crons.ROUTES,
                           *store_api.ROUTES]
    config = AppConfig(
        route_handlers=handlers,
        dependencies={"resources": Provide(provide_resources, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[RequestLogMiddleware, prometheus.middleware] if settings.metrics_enabled
        else [RequestLogMiddleware],
        guards=[gate],
        lifespan=[lifespan],
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=OpenAPIConfig(title="langgraph-pg", version=VERSION, path="/docs"),
        cors_config=_cors(settings.cors),
        debug=False,
    )
    app = Litestar.from_config(config)
    app.state.gate = gate  # the same auth for the custom routes (service.asgi), when asked for
    return app
