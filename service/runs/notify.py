"""Wake-ups between pods: one LISTEN connection per process, and polling where it cannot listen.

``LISTEN`` needs a session of its own, so the notifier holds one connection straight to
PostgreSQL (``DATABASE_LISTEN_URL``, else ``DATABASE_URL`` unless it goes through PgBouncer in
transaction mode, where notifications would be lost). Waiters never depend on it: each waits
for a notification *or* its poll interval, whichever comes first, and the interval is short
when the notifier is not listening. So a lost connection slows wake-ups down to the poll
interval; it never loses a run.

Notifications are wake-ups, never payloads of data: at most a run id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

import psycopg

from service import db
from service.logging import get_logger
from service.runs.queue import CHANNEL_CANCEL, CHANNEL_DONE, CHANNEL_EVENTS, CHANNEL_RUNS

log = get_logger("service.runs.notify")
CHANNELS = (CHANNEL_RUNS, CHANNEL_CANCEL, CHANNEL_DONE, CHANNEL_EVENTS)


class Notifier:
    def __init__(self, conninfo: str | None, *, poll_interval: float, listen_poll_interval: float) -> None:
        self.conninfo = conninfo
        self._poll = poll_interval
        self._listen_poll = listen_poll_interval
        self.listening = False
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)
        self._callbacks: dict[str, list[Any]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def poll_interval(self) -> float:
        """How long a waiter may sleep before it looks again by itself."""
        return self._listen_poll if self.listening else self._poll

    def on(self, channel: str, callback: Any) -> None:
        """Call ``callback(payload)`` for every notification on ``channel`` (cancel requests)."""
        self._callbacks[channel].append(callback)

    async def start(self) -> None:
        if self.conninfo is None:
            log.info("notifier_polling", reason="no direct database connection for LISTEN",
                     poll_interval=self._poll)
            return
        self._task = asyncio.create_task(self._listen_forever())
        # Wait briefly for the first LISTEN so the first waits already benefit; never block start-up.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def wait(self, channel: str, key: str = "", timeout: float | None = None) -> bool:
        """Wait for a notification on ``channel`` (with payload ``key``); False after the timeout."""
        event = asyncio.Event()
        slot = self._waiters[(channel, key)]
        slot.add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout=self.poll_interval if timeout is None else timeout)
            return True
        except TimeoutError:
            return False
        finally:
            slot.discard(event)
            if not slot:
                self._waiters.pop((channel, key), None)

    def _dispatch(self, channel: str, payload: str) -> None:
        for key in {payload, ""}:
            for event in self._waiters.get((channel, key), ()):
                event.set()
        for callback in self._callbacks.get(channel, ()):
            callback(payload)

    def poke(self, channel: str, key: str = "") -> None:
        """Wake this process's own waiters (what it did itself needs no round trip)."""
        self._dispatch(channel, key)

    async def _listen_forever(self) -> None:
        assert self.conninfo is not None
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    db.with_params(self.conninfo, application_name=db.application_name("listen")),
                    autocommit=True)
            except Exception as exc:
                self.listening = False
                log.warning("notifier_connect_failed", error=db.first_line(exc)[:200], retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
                continue
            try:
                async with conn:
                    for channel in CHANNELS:
                        await conn.execute(f"LISTEN {channel}")
                    self.listening = True
                    self._ready.set()
                    delay = 0.5
                    # Whatever was notified while not listening: every waiter looks again.
                    for channel, key in list(self._waiters):
                        self._dispatch(channel, key)
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
            except asyncio.CancelledError:
                self.listening = False
                raise
            except Exception as exc:
                log.warning("notifier_connection_lost", error=db.first_line(exc)[:200])
            self.listening = False
            await asyncio.sleep(delay)
