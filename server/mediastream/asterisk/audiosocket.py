"""externalMedia over AudioSocket/TCP, gateway side.

Asterisk is the TCP client: it connects to the gateway while it handles the
externalMedia POST and sends the channel's UUID first. One listener serves
every stream; a connection is routed to its stream by that UUID, so the
stream registers the UUID *before* asking Asterisk for the channel.

Every connection is kept fed: one that the gateway has sent nothing to for
:data:`KEEP_FED_IDLE_TICKS` ticks of :data:`KEEP_FED_INTERVAL` gets a frame of
silence. Asterisk's ``audiosocket_read`` (``res/res_audiosocket.c``) does not
return until a whole message header has arrived, and ``ast_read`` calls it with
the channel locked. Stasis calls ``ast_read`` once more right after it has put
the channel into a bridge (``res/res_stasis.c``, ``stasis_app_exec``: woken by
the alert pipe, it runs the addChannel command, and the new bridge thread may
take the queued frame first). If nothing ever comes from the gateway, as on a
listen-only stream, that read never ends, the channel stays locked, and the
bridge cannot write one frame to it: the stream delivers nothing (issue 25;
about 1 stream in 150 on 23.4.1). With silence arriving every 40 ms such a read
ends within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from mediastream import metrics
from mediastream.asterisk.transports import FrameSink
from mediastream.core import audiosocket
from mediastream.play_clock import PlayClock

log = logging.getLogger(__name__)

FIRST_MESSAGE_TIMEOUT = 5.0
"""Seconds a new connection has to send its UUID message."""

KEEP_FED_INTERVAL = 0.02
"""Seconds between two checks that every connection has been sent something."""

KEEP_FED_IDLE_TICKS = 2
"""Checks with nothing sent after which a connection gets a frame of silence.

Two, not one: a stream playing the client's audio sends a frame every 20 ms,
but not exactly in step with this check; at one tick a late frame would have
silence pushed in front of it. So an idle connection gets silence every 40 ms,
which bounds Asterisk's blocked read at about that.
"""

SILENCE = audiosocket.encode_audio(bytes(320))
"""One 20 ms audio message of 8 kHz slin silence."""


class AudioSocketTransport:
    """One AudioSocket connection from Asterisk."""

    def __init__(self, writer: asyncio.StreamWriter, sink: FrameSink) -> None:
        self._writer = writer
        self.sink = sink
        self.malformed = 0
        self.idle_ticks = 0
        """Keep-fed checks since something was last sent (see `keep_fed`)."""
        self.silence_sent = 0
        """Frames of silence sent to keep the connection fed."""

    def send_frame(self, frame: bytes) -> None:
        """Send one frame of 8 kHz slin: Asterisk reads every audio message as that."""
        if frame and not self._writer.is_closing():
            self._writer.write(audiosocket.encode_audio(frame))
            self.idle_ticks = 0

    def keep_fed(self) -> None:
        """One keep-fed check: send silence if nothing was sent for a while."""
        self.idle_ticks += 1
        if self.idle_ticks >= KEEP_FED_IDLE_TICKS and not self._writer.is_closing():
            self._writer.write(SILENCE)
            self.silence_sent += 1
            self.idle_ticks = 0

    def close(self) -> None:
        """Close the connection; Asterisk then hangs up the channel."""
        if not self._writer.is_closing():
            self._writer.close()


class AudioSocketServer:
    """The TCP listener Asterisk connects to for every AudioSocket channel.

    Args:
        keep_fed_interval: Seconds between keep-fed checks; None runs none by
            itself (tests call `keep_fed`).
        clock: The gateway's play clock, which runs the keep-fed checks among the
            pacers' ticks (one timer for all the gateway's 20 ms work); a new one
            when not given.
    """

    def __init__(
        self, keep_fed_interval: float | None = KEEP_FED_INTERVAL, clock: PlayClock | None = None
    ) -> None:
        self._keep_fed_interval = keep_fed_interval
        self._clock = clock if clock is not None else PlayClock()
        self._server: asyncio.Server | None = None
        self._expected: dict[uuid.UUID, tuple[FrameSink, asyncio.Future[AudioSocketTransport]]] = {}
        self.unknown_connections = 0
        self.malformed_connections = 0
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._fed: dict[AudioSocketTransport, None] = {}
        self._feeding = False

    async def start(self, host: str, port: int = 0) -> None:
        """Listen on `host:port` (port 0: any free port)."""
        self._server = await asyncio.start_server(self._handle, host, port)

    @property
    def external_host(self) -> str:
        """The ``host:port`` to give Asterisk as ``external_host``."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    def expect(self, key: uuid.UUID, sink: FrameSink) -> asyncio.Future[AudioSocketTransport]:
        """Route the connection that will announce `key` to `sink`."""
        future: asyncio.Future[AudioSocketTransport] = asyncio.get_running_loop().create_future()
        self._expected[key] = (sink, future)
        return future

    def forget(self, key: uuid.UUID) -> None:
        """Stop waiting for `key` (the stream gave up)."""
        entry = self._expected.pop(key, None)
        if entry is not None and not entry[1].done():
            entry[1].cancel()

    def keep_fed(self) -> None:
        """Run one keep-fed check on every routed connection (see the module docstring)."""
        for transport in self._fed:
            transport.keep_fed()

    def on_tick(self, now: float) -> float | None:
        """The play clock's call: one keep-fed check; the next one while any are open."""
        self.keep_fed()
        if not self._fed or self._keep_fed_interval is None:
            self._feeding = False
            return None
        return now + self._keep_fed_interval

    def _arm_feeder(self) -> None:
        # One owner on the clock for every connection, scheduled only while there are any.
        if not self._feeding and self._keep_fed_interval is not None:
            self._feeding = True
            self._clock.schedule(self, time.monotonic() + self._keep_fed_interval)

    async def close(self) -> None:
        """Stop listening and close every connection still open."""
        self._clock.cancel(self)
        self._feeding = False
        if self._server is not None:
            self._server.close()
        # Ended here rather than cancelled at the loop's end, which Python 3.11's
        # stream server reports as an error for every connection.
        for writer in self._connections.values():
            writer.close()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=2.0)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            await self._serve_connection(reader, writer)
        finally:
            del self._connections[task]

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        decoder = audiosocket.AudioSocketDecoder()
        messages: list[audiosocket.Message] = []
        error: audiosocket.AudioSocketError | None = None
        try:
            async with asyncio.timeout(FIRST_MESSAGE_TIMEOUT):
                while not messages and error is None:
                    data = await reader.read(4096)
                    if not data:
                        writer.close()
                        return
                    try:
                        messages = decoder.feed(data)
                    except audiosocket.AudioSocketError as exc:
                        messages, error = exc.messages, exc
        except TimeoutError:
            self.malformed_connections += 1
            metrics.MALFORMED_INPUT.labels("audiosocket").inc()
            log.warning("AudioSocket connection sent no UUID within %.0f s", FIRST_MESSAGE_TIMEOUT)
            writer.close()
            return
        transport = self._route(messages.pop(0) if messages else None, writer)
        if transport is None:
            writer.close()
            return
        # Fed from the moment it is routed: Asterisk may block in a read of it
        # before the bridge join, too (the dial and Stasis threads read it).
        self._fed[transport] = None
        self._arm_feeder()
        try:
            reason = await self._relay(transport, reader, decoder, messages, error)
        finally:
            self._fed.pop(transport, None)
        transport.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        transport.sink.on_transport_closed(reason)

    def _route(
        self, first: audiosocket.Message | None, writer: asyncio.StreamWriter
    ) -> AudioSocketTransport | None:
        try:
            if first is None:
                raise ValueError("no message")
            key = first.uuid
        except ValueError:
            self.malformed_connections += 1
            log.warning("AudioSocket connection did not start with a UUID message")
            return None
        entry = self._expected.pop(key, None)
        if entry is None or entry[1].done():
            self.unknown_connections += 1
            log.warning("AudioSocket connection for unknown UUID %s closed", key)
            return None
        sink, future = entry
        transport = AudioSocketTransport(writer, sink)
        future.set_result(transport)
        return transport

    async def _relay(
        self,
        transport: AudioSocketTransport,
        reader: asyncio.StreamReader,
        decoder: audiosocket.AudioSocketDecoder,
        messages: list[audiosocket.Message],
        error: audiosocket.AudioSocketError | None,
    ) -> str:
        try:
            while True:
                if not self._deliver(transport, messages):
                    return "Asterisk sent AudioSocket hangup"
                if error is not None:
                    transport.malformed += 1
                    metrics.MALFORMED_INPUT.labels("audiosocket").inc()
                    log.warning("malformed AudioSocket stream: %s; closing", error)
                    return f"malformed AudioSocket stream: {error}"
                data = await reader.read(65536)
                if not data:
                    return "Asterisk closed the AudioSocket connection"
                try:
                    messages = decoder.feed(data)
                except audiosocket.AudioSocketError as exc:
                    messages, error = exc.messages, exc
        except ConnectionError as exc:
            return f"AudioSocket connection failed: {exc}"

    @staticmethod
    def _deliver(transport: AudioSocketTransport, messages: list[audiosocket.Message]) -> bool:
        for m in messages:
            if m.is_audio:
                transport.sink.on_frame(m.payload)
            elif m.kind == audiosocket.Kind.DTMF:
                transport.sink.on_dtmf(m.digit)
            elif m.kind == audiosocket.Kind.HANGUP:
                return False
        return True
