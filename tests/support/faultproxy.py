"""A TCP proxy that can cut a real connection: pass, refuse, blackhole or reset.

It runs its own event loop in a thread, so it behaves like a network element independent of the
code under test, whichever loop that code runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit


class Mode(Enum):
    PASS = "pass"  # forward both ways
    REFUSE = "refuse"  # nothing listens: connects fail with ECONNREFUSED; open connections are reset
    BLACKHOLE = "blackhole"  # connects succeed, bytes go nowhere, nothing ever comes back
    RESET = "reset"  # every connection, open or new, is torn down with a TCP RST


Upstream = tuple[str, int] | str  # (host, port), or the path of a Unix socket


class FaultProxy:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.mode = Mode.PASS
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[_Link] = set()

    # -- control, from the test's thread -------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._run(self._listen)
        return self

    def set_mode(self, mode: Mode) -> None:
        self._run(lambda: self._switch(mode))

    def stop(self) -> None:
        self._run(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _run(self, make: Callable[[], Awaitable[Any]]) -> None:
        asyncio.run_coroutine_threadsafe(_call(make), self._loop).result(timeout=5)

    # -- inside the proxy's loop --------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _switch(self, mode: Mode) -> None:
        self.mode = mode
        if mode in (Mode.REFUSE, Mode.RESET):
            for link in list(self._connections):
                link.reset()
        if mode is Mode.REFUSE and self._server is not None:
            self._server.close()
            self._server = None
        elif mode is not Mode.REFUSE and self._server is None:
            await self._listen()

    async def _shutdown(self) -> None:
        await self._switch(Mode.REFUSE)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(self, writer)
        self._connections.add(link)
        try:
            if self.mode is Mode.RESET:
                link.reset()
                return
            if self.mode is Mode.BLACKHOLE:
                await _drain_forever(reader)
                return
            try:
                if isinstance(self.upstream, str):
                    up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
                else:
                    up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                link.reset()
                return
            link.upstream = up_writer
            await asyncio.gather(link.pump(reader, up_writer), link.pump(up_reader, writer))
        finally:
            self._connections.discard(link)
            link.close()


class _Link:
    """One client connection and, once made, its upstream connection."""

    def __init__(self, proxy: FaultProxy, client: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None

    async def pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await source.read(65536):
                if self.proxy.mode is Mode.BLACKHOLE:
                    continue  # swallowed: the peer waits for an answer that never comes
                sink.write(data)
                await sink.drain()
        self.close()

    def reset(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is None or writer.transport.is_closing():
                continue
            sock = writer.transport.get_extra_info("socket")
            if sock is not None and sock.family != socket.AF_UNIX:
                # Linger 0 makes close() send RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None and not writer.transport.is_closing():
                writer.transport.close()


async def _drain_forever(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while await reader.read(65536):
            pass


async def _call(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()


# -- where the proxy sits for each service ----------------------------------------------------


def postgres_upstream(url: str) -> Upstream:
    """The address a Postgres URL points at: TCP host/port, or the server's Unix socket file."""
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    port = parts.port or 5432
    if socket_dir.startswith("/"):
        return f"{socket_dir}/.s.PGSQL.{port}"
    return (parts.hostname or "127.0.0.1", port)


def postgres_url_via(url: str, proxy: FaultProxy) -> str:
    """The same database, reached through the proxy."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    if parts.password:
        user = f"{user}:{parts.password}"
    query = "&".join(f"{k}={v[0]}" for k, v in parse_qs(parts.query).items() if k != "host")
    return urlunsplit(("postgresql", f"{user}@127.0.0.1:{proxy.port}", parts.path, query, ""))


def redis_upstream(url: str) -> Upstream:
    parts = urlsplit(url)
    return (parts.hostname or "127.0.0.1", parts.port or 6379)


def redis_url_via(url: str, proxy: FaultProxy) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"127.0.0.1:{proxy.port}", parts.path, parts.query, ""))
