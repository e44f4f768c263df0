"""Async client for the mediastream gateway.

Example:
    async with MediaStreamClient("127.0.0.1:50051") as client:
        async with client.listen(call_id=CALL, format=AudioFormat.SLIN) as stream:
            async for chunk in stream:
                handle(chunk.data)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import grpc

from mediastream_client._proto import mediastream_pb2 as pb
from mediastream_client._proto import mediastream_pb2_grpc as pb_grpc
from mediastream_client.errors import RPCError
from mediastream_client.types import (
    AudioChunk,
    AudioFormat,
    Direction,
    Encapsulation,
    Stopped,
    StopReason,
    StreamInfo,
    Transport,
)

_FORMATS = {
    AudioFormat.ULAW: pb.AUDIO_FORMAT_ULAW,
    AudioFormat.SLIN: pb.AUDIO_FORMAT_SLIN,
    AudioFormat.SLIN16: pb.AUDIO_FORMAT_SLIN16,
}
_DIRECTIONS = {
    Direction.BOTH: pb.DIRECTION_BOTH,
    Direction.IN: pb.DIRECTION_IN,
    Direction.OUT: pb.DIRECTION_OUT,
}
_ENCAPSULATIONS = {
    Encapsulation.SLN: pb.ENCAPSULATION_SLN,
    Encapsulation.RTP: pb.ENCAPSULATION_RTP,
    Encapsulation.AUDIOSOCKET: pb.ENCAPSULATION_AUDIOSOCKET,
}
_TRANSPORTS = {
    Transport.RTP: pb.MEDIA_TRANSPORT_RTP,
    Transport.AUDIOSOCKET: pb.MEDIA_TRANSPORT_AUDIOSOCKET,
    Transport.WEBSOCKET: pb.MEDIA_TRANSPORT_WEBSOCKET,
}
_STOP_REASONS = {
    pb.STOP_REASON_UNSPECIFIED: StopReason.UNSPECIFIED,
    pb.STOP_REASON_CLIENT_DONE: StopReason.CLIENT_DONE,
    pb.STOP_REASON_CALL_HANGUP: StopReason.CALL_HANGUP,
    pb.STOP_REASON_CONFERENCE_ENDED: StopReason.CONFERENCE_ENDED,
    pb.STOP_REASON_SERVER_SHUTDOWN: StopReason.SERVER_SHUTDOWN,
    pb.STOP_REASON_ASTERISK_FAILURE: StopReason.ASTERISK_FAILURE,
}


def _reverse(table: dict[Any, int]) -> dict[int, Any]:
    return {v: k for k, v in table.items()}


def _config(
    call_id: str | None,
    conference_id: str | None,
    fmt: AudioFormat,
    direction: Direction,
    chunk_ms: int,
    encapsulation: Encapsulation,
    transport: Transport | None,
) -> pb.StreamConfig:
    if (call_id is None) == (conference_id is None):
        raise ValueError("give exactly one of call_id and conference_id")
    config = pb.StreamConfig(
        format=_FORMATS[fmt],
        direction=_DIRECTIONS[direction],
        chunk_ms=chunk_ms,
        encapsulation=_ENCAPSULATIONS[encapsulation],
        transport=_TRANSPORTS[transport] if transport else pb.MEDIA_TRANSPORT_UNSPECIFIED,
    )
    if call_id is not None:
        config.call_id = call_id
    else:
        assert conference_id is not None
        config.conference_id = conference_id
    return config


def _info(started: Any) -> StreamInfo:
    return StreamInfo(
        stream_id=started.stream_id,
        format=_reverse(_FORMATS)[started.format],
        sample_rate=started.sample_rate_hz,
        frame_bytes=started.frame_bytes,
        chunk_ms=started.chunk_ms,
        encapsulation=_reverse(_ENCAPSULATIONS)[started.encapsulation],
        transport=_reverse(_TRANSPORTS)[started.transport],
    )


class _Stream:
    """Shared machinery of listen-only and two-way streams."""

    def __init__(self) -> None:
        self._call: Any = None
        self.info: StreamInfo | None = None
        """What the server confirmed; set once the stream has started."""
        self.stopped: Stopped | None = None
        """The final event; set once the server has ended the stream."""

    async def _open(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> _Stream:
        try:
            await self._open()
            first = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise RPCError.from_aio(exc) from None
        if first is grpc.aio.EOF or first.WhichOneof("payload") != "started":
            raise RPCError(grpc.StatusCode.INTERNAL, "server did not confirm the stream", None)
        self.info = _info(first.started)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the stream if it is still running."""
        if self._call is not None and not self._call.done():
            self._call.cancel()

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[AudioChunk]:
        while True:
            try:
                msg = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                raise RPCError.from_aio(exc) from None
            if msg is grpc.aio.EOF:
                return
            kind = msg.WhichOneof("payload")
            if kind == "audio":
                a = msg.audio
                yield AudioChunk(a.data, a.sequence_number, a.timestamp)
            elif kind == "stopped":
                self.stopped = Stopped(
                    _STOP_REASONS.get(msg.stopped.reason, StopReason.UNSPECIFIED),
                    msg.stopped.detail,
                )


class ListenStream(_Stream):
    """A listen-only stream: iterate it for the call's audio."""

    def __init__(
        self, stub: pb_grpc.MediaStreamServiceStub, config: pb.StreamConfig, timeout: float | None
    ) -> None:
        super().__init__()
        self._stub, self._config, self._timeout = stub, config, timeout

    async def _open(self) -> None:
        self._call = self._stub.ListenMedia(
            pb.ListenMediaRequest(config=self._config), timeout=self._timeout
        )

    async def __aenter__(self) -> ListenStream:
        await super().__aenter__()
        return self


class DuplexStream(_Stream):
    """A two-way stream: iterate it for the call's audio, `send` audio into the call."""

    def __init__(
        self, stub: pb_grpc.MediaStreamServiceStub, config: pb.StreamConfig, timeout: float | None
    ) -> None:
        super().__init__()
        self._stub, self._config, self._timeout = stub, config, timeout

    async def _open(self) -> None:
        self._call = self._stub.StreamMedia(timeout=self._timeout)
        await self._call.write(pb.StreamMediaRequest(config=self._config))

    async def __aenter__(self) -> DuplexStream:
        await super().__aenter__()
        return self

    async def send(self, data: bytes) -> None:
        """Send one chunk (in the stream's format and encapsulation) to be played."""
        try:
            await self._call.write(pb.StreamMediaRequest(audio=pb.AudioChunk(data=data)))
        except grpc.aio.AioRpcError as exc:
            raise RPCError.from_aio(exc) from None

    async def done_sending(self) -> None:
        """End input: the server plays what it has, then stops the stream."""
        await self._call.done_writing()


class MediaStreamClient:
    """A connection to the gateway.

    Args:
        target: ``host:port`` of the gateway's gRPC endpoint.
        channel: An existing channel to use instead (not closed by this client).
    """

    def __init__(
        self, target: str = "127.0.0.1:50051", *, channel: grpc.aio.Channel | None = None
    ) -> None:
        self._own = channel is None
        self._channel = channel or grpc.aio.insecure_channel(target)
        self._stub = pb_grpc.MediaStreamServiceStub(self._channel)

    async def __aenter__(self) -> MediaStreamClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (if this client opened it)."""
        if self._own:
            await self._channel.close()

    def listen(
        self,
        *,
        call_id: str | None = None,
        conference_id: str | None = None,
        format: AudioFormat = AudioFormat.ULAW,
        direction: Direction = Direction.BOTH,
        chunk_ms: int = 20,
        encapsulation: Encapsulation = Encapsulation.SLN,
        transport: Transport | None = None,
        timeout: float | None = None,
    ) -> ListenStream:
        """A listen-only stream of a call or conference (use with ``async with``)."""
        return ListenStream(
            self._stub,
            _config(call_id, conference_id, format, direction, chunk_ms, encapsulation, transport),
            timeout,
        )

    def stream(
        self,
        *,
        call_id: str | None = None,
        conference_id: str | None = None,
        format: AudioFormat = AudioFormat.ULAW,
        direction: Direction = Direction.BOTH,
        chunk_ms: int = 20,
        encapsulation: Encapsulation = Encapsulation.SLN,
        transport: Transport | None = None,
        timeout: float | None = None,
    ) -> DuplexStream:
        """A two-way stream of a call or conference (use with ``async with``)."""
        return DuplexStream(
            self._stub,
            _config(call_id, conference_id, format, direction, chunk_ms, encapsulation, transport),
            timeout,
        )
