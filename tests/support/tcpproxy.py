"""A small TCP proxy in front of PostgreSQL, run in a background thread of the test process.

* ``gate``: clients connect and authenticate through the proxy, then their first statement (a
  Query or Parse message) is held until :meth:`TcpProxy.release`; then every held statement
  reaches the server at the same moment. This is how races are started: interpreter start and
  authentication spread process launches over seconds, the gate makes their first statements
  arrive together. The gated connection string turns TLS off so the protocol can be read.
* ``stall``: stop forwarding bytes on every open connection (a stalled network), until ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg.conninfo import conninfo_to_dict

from service.db import with_params

# Untyped messages a client may send first (PostgreSQL frontend/backend protocol, section 55.7).
_SSL_REQUEST, _GSSENC_REQUEST, _CANCEL_REQUEST = 80877103, 80877104, 80877102
_STATEMENT_MESSAGES = (b"Q", b"P")  # simple Query, extended-protocol Parse


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
        """Clients holding their first statement at the gate."""
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
        """``conninfo`` pointed at this proxy instead of the server (in the clear when gated)."""
        if self._gated:
            conninfo = with_params(conninfo, sslmode="disable", gssencmode="disable")
        return with_params(conninfo, host="127.0.0.1", port=str(self.port))

    # -- the proxy itself (runs in the background thread) ----------------------------------------
    async def _start(self) -> None:
        if not self._gated:
            self._open.set()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._from_client(client_r, up_w), self._pipe(up_r, client_w),
                             return_exceptions=True)

    async def _from_client(self, client_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:
        if not self._open.is_set():
            try:
                held = await self._forward_until_first_statement(client_r, up_w)
            except (asyncio.IncompleteReadError, ConnectionError):
                up_w.close()
                return
            if held:
                self._pending += 1
                try:
                    await self._open.wait()
                finally:
                    self._pending -= 1
                up_w.write(held)
        await self._pipe(client_r, up_w)

    @staticmethod
    async def _forward_until_first_statement(client_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> bytes:
        """Pass the startup and authentication messages on; return the first statement, unsent.

        Returns empty bytes for a cancel request, which carries no statement.
        """
        while True:
            head = await client_r.readexactly(8)
            length, code = struct.unpack("!ii", head)
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):  # refused: the gated conninfo disables both
                up_w.write(head)
                continue
            up_w.write(head + await client_r.readexactly(length - 8))
            if code == _CANCEL_REQUEST:
                return b""
            break
        while True:
            head = await client_r.readexactly(5)
            message = head + await client_r.readexactly(int.from_bytes(head[1:], "big") - 4)
            if head[:1] in _STATEMENT_MESSAGES:
                return message
            up_w.write(message)
            await up_w.drain()

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
