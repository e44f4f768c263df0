"""One WebSocket client on one stream: the pumps both dialects share.

A session runs two tasks. The writer relays what `Stream.output()` yields,
through the dialect, and when the stream ends it says why and closes the
socket: it is the only one that closes. The reader hands each client message
to the dialect as soon as it arrives and never waits for the play buffer to
drain, so a control message (clear, mark, hang-up) behind a burst of audio
takes effect at once; the play buffer's cap bounds what a stream holds. A
message that breaks the contract fails the stream (`Stream.fail`), which ends
the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Protocol

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from mediastream import metrics
from mediastream.core.stream import Chunk, StopReason, StreamEvent
from mediastream.errors import MediaStreamError
from mediastream.shim.errors import close_for_error, close_for_stop, close_reason
from mediastream.streams import Stream, StreamManager, StreamStopped

log = logging.getLogger(__name__)

CLIENT_WENT_AWAY = "WebSocket client went away"
"""The detail of a stream the session ended because its peer left."""

PEER_END_WAIT_S = 1.0
"""How long the reader gets to see the peer's end after the writer failed on a lost connection."""

CLOSE_TIMEOUT_S = 5.0
"""How long the writer may take to report an error and close before it is cut off."""


class ShimWebSocket(web.WebSocketResponse):
    """aiohttp's WebSocket response, with a reason on its own 1009 close.

    aiohttp enforces the message size cap itself and closes with 1009 and an
    empty reason; clients deserve to know the limit.
    """

    async def close(
        self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True
    ) -> bool:
        """Close the connection (see `aiohttp.web.WebSocketResponse.close`)."""
        if code == WSCloseCode.MESSAGE_TOO_BIG and not message:
            message = close_reason(
                f"MESSAGE_TOO_BIG: a message may hold at most {self._max_msg_size} bytes; "
                "split the audio into smaller messages"
            )
        return await super().close(code=code, message=message, drain=drain)


class WebSocketLike(Protocol):
    """What a dialect needs of a connection.

    Either side: an upgraded request, or a dial-out's `aiohttp.ClientWebSocketResponse`.
    """

    @property
    def closed(self) -> bool:
        """Whether the connection is closed or closing."""

    async def send_str(self, data: str, compress: int | None = None) -> None:
        """Send a text message."""

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None:
        """Send a binary message."""

    async def receive(self, timeout: float | None = None) -> WSMessage:
        """The next message, or a CLOSE/CLOSED/ERROR one."""

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool:
        """Close the connection."""


class Dialect(ABC):
    """How one wire dialect turns stream output into messages and messages into calls.

    Args:
        ws: The connection (accepted, or dialled out).
        stream: The stream it carries.
        streams: The stream manager (for hang-up).
    """

    def __init__(self, ws: WebSocketLike, stream: Stream, streams: StreamManager) -> None:
        self.ws = ws
        self.stream = stream
        self.streams = streams
        self.peer_end: WSMessage | None = None
        """The CLOSE, CLOSED or ERROR message that ended the session when the peer
        ended it (not when the gateway closed first): how a dial-out tells why."""
        self.wait_for_peer_end = False
        """Give the reader PEER_END_WAIT_S to see the peer's end when the writer lost the
        connection first (dial-outs report it; accepted connections need not wait)."""

    @abstractmethod
    async def opened(self) -> None:
        """Send whatever the dialect sends before the first audio."""

    @abstractmethod
    async def send(self, item: Chunk | StreamEvent) -> None:
        """Send one chunk or event to the client."""

    @abstractmethod
    async def stopped(self, stopped: StreamStopped) -> None:
        """Say that the stream ended, before the close frame."""

    @abstractmethod
    async def failed(self, error: MediaStreamError) -> None:
        """Say that the stream failed, before the close frame."""

    @abstractmethod
    async def on_binary(self, data: bytes) -> None:
        """Handle a binary message.

        Raises:
            MediaStreamError: the message breaks the dialect's contract.
        """

    @abstractmethod
    async def on_text(self, text: str) -> None:
        """Handle a text message.

        Raises:
            MediaStreamError: the message breaks the dialect's contract.
        """


async def run_session(dialect: Dialect, *, release: bool = True) -> None:
    """Carry `dialect`'s stream over its WebSocket until either side ends it.

    Args:
        dialect: The dialect over its connection.
        release: Release the stream before returning (always, for accepted
            connections); False: the caller does, or carries it on over a new
            connection (a dial-out redialling a lost bot).
    """
    ws, stream = dialect.ws, dialect.stream
    closing = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        # Before the writer starts: the dialect's opening messages come first.
        try:
            await dialect.opened()
        except ConnectionError:
            return  # the client left during the upgrade; the stream is released below
        writer = asyncio.create_task(_write(dialect, closing), name=f"ws-write-{stream.id}")
        reader = asyncio.create_task(_read(dialect, closing), name=f"ws-read-{stream.id}")
        tasks += (writer, reader)
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if (
            dialect.wait_for_peer_end
            and writer.done()
            and not reader.done()
            and not closing.is_set()
        ):
            # The writer lost the connection mid-send: the reader is about to see how
            # (a close frame or none), which a dial-out reports.
            await asyncio.wait({reader}, timeout=PEER_END_WAIT_S)
        if not writer.done() and (closing.is_set() or stream.error is not None):
            # The reader ended because the stream failed or the server is
            # closing: let the writer say why and finish the close handshake.
            await asyncio.wait({writer}, timeout=CLOSE_TIMEOUT_S)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        code, reason = int(WSCloseCode.GOING_AWAY), "server_shutdown"
        for result in results:
            # A peer that vanished mid-send is normal; anything else is a bug.
            if isinstance(result, Exception) and not isinstance(result, ConnectionError):
                log.error("stream %s: WebSocket session failed", stream.id, exc_info=result)
                code, reason = int(WSCloseCode.INTERNAL_ERROR), "INTERNAL: unexpected error"
        if not ws.closed:
            with contextlib.suppress(ConnectionError):
                await ws.close(code=code, message=reason.encode())
        if release:
            await dialect.streams.close(stream, StopReason.CLIENT_DONE, CLIENT_WENT_AWAY)


async def _write(dialect: Dialect, closing: asyncio.Event) -> None:
    ws, stream = dialect.ws, dialect.stream
    async for item in stream.output():
        await dialect.send(item)
    closing.set()
    if stream.error is not None:
        code, reason = close_for_error(stream.error)
        await dialect.failed(stream.error)
    else:
        stopped = stream.stopped.result()
        code, reason = close_for_stop(stopped)
        await dialect.stopped(stopped)
    log.info("closing WebSocket of stream %s: %d %s", stream.id, code, reason)
    await ws.close(code=code, message=close_reason(reason))


async def _read(dialect: Dialect, closing: asyncio.Event) -> None:
    ws, stream = dialect.ws, dialect.stream
    try:
        while stream.error is None:  # a failed stream (e.g. EVENT_BACKLOG) is not read
            msg = await ws.receive()
            if msg.type is WSMsgType.BINARY:
                await dialect.on_binary(msg.data)
            elif msg.type is WSMsgType.TEXT:
                await dialect.on_text(msg.data)
            else:
                # CLOSE, CLOSING, CLOSED or ERROR: the client is gone or going.
                if not closing.is_set() and stream.error is None:
                    dialect.peer_end = msg
                return
    except MediaStreamError as exc:
        # The client's mistake (or a limit it ran into): a WARNING and a count, as on gRPC.
        metrics.STREAM_ERRORS.labels(exc.reason).inc()
        log.warning(
            "stream %s refused the client's message: %s (%s)", stream.id, exc.message, exc.reason
        )
        stream.fail(exc)
