"""Bot servers on loopback for the gateway to dial, and the API to make it dial them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import WSMsgType, web

from mediastream._proto import external_media_pb2 as em
from mediastream._proto import external_media_pb2_grpc as em_grpc
from tests.harness import Harness

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def http_server(
    routes: dict[str, Handler], host: str = "127.0.0.1", **site: Any
) -> AsyncIterator[str]:
    """An HTTP server on a free port of `host` with `routes` (GET and POST); yields host:port."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, 0, **site).start()
    try:
        yield f"{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class BotConnection:
    """One connection the gateway made to a bot: what came in, and a way to answer."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.received: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def next(self, timeout: float = 3.0) -> Any:
        """The next message: a dict for JSON text, bytes for binary, ("close", code) at the end."""
        return await asyncio.wait_for(self.received.get(), timeout)

    async def next_event(self, event: str, timeout: float = 3.0) -> dict[str, Any]:
        """The next Twilio message of `event`, skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.received.get()
                if isinstance(message, dict) and message.get("event") == event:
                    return message

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))


class Bot:
    """A WebSocket server that accepts the gateway's connections and records them."""

    def __init__(self, *, read: bool = True) -> None:
        self.connections: asyncio.Queue[BotConnection] = asyncio.Queue()
        self.read = read

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = BotConnection(ws, request)
        await self.connections.put(conn)
        if not self.read:
            await asyncio.sleep(3600)  # never read: pings go unanswered, TCP fills up
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await conn.received.put(json.loads(msg.data))
            elif msg.type is WSMsgType.BINARY:
                await conn.received.put(msg.data)
        await conn.received.put(("close", ws.close_code))
        conn.closed.set()
        return ws

    async def accepted(self, timeout: float = 3.0) -> BotConnection:
        return await asyncio.wait_for(self.connections.get(), timeout)


def api(channel: grpc.aio.Channel) -> em_grpc.ExternalMediaServiceStub:
    return em_grpc.ExternalMediaServiceStub(channel)


async def start_dial_out(
    harness: Harness, **request: Any
) -> tuple[grpc.aio.Channel, em_grpc.ExternalMediaServiceStub, em.ExternalMedia]:
    channel = grpc.aio.insecure_channel(harness.grpc)
    stub = api(channel)
    started = await stub.StartExternalMedia(em.StartExternalMediaRequest(**request))
    return channel, stub, started.external_media


def metric(name: str, **labels: str) -> float:
    from mediastream import metrics

    value = metrics.REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def get(stub: em_grpc.ExternalMediaServiceStub, media_id: str) -> em.ExternalMedia:
    reply = await stub.GetExternalMedia(em.GetExternalMediaRequest(id=media_id))
    return reply.external_media


async def terminated(
    stub: em_grpc.ExternalMediaServiceStub, media_id: str, timeout: float = 3.0
) -> em.ExternalMedia:
    """The record once TERMINATED (polled: the end is the runner's, not the caller's)."""
    async with asyncio.timeout(timeout):
        while True:
            media = await get(stub, media_id)
            if media.status == em.EXTERNAL_MEDIA_STATUS_TERMINATED:
                return media
            await asyncio.sleep(0.02)
