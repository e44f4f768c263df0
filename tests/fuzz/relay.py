"""A TCP relay on loopback that can go silent: a client whose network vanished.

`freeze()` stops moving bytes in both directions without closing anything, as
a dead NAT, a pulled cable or a suspended laptop does: the gateway's socket
stays open and nothing it sends is ever answered.
"""

from __future__ import annotations

import asyncio
import contextlib


class FreezableRelay:
    """Forwards every connection made to it to `upstream` until frozen."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.forwarded = 0

    async def start(self) -> str:
        """Listen on a free loopback port; return ``host:port``."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    def freeze(self) -> None:
        """Stop forwarding (and reading) in both directions; keep every socket open."""
        self._flowing.clear()

    async def close(self) -> None:
        """Close every connection and stop listening."""
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers += (writer, up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        # A small read size and no read-ahead while frozen: the kernel buffers fill
        # and TCP advertises a zero window, as with a peer that stopped reading.
        src._limit = 4096  # type: ignore[attr-defined]
        while True:
            await self._flowing.wait()
            data = await src.read(4096)
            if not data:
                dst.close()
                return
            if not self._flowing.is_set():
                await self._flowing.wait()
            dst.write(data)
            self.forwarded += len(data)
            await dst.drain()
