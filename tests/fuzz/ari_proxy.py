"""A tiny ARI on loopback that answers garbage on demand, in front of the faithful emulator.

The emulator never sends a malformed answer, so the malformed-answer tests put this proxy
between the gateway and it: REST requests, the events WebSocket and chan_websocket's media
WebSockets are passed through unchanged, except that

* a REST request matching a `Garble` rule gets the rule's status and body instead, either
  without reaching the emulator (`forward=False`) or after it did the work (`forward=True`:
  Asterisk created the object but the gateway cannot read the answer);
* `inject` sends any text frame to the gateway on every events WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

import aiohttp
from aiohttp import web


@dataclass
class Garble:
    """Answer requests whose ``METHOD /path`` matches `pattern` with `status` and `body`."""

    pattern: str
    status: int
    body: bytes
    forward: bool = False
    content_type: str = "application/json"
    hits: int = 0


class AriProxy:
    """Pass-through ARI proxy to `upstream` (``http://host:port``) with garbling."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Garble] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._event_sockets: set[web.WebSocketResponse] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.events_connections = 0

    async def start(self) -> str:
        """Listen on a free loopback port; return the ARI base URL."""
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_get("/ari/events", self._events)
        app.router.add_get("/media/{connection_id}", self._media)
        app.router.add_route("*", "/ari/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/ari"

    async def close(self) -> None:
        for ws in list(self._event_sockets):
            await ws.close()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def garble(self, rule: Garble) -> Garble:
        self.rules.append(rule)
        return rule

    async def inject(self, text: str) -> None:
        """Send `text` as an event to every connected events WebSocket."""
        assert self._event_sockets, "no events WebSocket connected"
        for ws in list(self._event_sockets):
            await ws.send_str(text)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        line = f"{request.method} {request.path}"
        rule = next((r for r in self.rules if re.fullmatch(r.pattern, line)), None)
        if rule is not None and not rule.forward:
            rule.hits += 1
            return web.Response(status=rule.status, body=rule.body, content_type=rule.content_type)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type")
        }
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
        ) as upstream:
            body = await upstream.read()
            status, content_type = upstream.status, upstream.content_type
        if rule is not None:
            rule.hits += 1
            return web.Response(status=rule.status, body=rule.body, content_type=rule.content_type)
        return web.Response(status=status, body=body, content_type=content_type)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        return await self._pipe(request, "/ari/events", protocols=())

    async def _media(self, request: web.Request) -> web.StreamResponse:
        return await self._pipe(request, request.path, protocols=("media",))

    async def _pipe(
        self, request: web.Request, path: str, protocols: tuple[str, ...]
    ) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        try:
            upstream = await self._session.ws_connect(
                self.upstream + path + ("?" + request.query_string if request.query_string else ""),
                headers=headers,
                protocols=protocols,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text=exc.message)
        ws = web.WebSocketResponse(protocols=protocols)
        await ws.prepare(request)
        events = path == "/ari/events"
        if events:
            self.events_connections += 1
            self._event_sockets.add(ws)

        async def down() -> None:
            async for msg in upstream:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
            await ws.close(code=upstream.close_code or 1000)

        task = asyncio.create_task(down())
        self._tasks.add(task)
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    await upstream.send_str(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    await upstream.send_bytes(msg.data)
        finally:
            self._event_sockets.discard(ws)
            await upstream.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
            self._tasks.discard(task)
        return ws
