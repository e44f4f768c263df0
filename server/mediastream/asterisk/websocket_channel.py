"""externalMedia over Asterisk's WebSocket channel (chan_websocket), server mode.

Asterisk creates the channel with a connection ID; the gateway connects to
``ws://<asterisk>/media/<id>`` and Asterisk says MEDIA_START first. Only then
is the channel answered and put in Stasis, so a stream waits for StasisStart
after connecting, not before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from mediastream.asterisk.transports import FrameSink
from mediastream.core import wschannel

log = logging.getLogger(__name__)

MEDIA_START_TIMEOUT = 10.0
"""Seconds to wait for MEDIA_START after connecting."""


class WebSocketChannelTransport:
    """One media WebSocket to chan_websocket."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        sink: FrameSink,
        start: wschannel.ControlEvent,
        json_format: bool,
    ) -> None:
        self._ws = ws
        self.sink = sink
        self.media_start = start
        self.json_format = json_format
        self.xoff = False
        self._outbox: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]

    @classmethod
    async def connect(
        cls, session: aiohttp.ClientSession, url: str, sink: FrameSink, *, json_format: bool
    ) -> WebSocketChannelTransport:
        """Connect to `url` and wait for MEDIA_START.

        Raises:
            ConnectionError: the socket closed or sent something else first.
            TimeoutError: MEDIA_START did not come in time.
        """
        ws = await session.ws_connect(url, protocols=("media",), autoping=True)
        try:
            async with asyncio.timeout(MEDIA_START_TIMEOUT):
                msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"expected MEDIA_START, got {msg.type.name}")
            event = wschannel.parse_event(msg.data)
            if event.name != wschannel.MEDIA_START:
                raise ConnectionError(f"expected MEDIA_START, got {event.name}")
        except BaseException:
            await ws.close()
            raise
        return cls(ws, sink, event, json_format)

    def send_frame(self, frame: bytes) -> None:
        """Queue one binary frame for Asterisk."""
        self._outbox.put_nowait(frame)

    def send_command(self, command: wschannel.ControlCommand) -> None:
        """Queue one control command, in the connection's control format."""
        self._outbox.put_nowait(wschannel.format_command(command, json_format=self.json_format))

    def close(self) -> None:
        """Close with 1000: Asterisk hangs up the channel."""
        self._outbox.put_nowait(None)

    async def _write(self) -> None:
        try:
            while (item := await self._outbox.get()) is not None:
                if isinstance(item, bytes):
                    await self._ws.send_bytes(item)
                else:
                    await self._ws.send_str(item)
        except ConnectionError as exc:
            log.warning("media WebSocket write failed: %s", exc)
        finally:
            with contextlib.suppress(ConnectionError):
                await self._ws.close(code=aiohttp.WSCloseCode.OK)

    async def _read(self) -> None:
        reason = "Asterisk closed the media WebSocket"
        try:
            async for msg in self._ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    self.sink.on_frame(msg.data)
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    self._on_event(msg.data)
        except ConnectionError as exc:
            reason = f"media WebSocket failed: {exc}"
        finally:
            if self._ws.close_code is not None:
                reason = f"{reason} (code {self._ws.close_code})"
            self.sink.on_transport_closed(reason)

    def _on_event(self, text: str) -> None:
        try:
            event = wschannel.parse_event(text)
        except wschannel.WsChannelError as exc:
            log.warning("unreadable WebSocket channel event: %s", exc)
            return
        if event.name == wschannel.DTMF_END and event.digit:
            self.sink.on_dtmf(event.digit)
        elif event.name == wschannel.MEDIA_XOFF:
            self.xoff = True
        elif event.name == wschannel.MEDIA_XON:
            self.xoff = False
        elif event.name == wschannel.ERROR:
            log.warning("Asterisk WebSocket channel error: %s", event.error_text)
