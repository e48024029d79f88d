"""A small TCP proxy in front of PostgreSQL, run in a background thread of the test process.

* ``gate``: clients connect and wait (no bytes forwarded) until :meth:`TcpProxy.release`; then
  every waiting client is connected upstream at the same moment. This is how races are started:
  interpreter start spreads process launches over seconds, the gate makes them arrive together.
* ``stall``: stop forwarding bytes on every open connection (a stalled network), until ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg.conninfo import conninfo_to_dict

from service.db import with_params


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, gated: bool = False) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._open = asyncio.Event()
        self._flowing = asyncio.Event()
        self._pending = 0
        self._server: asyncio.AbstractServer | None = None
        self._gated = gated

    # -- control (called from the test thread) -------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    @property
    def pending(self) -> int:
        """Clients connected and waiting at the gate."""
        return self._pending

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def conninfo(self, conninfo: str) -> str:
        """``conninfo`` pointed at this proxy instead of the server."""
        return with_params(conninfo, host="127.0.0.1", port=str(self.port))

    # -- the proxy itself (runs in the background thread) ----------------------------------------
    async def _start(self) -> None:
        if not self._gated:
            self._open.set()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        buffered = await self._wait_at_gate(client_r)
        if buffered is None:  # the client gave up while waiting
            client_w.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        if buffered:
            up_w.write(bytes(buffered))
        await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w),
                             return_exceptions=True)

    async def _wait_at_gate(self, client_r: asyncio.StreamReader) -> bytearray | None:
        """Hold the client until the gate opens, keeping what it sends; None if it hangs up."""
        buffered = bytearray()
        if self._open.is_set():
            return buffered
        self._pending += 1
        opened = asyncio.ensure_future(self._open.wait())
        try:
            while not opened.done():
                read = asyncio.ensure_future(client_r.read(65536))
                done, _ = await asyncio.wait({opened, read}, return_when=asyncio.FIRST_COMPLETED)
                if read in done:
                    data = read.result()
                    if not data:
                        opened.cancel()
                        return None
                    buffered += data
                else:
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await read
                    if read.done() and not read.cancelled():
                        buffered += read.result()
            return buffered
        finally:
            self._pending -= 1

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@contextmanager
def proxy_for(conninfo: str, *, gated: bool = False) -> Iterator[TcpProxy]:
    params = conninfo_to_dict(conninfo)
    proxy = TcpProxy(str(params.get("host", "127.0.0.1")), int(params.get("port", 5432)), gated=gated).start()
    try:
        yield proxy
    finally:
        proxy.close()
