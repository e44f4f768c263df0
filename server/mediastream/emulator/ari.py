"""ARI over HTTP: REST routes, authentication, the events websocket, ``/media``.

Responses copy Asterisk 23.4.1 byte for byte where the recordings show them
(``ari_errors.json``): compact JSON bodies, ``Cache-Control: no-cache, no-store``,
``{"message":"..."}`` errors with Asterisk's reason phrases, 401 with
``WWW-Authenticate: Basic realm="Asterisk REST Interface"``, 404 ``Resource not
found`` for unknown paths and 405 ``Invalid method`` with an ``Allow`` header.

Routing works like Asterisk's path tree: a literal segment (``externalMedia``)
wins over a ``{placeholder}``; a known path with the wrong method is 405.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from mediastream.emulator import events as ev
from mediastream.emulator.bridge import Bridge
from mediastream.emulator.errors import AriError, internal_error
from mediastream.emulator.model import Channel, ari_timestamp
from mediastream.emulator.pbx import Pbx

__all__ = ["AriServer"]

log = logging.getLogger(__name__)

_COMMON_HEADERS = {"Cache-Control": "no-cache, no-store"}
_REALM = 'Basic realm="Asterisk REST Interface"'
_SERVER = "Asterisk/23.4.1"


def _html_error(status: int, title: str, text: str) -> str:
    return (
        '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\r\n'
        f"<html><head>\r\n<title>{status} {title}</title>\r\n</head><body>\r\n"
        f"<h1>{title}</h1>\r\n<p>{text}</p>\r\n<hr />\r\n"
        f"<address>{_SERVER}</address>\r\n</body></html>\r\n"
    )


def _json_response(
    status: int, body: Any, *, reason: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    all_headers = dict(_COMMON_HEADERS)
    if headers:
        all_headers.update(headers)
    text = json.dumps(body, separators=(",", ":"))
    return web.Response(
        status=status,
        reason=reason,
        body=text.encode(),
        headers=all_headers,
        content_type="application/json",
    )


def _error_response(error: AriError, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json_response(
        error.status, {error.key: error.message}, reason=error.reason, headers=headers
    )


def _no_content() -> web.Response:
    return web.Response(status=204, headers=_COMMON_HEADERS)


@dataclass
class AriRequest:
    """One parsed REST request.

    Attributes:
        params: Query-string parameters merged with those of a JSON or form body.
        path: Values of the ``{placeholders}`` of the matched route.
        variables: The ``variables`` object of a JSON body.
    """

    params: dict[str, str]
    path: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)


Handler = Callable[[AriRequest], Awaitable[web.StreamResponse]]


class _Node:
    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.placeholder: tuple[str, _Node] | None = None
        self.methods: dict[str, Handler] = {}


class _Router:
    """Asterisk's REST path tree."""

    def __init__(self) -> None:
        self.root = _Node()

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        node = self.root
        for segment in pattern.strip("/").split("/"):
            if segment.startswith("{"):
                name = segment[1:-1]
                if node.placeholder is None:
                    node.placeholder = (name, _Node())
                node = node.placeholder[1]
            else:
                node = node.literal.setdefault(segment, _Node())
        node.methods[method] = handler

    def match(self, path: str) -> tuple[_Node, dict[str, str]] | None:
        node = self.root
        values: dict[str, str] = {}
        for segment in path.strip("/").split("/"):
            if segment in node.literal:
                node = node.literal[segment]
            elif node.placeholder is not None and segment:
                name, node = node.placeholder
                values[name] = segment
            else:
                return None
        return (node, values) if node.methods else None


class _WsSink:
    """An events websocket as seen by the event bus: an ordered outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    def send(self, text: str) -> None:
        self.queue.put_nowait(text)

    async def run(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                text = await self.queue.get()
                if text is None:
                    return
                await self.ws.send_str(text)


class AriServer:
    """The HTTP side of the emulator, bound to one :class:`Pbx`."""

    def __init__(self, pbx: Pbx, username: str, password: str) -> None:
        """Create the routes."""
        self.pbx = pbx
        self.username = username
        self.password = password
        self.app = web.Application()
        self.app.router.add_get("/ari/events", self._events)
        self.app.router.add_route("*", "/ari/{tail:.*}", self._rest)
        self.app.router.add_get("/media/{connection_id}", self._media)
        self._event_sockets: set[web.WebSocketResponse] = set()
        self._sinks: set[_WsSink] = set()
        self._playbacks: dict[str, dict[str, Any]] = {}
        r = self._router = _Router()
        r.add("GET", "/asterisk/ping", self._ping)
        r.add("GET", "/asterisk/info", self._info)
        r.add("GET", "/channels", self._list_channels)
        r.add("POST", "/channels", self._originate)
        r.add("POST", "/channels/externalMedia", self._external_media)
        r.add("GET", "/channels/{channelId}", self._get_channel)
        r.add("POST", "/channels/{channelId}", self._originate)
        r.add("DELETE", "/channels/{channelId}", self._delete_channel)
        r.add("POST", "/channels/{channelId}/answer", self._answer)
        r.add("POST", "/channels/{channelId}/snoop", self._snoop)
        r.add("POST", "/channels/{channelId}/snoop/{snoopId}", self._snoop)
        r.add("POST", "/channels/{channelId}/dtmf", self._dtmf)
        r.add("POST", "/channels/{channelId}/silence", self._start_silence)
        r.add("DELETE", "/channels/{channelId}/silence", self._stop_silence)
        r.add("POST", "/channels/{channelId}/play", self._play)
        r.add("POST", "/channels/{channelId}/play/{playbackId}", self._play)
        r.add("GET", "/bridges", self._list_bridges)
        r.add("POST", "/bridges", self._create_bridge)
        r.add("GET", "/bridges/{bridgeId}", self._get_bridge)
        r.add("POST", "/bridges/{bridgeId}", self._create_bridge)
        r.add("DELETE", "/bridges/{bridgeId}", self._delete_bridge)
        r.add("POST", "/bridges/{bridgeId}/addChannel", self._add_channel)
        r.add("POST", "/bridges/{bridgeId}/removeChannel", self._remove_channel)
        r.add("GET", "/applications", self._list_applications)
        r.add("GET", "/applications/{applicationName}", self._get_application)
        r.add("POST", "/applications/{applicationName}/subscription", self._subscribe)
        r.add("DELETE", "/applications/{applicationName}/subscription", self._unsubscribe)

    async def close(self) -> None:
        """Send what is queued (as Asterisk's shutdown does), then close every events websocket."""
        # Real Asterisk publishes the shutdown's hangups and waits for the channels
        # to die before ARI goes away; bounded here so that a stuck client cannot hold it.
        for _ in range(50):
            if all(sink.queue.empty() for sink in self._sinks):
                break
            await asyncio.sleep(0.01)
        for ws in list(self._event_sockets):
            with contextlib.suppress(Exception):
                await ws.close()

    # --- auth ---------------------------------------------------------------------

    def _authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, _, password = decoded.partition(":")
            return user == self.username and password == self.password
        api_key = request.query.get("api_key")
        if api_key is not None:
            user, _, password = api_key.partition(":")
            return bool(password) and user == self.username and password == self.password
        return False

    # --- REST dispatch ------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        if not self._authenticated(request):
            return _error_response(
                AriError(401, "Authentication required"), {"WWW-Authenticate": _REALM}
            )
        path = "/" + request.match_info["tail"]
        found = self._router.match(path)
        if found is None:
            return _error_response(AriError(404, "Resource not found"))
        node, values = found
        handler = node.methods.get(request.method)
        if handler is None:
            allow = ",".join(
                ["OPTIONS", *[m for m in ("GET", "POST", "PUT", "DELETE") if m in node.methods]]
            )
            return _error_response(AriError(405, "Invalid method"), {"Allow": allow})
        try:
            parsed = await self._parse(request, values)
            return await handler(parsed)
        except AriError as exc:
            return _error_response(exc)
        except Exception:
            log.exception("ARI %s %s failed", request.method, path)
            return _error_response(internal_error())

    @staticmethod
    async def _parse(request: web.Request, values: dict[str, str]) -> AriRequest:
        params = {k: v for k, v in request.query.items() if k != "api_key"}
        variables: dict[str, str] = {}
        if request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise AriError(400, "Malformed JSON body") from None
                if isinstance(body, dict):
                    for key, value in body.items():
                        if key == "variables" and isinstance(value, dict):
                            variables = {
                                str(k): str(v.get("value", "") if isinstance(v, dict) else v)
                                for k, v in value.items()
                            }
                        elif isinstance(value, bool):
                            params[key] = "true" if value else "false"
                        elif value is not None:
                            params[key] = str(value)
            elif request.content_type == "application/x-www-form-urlencoded":
                form = await request.post()
                params.update({k: str(v) for k, v in form.items()})
        return AriRequest(params, values, variables)

    # --- asterisk ------------------------------------------------------------------

    async def _ping(self, req: AriRequest) -> web.Response:
        return _json_response(
            200,
            {"ping": "pong", "timestamp": ari_timestamp(), "asterisk_id": self.pbx.bus.asterisk_id},
        )

    async def _info(self, req: AriRequest) -> web.Response:
        return _json_response(
            200,
            {
                "system": {"version": "23.4.1", "entity_id": self.pbx.bus.asterisk_id},
                "status": {"startup_time": ari_timestamp(), "last_reload_time": ari_timestamp()},
            },
        )

    # --- channels ------------------------------------------------------------------

    async def _list_channels(self, req: AriRequest) -> web.Response:
        channels = [
            c.snapshot()
            for c in reversed(self.pbx.channels.values())
            if not c.hung_up or c.lingering
        ]
        return _json_response(200, channels)

    async def _originate(self, req: AriRequest) -> web.Response:
        channel = self.pbx.originate(req.params, req.path.get("channelId"))
        return _json_response(200, channel.snapshot())

    async def _get_channel(self, req: AriRequest) -> web.Response:
        return _json_response(200, self.pbx.channel(req.path["channelId"]).snapshot())

    async def _delete_channel(self, req: AriRequest) -> web.Response:
        channel = self.pbx.channel(req.path["channelId"])
        self.pbx.hangup(channel, cause=32, soft=True)
        return _no_content()

    async def _answer(self, req: AriRequest) -> web.Response:
        channel = self.pbx.stasis_control(req.path["channelId"])
        self.pbx.set_state(channel, "Up")
        return _no_content()

    async def _external_media(self, req: AriRequest) -> web.Response:
        channel = await self.pbx.external_media(req.params, req.variables)
        body = channel.snapshot()
        body["channelvars"] = dict(channel.channelvars)
        return _json_response(200, body)

    async def _snoop(self, req: AriRequest) -> web.Response:
        channel = self.pbx.snoop(req.path["channelId"], req.params, req.path.get("snoopId"))
        return _json_response(200, channel.snapshot())

    async def _dtmf(self, req: AriRequest) -> web.Response:
        channel = self.pbx.stasis_control(req.path["channelId"])
        digits = req.params.get("dtmf", "")
        if not digits:
            raise AriError(400, "DTMF is required")
        self.pbx.send_dtmf(
            channel,
            digits,
            between_ms=int(req.params.get("between") or 100),
            duration_ms=int(req.params.get("duration") or 100),
        )
        return _no_content()

    async def _start_silence(self, req: AriRequest) -> web.Response:
        self.pbx.start_silence(self.pbx.stasis_control(req.path["channelId"]))
        return _no_content()

    async def _stop_silence(self, req: AriRequest) -> web.Response:
        self.pbx.stop_silence(self.pbx.stasis_control(req.path["channelId"]))
        return _no_content()

    async def _play(self, req: AriRequest) -> web.Response:
        # Playback is not emulated: the request is accepted and the playback starts,
        # as Asterisk does for a media URI it cannot play.
        channel = self.pbx.stasis_control(req.path["channelId"])
        media = req.params.get("media", "")
        if not media:
            raise AriError(400, "media must be specified")
        # Playing media deactivates the channel's generator; ARI does not resume it.
        self.pbx.stop_silence(channel)
        playback_id = (
            req.path.get("playbackId") or req.params.get("playbackId") or str(uuid.uuid4())
        )
        playback = {
            "id": playback_id,
            "media_uri": media,
            "target_uri": f"channel:{channel.id}",
            "language": "en",
            "state": "queued",
        }
        self._playbacks[playback_id] = playback

        def started() -> None:
            playback["state"] = "playing"
            self.pbx.bus.publish(ev.playback_started(dict(playback)), channels=[channel])

        asyncio.get_running_loop().call_later(0.001, started)
        body = dict(playback)
        return _json_response(
            201, body, reason="Created", headers={"Location": f"/ari/playbacks/{playback_id}"}
        )

    # --- bridges ---------------------------------------------------------------------

    async def _list_bridges(self, req: AriRequest) -> web.Response:
        return _json_response(200, [b.snapshot() for b in self.pbx.bridges.values()])

    async def _create_bridge(self, req: AriRequest) -> web.Response:
        bridge_id = req.path.get("bridgeId") or req.params.get("bridgeId") or None
        if req.path.get("bridgeId") and bridge_id in self.pbx.bridges:
            return _json_response(200, self.pbx.bridges[bridge_id].snapshot())
        bridge = self.pbx.create_bridge(
            req.params.get("type", ""), req.params.get("name", ""), bridge_id
        )
        return _json_response(200, bridge.snapshot())

    async def _get_bridge(self, req: AriRequest) -> web.Response:
        return _json_response(200, self.pbx.bridge(req.path["bridgeId"]).snapshot())

    async def _delete_bridge(self, req: AriRequest) -> web.Response:
        self.pbx.destroy_bridge(self.pbx.bridge(req.path["bridgeId"], reason="Not found"))
        return _no_content()

    @staticmethod
    def _channel_list(req: AriRequest) -> list[str]:
        ids = [c for c in req.params.get("channel", "").split(",") if c]
        if not ids:
            raise AriError(400, "Missing parameter channel")
        return ids

    async def _add_channel(self, req: AriRequest) -> web.Response:
        bridge = self.pbx.bridge(req.path["bridgeId"], reason="Not found")
        self.pbx.add_channels(bridge, self._channel_list(req))
        return _no_content()

    async def _remove_channel(self, req: AriRequest) -> web.Response:
        bridge = self.pbx.bridge(req.path["bridgeId"], reason="Not found")
        self.pbx.remove_channels(bridge, self._channel_list(req))
        return _no_content()

    # --- applications ------------------------------------------------------------------

    def _application(self, name: str) -> dict[str, Any]:
        if not self.pbx.bus.registered(name):
            raise AriError(404, "Application not found")
        return {
            "name": name,
            "channel_ids": [c.id for c in self.pbx.channels.values() if name in c.apps],
            "bridge_ids": [b.id for b in self.pbx.bridges.values() if name in b.apps],
            "endpoint_ids": [],
            "device_names": [],
            "events_allowed": [],
            "events_disallowed": [],
        }

    async def _list_applications(self, req: AriRequest) -> web.Response:
        return _json_response(200, [self._application(name) for name in self.pbx.bus.apps])

    async def _get_application(self, req: AriRequest) -> web.Response:
        return _json_response(200, self._application(req.path["applicationName"]))

    def _event_sources(self, req: AriRequest) -> list[tuple[str, str]]:
        sources = [s for s in req.params.get("eventSource", "").split(",") if s]
        if not sources:
            raise AriError(400, "Missing parameter eventSource")
        parsed: list[tuple[str, str]] = []
        for source in sources:
            scheme, _, ident = source.partition(":")
            if scheme == "channel":
                if ident not in self.pbx.channels:
                    raise AriError(422, "Event source does not exist")
            elif scheme == "bridge":
                if ident not in self.pbx.bridges:
                    raise AriError(422, "Event source does not exist")
            else:
                raise AriError(400, "Invalid event source URI scheme")
            parsed.append((scheme, ident))
        return parsed

    async def _subscribe(self, req: AriRequest) -> web.Response:
        name = req.path["applicationName"]
        self._application(name)
        for scheme, ident in self._event_sources(req):
            if scheme == "channel":
                self.pbx.channels[ident].apps.add(name)
            else:
                self.pbx.bridges[ident].apps.add(name)
        return _json_response(200, self._application(name))

    async def _unsubscribe(self, req: AriRequest) -> web.Response:
        name = req.path["applicationName"]
        self._application(name)
        sources = [s for s in req.params.get("eventSource", "").split(",") if s]
        if not sources:
            raise AriError(400, "Missing parameter eventSource")
        found: list[Channel | Bridge] = []
        for source in sources:
            scheme, _, ident = source.partition(":")
            if scheme not in ("channel", "bridge"):
                raise AriError(400, "Invalid event source URI scheme")
            subject = (self.pbx.channels if scheme == "channel" else self.pbx.bridges).get(ident)
            # Asterisk drops an app's subscription when the channel or bridge is
            # destroyed (res/stasis/app.c): gone, it was "not subscribed to".
            if subject is None or name not in subject.apps:
                raise AriError(422, "Event source was not subscribed to")
            found.append(subject)
        for subject in found:
            if not (isinstance(subject, Channel) and subject.stasis_app == name):
                subject.apps.discard(name)
        return _json_response(200, self._application(name))

    # --- websockets ----------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not self._authenticated(request):
            body = json.dumps({"message": "Authentication required"}, separators=(",", ":"))
            return web.Response(
                status=401,
                body=body.encode(),
                headers={
                    **_COMMON_HEADERS,
                    "WWW-Authenticate": _REALM,
                    "Content-type": "application/json",
                },
            )
        apps = [a for a in request.query.get("app", "").split(",") if a]
        if not apps:
            return await self._missing_app(request)
        ws = web.WebSocketResponse(protocols=("ari",), autoping=True)
        await ws.prepare(request)
        sink = _WsSink(ws)
        writer = asyncio.get_running_loop().create_task(sink.run())
        subscribe_all = request.query.get("subscribeAll", "false").lower() == "true"
        self.pbx.bus.connect(apps, sink, subscribe_all)
        self._event_sockets.add(ws)
        self._sinks.add(sink)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._event_sockets.discard(ws)
            self._sinks.discard(sink)
            self.pbx.bus.disconnect(apps, sink)
            sink.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await writer
        return ws

    async def _missing_app(self, request: web.Request) -> web.StreamResponse:
        """400 page, then the stray second response Asterisk writes on the same socket."""
        body = _html_error(400, "Bad Request", "HTTP request is missing param: [app]")
        response = web.Response(
            status=400,
            body=body.encode(),
            headers={**_COMMON_HEADERS, "Content-type": "text/html"},
        )
        await response.prepare(request)
        await response.write_eof()
        transport = request.transport
        if transport is not None and not transport.is_closing():
            transport.write(
                b"HTTP/1.1 400 Bad Request\r\nServer: " + _SERVER.encode() + b"\r\n"
                b"Cache-Control: no-cache, no-store\r\n"
                b"Sec-WebSocket-Version: 7, 8, 13\r\nContent-Length: 0\r\n\r\n"
            )
        return response

    async def _media(self, request: web.Request) -> web.StreamResponse:
        tech = self.pbx.media_connections.get(request.match_info["connection_id"])
        if tech is None:
            return self._html(404, "Not found", "WebSocket instance not found")
        if tech.connected:
            return self._html(409, "Conflict", "WebSocket instance already connected")
        return await tech.serve(request)

    @staticmethod
    def _html(status: int, title: str, text: str) -> web.Response:
        return web.Response(
            status=status,
            reason=title,
            body=_html_error(status, title, text).encode(),
            headers={**_COMMON_HEADERS, "Content-type": "text/html"},
        )
