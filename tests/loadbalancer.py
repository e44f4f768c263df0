"""A TCP load balancer on loopback, as a Kubernetes Service with readiness probes is.

It hands each new connection to the next backend, in turn, among those whose
gRPC health (``grpc.health.v1``, the MediaStreamService) is SERVING: a
gateway that drains goes NOT_SERVING and stops getting new connections, as a
pod whose readiness probe fails leaves its Service's endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE = "voipbin.mediastream.v1.MediaStreamService"


class LoadBalancer:
    """Round-robin TCP proxy over the ready backends."""

    def __init__(self, backends: list[str], probe_interval: float = 0.1) -> None:
        self.backends = backends
        self.ready: set[str] = set()
        self.connections: dict[str, int] = dict.fromkeys(backends, 0)
        self._interval = probe_interval
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._probe: asyncio.Task[None] | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.address = ""

    async def start(self) -> str:
        """Listen on a free loopback port; return ``host:port``."""
        await self._check_all()
        self._probe = asyncio.create_task(self._probe_forever())
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        """Close the listener and every proxied connection."""
        if self._probe is not None:
            self._probe.cancel()
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def drop_connections(self) -> None:
        """Cut every connection through the balancer (a network blip)."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._check_all()

    async def _check_all(self) -> None:
        results = await asyncio.gather(*(self._serving(b) for b in self.backends))
        self.ready = {b for b, ok in zip(self.backends, results, strict=True) if ok}

    @staticmethod
    async def _serving(backend: str) -> bool:
        try:
            async with grpc.aio.insecure_channel(backend) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=SERVICE), timeout=1
                )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def _pick(self) -> str | None:
        ready = [b for b in self.backends if b in self.ready]
        if not ready:
            return None
        return ready[next(self._turn) % len(ready)]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = self._pick()
        if backend is None:
            writer.transport.abort()
            return
        host, _, port = backend.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.transport.abort()
            return
        self.connections[backend] += 1
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)
        for task in pipes:
            task.cancel()
            self._pipes.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
