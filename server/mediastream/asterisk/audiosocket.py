"""externalMedia over AudioSocket/TCP, gateway side.

Asterisk is the TCP client: it connects to the gateway while it handles the
externalMedia POST and sends the channel's UUID first. One listener serves
every stream; a connection is routed to its stream by that UUID, so the
stream registers the UUID *before* asking Asterisk for the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from mediastream import metrics
from mediastream.asterisk.transports import FrameSink
from mediastream.core import audiosocket

log = logging.getLogger(__name__)

FIRST_MESSAGE_TIMEOUT = 5.0
"""Seconds a new connection has to send its UUID message."""


class AudioSocketTransport:
    """One AudioSocket connection from Asterisk."""

    def __init__(self, writer: asyncio.StreamWriter, sink: FrameSink) -> None:
        self._writer = writer
        self.sink = sink
        self.malformed = 0

    def send_frame(self, frame: bytes) -> None:
        """Send one frame of 8 kHz slin: Asterisk reads every audio message as that."""
        if frame and not self._writer.is_closing():
            self._writer.write(audiosocket.encode_audio(frame))

    def close(self) -> None:
        """Close the connection; Asterisk then hangs up the channel."""
        if not self._writer.is_closing():
            self._writer.close()


class AudioSocketServer:
    """The TCP listener Asterisk connects to for every AudioSocket channel."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._expected: dict[uuid.UUID, tuple[FrameSink, asyncio.Future[AudioSocketTransport]]] = {}
        self.unknown_connections = 0
        self.malformed_connections = 0
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

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

    async def close(self) -> None:
        """Stop listening and close every connection still open."""
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
        reason = await self._relay(transport, reader, decoder, messages, error)
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
