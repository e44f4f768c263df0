"""The platform's side of a call: an ARI client of its own, as VoIPBIN's platform holds calls.

It has its own Stasis application (with its events WebSocket), independent of the gateway's,
and makes the calls and topologies the gateway is asked to stream::

    async with Platform(ari_url, user, password) as platform:
        call = await platform.stasis_call("echo")          # Local/echo@default/n, in our app
        bridge = await platform.bridge(call, await platform.stasis_call("silent"))
        wait = await platform.dialplan_call("wait")         # ;1 in Wait(), ;2 echoes

Calls are ``Local/<exten>@default/n`` channels: the ``;1`` half is *the call* (the id the
gateway is given); its ``;2`` half runs extension ``<exten>`` (see asterisk.DIALPLAN). With
``echo``, whatever is written to the call comes back as what the call reads, so a client
listening ``in`` hears what the call heard. Works against a real Asterisk and against the
embedded emulator alike (the emulator dials only ``Local/<exten>@default``; see
:attr:`Platform.emulator`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

Event = dict[str, Any]

# Waits on a real Asterisk: an originate answers in ~50 ms; a loaded 2-core CI machine
# (builds, other tests) was seen 20x slower. A hang is still told apart well within these.
CALL_UP_TIMEOUT_S = 15.0

TONE_START_S = 0.6
"""How long a ``tone``/``tone880`` call takes to start its tone: its ``;2`` half's Answer()
waits up to 500 ms for a first frame (``__ast_answer``, main/channel.c) and a call alone in
Stasis sends it none. Streams opened sooner began with silence (a listen test on 22.10.1
measured 1075 instead of 3574 for its 1 s window)."""

TONE_EXTENSIONS = ("tone", "tone880")


class AriCallError(RuntimeError):
    """An ARI request of the platform failed (status and body in the message)."""

    def __init__(self, status: int, text: str, method: str, path: str) -> None:
        """Keep the status for tests that expect one."""
        super().__init__(f"{method} {path}: {status} {text}")
        self.status = status


class Platform:
    """A Stasis application of the platform on one Asterisk (or emulator).

    Attributes:
        app: This platform's Stasis application name.
        events: Every event received, in order.
        emulator: True when the far side is the embedded emulator (no ``/n``, no dialplan-only
            calls).
    """

    def __init__(self, ari_url: str, user: str, password: str, *, emulator: bool = False) -> None:
        """Nothing connects until :meth:`start` (or ``async with``)."""
        self.ari_url = ari_url.rstrip("/")
        self.user = user
        self.password = password
        self.emulator = emulator
        self.app = f"platform-{uuid.uuid4().hex[:10]}"
        self.events: list[Event] = []
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.made_channels: list[str] = []
        self.made_bridges: list[str] = []

    async def __aenter__(self) -> Platform:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the events WebSocket of :attr:`app` (registers the application)."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        self._session = aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"})
        ws_url = self.ari_url.replace("http", "ws", 1) + f"/events?app={self.app}"
        self._ws = await self._session.ws_connect(ws_url)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))
                self._changed.set()
        self._changed.set()

    async def close(self, *, hang_up: bool = True) -> None:
        """Hang up what this platform made (best effort) and close."""
        if hang_up:
            for channel in self.made_channels:
                with contextlib.suppress(Exception):
                    await self.hangup(channel)
            for bridge in self.made_bridges:
                with contextlib.suppress(Exception):
                    await self.request("DELETE", f"/bridges/{bridge}")
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        if self._session is not None:
            await self._session.close()

    # --- REST --------------------------------------------------------------------------

    async def request(self, method: str, path: str, **params: Any) -> Any:
        """One ARI request; query parameters from ``params``; the JSON body back (or None)."""
        assert self._session is not None
        query = {k: str(v) for k, v in params.items() if v is not None}
        async with self._session.request(method, self.ari_url + path, params=query) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise AriCallError(resp.status, text, method, path)
            return json.loads(text) if text else None

    async def channels(self) -> list[Event]:
        """``GET /channels``."""
        result: list[Event] = await self.request("GET", "/channels")
        return result

    async def bridges(self) -> list[Event]:
        """``GET /bridges``."""
        result: list[Event] = await self.request("GET", "/bridges")
        return result

    # --- events ------------------------------------------------------------------------

    async def wait_event(
        self, predicate: Callable[[Event], bool], timeout: float = CALL_UP_TIMEOUT_S
    ) -> Event:
        """The first event (already received or coming) that satisfies ``predicate``."""
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

    # --- calls -------------------------------------------------------------------------

    def _endpoint(self, exten: str) -> str:
        # `/n`: no optimisation, so the ;1 half stays the call even when ;2 is bridged.
        return f"Local/{exten}@default" + ("" if self.emulator else "/n")

    async def stasis_call(
        self, exten: str, *, channel_id: str | None = "uuid", formats: str | None = None
    ) -> str:
        """A call held in this platform's Stasis app, ``;2`` running ``exten``; its id.

        Args:
            exten: What the far end does: ``echo``, ``tone``, ``silent``, ``dtmf``...
            channel_id: ``"uuid"`` for a fresh UUID (as VoIPBIN does), None for Asterisk's own
                ``uniqueid`` (``1795515126.1745``), or an explicit id.
            formats: ``formats`` of the originate (e.g. ``slin16``).
        """
        cid = str(uuid.uuid4()) if channel_id == "uuid" else channel_id
        body = await self.request(
            "POST",
            "/channels",
            endpoint=self._endpoint(exten),
            app=self.app,
            channelId=cid,
            formats=formats,
        )
        call_id: str = body["id"]
        self.made_channels.append(call_id)
        await self.wait_event(
            lambda e: e.get("type") == "StasisStart" and e["channel"]["id"] == call_id
        )
        if not self.emulator:
            await self.request("POST", f"/channels/{call_id}/answer")
        if exten in TONE_EXTENSIONS:
            await asyncio.sleep(TONE_START_S)
        return call_id

    async def dialplan_call(
        self, exten: str, *, far: str = "echo", channel_id: str | None = "uuid"
    ) -> str:
        """A call running dialplan ``exten`` (``wait``, ``playback``), its far end ``far``.

        Only a real Asterisk: the ``;1`` half of ``Local/<far>@default/n`` runs ``exten``.
        """
        cid = str(uuid.uuid4()) if channel_id == "uuid" else channel_id
        body = await self.request(
            "POST",
            "/channels",
            endpoint=self._endpoint(far),
            context="default",
            extension=exten,
            priority=1,
            channelId=cid,
        )
        call_id: str = body["id"]
        self.made_channels.append(call_id)
        await self.wait_up(call_id)
        return call_id

    async def wait_up(self, channel_id: str, timeout: float = CALL_UP_TIMEOUT_S) -> Event:
        """Poll ``GET /channels/{id}`` until its state is ``Up``."""
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(AriCallError):
                    channel: Event = await self.request("GET", f"/channels/{channel_id}")
                    if channel["state"] == "Up":
                        return channel
                await asyncio.sleep(0.05)

    async def hangup(self, channel_id: str) -> None:
        """``DELETE /channels/{id}``."""
        await self.request("DELETE", f"/channels/{channel_id}")

    async def bridge(
        self, *channel_ids: str, bridge_type: str = "mixing", bridge_id: str | None = None
    ) -> str:
        """A bridge of this app holding ``channel_ids`` (all in this app); its id."""
        body = await self.request(
            "POST", "/bridges", type=bridge_type, bridgeId=bridge_id or str(uuid.uuid4())
        )
        bid: str = body["id"]
        self.made_bridges.append(bid)
        if channel_ids:
            await self.request("POST", f"/bridges/{bid}/addChannel", channel=",".join(channel_ids))
            await self.wait_members(bid, len(channel_ids))
        return bid

    async def wait_members(self, bridge_id: str, count: int) -> None:
        """Poll until the bridge has ``count`` members."""
        async with asyncio.timeout(CALL_UP_TIMEOUT_S):
            while True:
                bridge = await self.request("GET", f"/bridges/{bridge_id}")
                if len(bridge["channels"]) >= count:
                    return
                await asyncio.sleep(0.05)

    async def send_dtmf(self, channel_id: str, digits: str) -> None:
        """``POST /channels/{id}/dtmf``: the call's far end hears the digits."""
        await self.request("POST", f"/channels/{channel_id}/dtmf", dtmf=digits)

    def dtmf_received(self, channel_id: str) -> str:
        """Digits ``ChannelDtmfReceived`` reported so far on ``channel_id``."""
        return "".join(
            e["digit"]
            for e in self.events
            if e.get("type") == "ChannelDtmfReceived" and e["channel"]["id"] == channel_id
        )
