"""WebSocket externalMedia channels in server mode (``chan_websocket``).

The app connects to ``ws://<ari host:port>/media/<MEDIA_WEBSOCKET_CONNECTION_ID>``.
Asterisk then sends ``MEDIA_START`` (plain text or JSON per ``f(json)``), answers
the channel (which only now enters Stasis), and from then on:

* every frame written to the channel leaves as one BINARY message, as is;
* BINARY messages from the app are cut into ``optimal_frame_size`` frames and
  queued; the 20 ms clock takes one frame per tick. The queue holds at most 1000
  frames: ``MEDIA_XOFF`` at 900, ``MEDIA_XON`` once below 800, and a message
  arriving while 1000 are queued is dropped whole;
* TEXT commands are answered as recorded (``GET_STATUS`` at once; marks, drained
  reports and buffering completions when the queue reaches them; unknown
  commands and commands over 128 bytes silently ignored).

When the app closes the socket Asterisk answers with close code 1001 and hangs up
(``tech_cause`` 1001); the ``HANGUP`` command closes with 1000 (``tech_cause``
1000).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web

from mediastream.core import wschannel
from mediastream.core.formats import AudioFormat
from mediastream.emulator.media import MediaClock
from mediastream.emulator.model import Channel, Frame

__all__ = [
    "QUEUE_MAX",
    "XOFF_LEVEL",
    "XON_LEVEL",
    "WebSocketChannelTech",
]

log = logging.getLogger(__name__)

QUEUE_MAX = 1000
"""Frames the media queue holds; a message arriving at a full queue is dropped."""
XOFF_LEVEL = 900
"""Queue length at which ``MEDIA_XOFF`` is sent."""
XON_LEVEL = 800
"""``MEDIA_XON`` is sent once the queue is shorter than this."""
MAX_MESSAGE_BYTES = 65535
"""``AST_WEBSOCKET_MAX_RX_PAYLOAD_SIZE``: a larger message closes the connection."""
PTIME_MS = 20
"""Frame duration reported in ``MEDIA_START``."""


@dataclass(frozen=True)
class _Mark:
    """A position in the queue to report when reached."""

    event: str
    correlation_id: str | None


_QueueItem = bytes | _Mark


class WebSocketChannelTech:
    """The websocket endpoint of a ``WebSocket/INCOMING`` channel.

    Attributes:
        connection_id: The id in ``MEDIA_WEBSOCKET_CONNECTION_ID`` and the URL.
        json_format: Control messages in JSON (``f(json)``) or plain text.
        auto_answer: False with the ``n`` dial option.
        frame_size: ``MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE``.
    """

    def __init__(
        self,
        channel: Channel,
        connection_id: str,
        clock: MediaClock,
        *,
        json_format: bool,
        auto_answer: bool = True,
        on_connected: Callable[[WebSocketChannelTech], None],
        on_answer: Callable[[WebSocketChannelTech], None],
    ) -> None:
        """Create the endpoint; it waits for the app to connect.

        Args:
            channel: The channel.
            connection_id: The connection id.
            clock: The media clock that paces the queue.
            json_format: Control message format.
            auto_answer: Answer as soon as the app connects.
            on_connected: Called once ``MEDIA_START`` has been queued.
            on_answer: Called when the channel should be answered (connect or ``ANSWER``).
        """
        self.channel = channel
        self.connection_id = connection_id
        self.clock = clock
        self.json_format = json_format
        self.auto_answer = auto_answer
        self.format: AudioFormat = channel.native_format
        self.frame_size = self.format.frame_bytes
        self.direction = "both"
        self._on_connected = on_connected
        self._on_answer = on_answer
        self._ws: web.WebSocketResponse | None = None
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._queue: deque[_QueueItem] = deque()
        self._frames = 0
        self._partial = b""
        self._bulk = False
        self._paused = False
        self._xoff = False
        self._report_drained = False
        self._closing = False
        self._close_code = int(WSCloseCode.OK)
        self._ticker: int | None = None

    @property
    def connected(self) -> bool:
        """Whether the app's websocket is up."""
        return self._ws is not None and not self._closing

    @property
    def queue_length(self) -> int:
        """Frames waiting to be played."""
        return self._frames

    # --- connection ---------------------------------------------------------

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """Handle the app's ``/media/<id>`` websocket until it closes."""
        ws = web.WebSocketResponse(
            protocols=("media",), autoclose=False, max_msg_size=MAX_MESSAGE_BYTES
        )
        await ws.prepare(request)
        self._ws = ws
        writer = asyncio.get_running_loop().create_task(self._write_loop(ws))
        self._send_event(
            wschannel.MEDIA_START,
            connection_id=self.connection_id,
            channel=self.channel.name,
            channel_id=self.channel.id,
            format=self.format.value,
            optimal_frame_size=self.frame_size,
            ptime=PTIME_MS,
            channel_variables=dict(self.channel.channelvars),
        )
        self._ticker = self.clock.add(self._tick, order=0)
        self._on_connected(self)
        if self.auto_answer:
            self._on_answer(self)
        tech_cause = 1001
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    self._on_binary(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self._on_text(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
                    break
                if self._closing:
                    break
        finally:
            if self._closing:
                tech_cause = self._close_code
            else:
                # The app went away: Asterisk answers the close with 1001 (going away).
                self._closing = True
                self._close_code = int(WSCloseCode.GOING_AWAY)
            self._outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await writer
            self._stop_ticker()
            self.channel.remote_hangup(16, tech_cause)
        return ws

    async def _write_loop(self, ws: web.WebSocketResponse) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if item is None:
                    break
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                else:
                    await ws.send_str(item)
        except (ConnectionError, RuntimeError):
            pass
        with contextlib.suppress(Exception):
            await ws.close(code=self._close_code)

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self.clock.remove(self._ticker)
            self._ticker = None

    # --- ChannelTech --------------------------------------------------------

    def write_frame(self, frame: Frame) -> None:
        """One BINARY message per frame written to the channel."""
        if self.connected and self.direction != "in" and frame.payload:
            self._outbox.put_nowait(frame.payload)

    def write_dtmf(self, digit: str, duration_ms: int) -> None:
        """``DTMF_END`` when a digit ends."""
        if self.connected:
            self._send_event(wschannel.DTMF_END, channel_id=self.channel.id, digit=digit)

    def close(self) -> None:
        """Asterisk hangs up: close the websocket with 1000."""
        self._stop_ticker()
        if self._ws is not None and not self._closing:
            self._closing = True
            self._close_code = int(WSCloseCode.OK)
            self._outbox.put_nowait(None)

    # --- app -> Asterisk ----------------------------------------------------

    def _on_binary(self, data: bytes) -> None:
        if self.direction == "in":
            return  # d(in): media from the app is dropped
        if self._frames >= QUEUE_MAX:
            return  # a message arriving at a full queue is dropped whole
        if self._bulk:
            data = self._partial + data
        size = self.frame_size
        whole = len(data) - len(data) % size
        for start in range(0, whole, size):
            self._queue.append(data[start : start + size])
            self._frames += 1
        self._partial = data[whole:] if self._bulk else b""
        if not self._xoff and self._frames >= XOFF_LEVEL:
            self._xoff = True
            self._send_event(wschannel.MEDIA_XOFF, channel_id=self.channel.id)

    def _on_text(self, text: str) -> None:
        try:
            cmd = wschannel.parse_command(text, json_format=self.json_format)
        except wschannel.WsChannelError as exc:
            if exc.reply is not None:
                self._send_event(wschannel.ERROR, channel_id=self.channel.id, error_text=exc.reply)
            return
        name = cmd.name
        if name == wschannel.GET_STATUS:
            self._send_status()
        elif name == wschannel.MARK_MEDIA:
            self._queue.append(_Mark(wschannel.MEDIA_MARK_PROCESSED, cmd.correlation_id))
        elif name == wschannel.FLUSH_MEDIA:
            self._queue.clear()
            self._frames = 0
            self._partial = b""
            self._bulk = False
        elif name == wschannel.PAUSE_MEDIA:
            self._paused = True
        elif name == wschannel.CONTINUE_MEDIA:
            self._paused = False
        elif name == wschannel.START_MEDIA_BUFFERING:
            self._bulk = True
        elif name == wschannel.STOP_MEDIA_BUFFERING:
            if self._partial:
                self._queue.append(self._partial)
                self._frames += 1
            self._partial = b""
            self._bulk = False
            self._queue.append(_Mark(wschannel.MEDIA_BUFFERING_COMPLETED, cmd.correlation_id))
        elif name == wschannel.REPORT_QUEUE_DRAINED:
            self._report_drained = True
        elif name == wschannel.SET_MEDIA_DIRECTION:
            direction = cmd.fields.get("direction")
            if isinstance(direction, str):
                self.direction = direction
        elif name == wschannel.ANSWER:
            self._on_answer(self)
        elif name == wschannel.HANGUP:
            self._closing = True
            self._close_code = int(WSCloseCode.OK)
        # Anything else: Asterisk does not answer at all.

    # --- pacing -------------------------------------------------------------

    def _tick(self) -> None:
        """Play one queued frame; report marks as they reach the head."""
        if self._closing:
            return
        if not self._paused:
            self._report_marks()
            if self._queue:
                item = self._queue.popleft()
                if isinstance(item, bytes):
                    self._frames -= 1
                    self.channel.read(Frame(self.format, item))
            elif self._report_drained:
                self._report_drained = False
                self._send_event(wschannel.QUEUE_DRAINED, channel_id=self.channel.id)
        if self._xoff and self._frames < XON_LEVEL:
            self._xoff = False
            self._send_event(wschannel.MEDIA_XON, channel_id=self.channel.id)

    def _report_marks(self) -> None:
        while self._queue and isinstance(self._queue[0], _Mark):
            mark = self._queue.popleft()
            assert isinstance(mark, _Mark)
            self._send_event(
                mark.event, channel_id=self.channel.id, correlation_id=mark.correlation_id
            )

    # --- Asterisk -> app events -----------------------------------------------

    def _send_status(self) -> None:
        self._send_event(
            wschannel.STATUS,
            channel_id=self.channel.id,
            queue_length=self._frames,
            xon_level=XON_LEVEL,
            xoff_level=XOFF_LEVEL,
            queue_full=self._xoff,
            bulk_media=self._bulk,
            media_paused=self._paused,
        )

    def _send_event(self, name: str, **fields: object) -> None:
        if self._ws is None or self._closing:
            return
        event = wschannel.ControlEvent(name, {k: v for k, v in fields.items() if v is not None})
        self._outbox.put_nowait(wschannel.format_event(event, json_format=self.json_format))
