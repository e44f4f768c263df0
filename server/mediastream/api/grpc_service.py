"""gRPC adapter: MediaStreamService over the stream core.

Only translation lives here: proto messages to `StreamSpec` and back, and the
error tree to `google.rpc.Status` (through `mediastream.api.status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.api.status import to_status
from mediastream.core.formats import AudioFormat
from mediastream.core.stream import (
    Chunk,
    Direction,
    Encapsulation,
    StopReason,
    StreamSpec,
    Target,
    TargetKind,
    Transport,
    validate_chunk_ms,
    validate_target_id,
)
from mediastream.errors import FailedPrecondition, InvalidArgument, MediaStreamError
from mediastream.streams import Stream, StreamManager

log = logging.getLogger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["MediaStreamService"].full_name

_FORMATS = {
    pb.AUDIO_FORMAT_UNSPECIFIED: AudioFormat.ULAW,
    pb.AUDIO_FORMAT_ULAW: AudioFormat.ULAW,
    pb.AUDIO_FORMAT_SLIN: AudioFormat.SLIN,
    pb.AUDIO_FORMAT_SLIN16: AudioFormat.SLIN16,
}
_FORMATS_OUT = {v: k for k, v in _FORMATS.items() if k != pb.AUDIO_FORMAT_UNSPECIFIED}
_DIRECTIONS = {
    pb.DIRECTION_UNSPECIFIED: Direction.BOTH,
    pb.DIRECTION_BOTH: Direction.BOTH,
    pb.DIRECTION_IN: Direction.IN,
    pb.DIRECTION_OUT: Direction.OUT,
}
_ENCAPSULATIONS = {
    pb.ENCAPSULATION_UNSPECIFIED: Encapsulation.SLN,
    pb.ENCAPSULATION_SLN: Encapsulation.SLN,
    pb.ENCAPSULATION_RTP: Encapsulation.RTP,
    pb.ENCAPSULATION_AUDIOSOCKET: Encapsulation.AUDIOSOCKET,
}
_TRANSPORTS = {
    pb.MEDIA_TRANSPORT_RTP: Transport.RTP,
    pb.MEDIA_TRANSPORT_AUDIOSOCKET: Transport.AUDIOSOCKET,
    pb.MEDIA_TRANSPORT_WEBSOCKET: Transport.WEBSOCKET,
}
_TRANSPORTS_OUT = {v: k for k, v in _TRANSPORTS.items()}
_STOP_REASONS = {
    StopReason.CLIENT_DONE: pb.STOP_REASON_CLIENT_DONE,
    StopReason.CALL_HANGUP: pb.STOP_REASON_CALL_HANGUP,
    StopReason.CONFERENCE_ENDED: pb.STOP_REASON_CONFERENCE_ENDED,
    StopReason.SERVER_SHUTDOWN: pb.STOP_REASON_SERVER_SHUTDOWN,
    StopReason.ASTERISK_FAILURE: pb.STOP_REASON_ASTERISK_FAILURE,
}


def _enum(table: dict[int, object], value: int, field: str) -> object:
    try:
        return table[value]
    except KeyError:
        raise InvalidArgument(
            field, f"{field} has unknown value {value}", reason="UNKNOWN_ENUM_VALUE"
        ) from None


def spec_from_config(
    config: pb.StreamConfig, *, bidirectional: bool, default_transport: Transport
) -> StreamSpec:
    """Validate a proto StreamConfig into a StreamSpec.

    Raises:
        InvalidArgument: naming the first field that is wrong.
    """
    which = config.WhichOneof("target")
    if which == "call_id":
        target = Target(TargetKind.CALL, validate_target_id("config.call_id", config.call_id))
    elif which == "conference_id":
        target = Target(
            TargetKind.CONFERENCE, validate_target_id("config.conference_id", config.conference_id)
        )
    else:
        raise InvalidArgument(
            "config.target", "set config.call_id or config.conference_id", reason="MISSING_TARGET"
        )
    fmt = _enum(_FORMATS, config.format, "config.format")
    direction = _enum(_DIRECTIONS, config.direction, "config.direction")
    encapsulation = _enum(_ENCAPSULATIONS, config.encapsulation, "config.encapsulation")
    transport = (
        default_transport
        if config.transport == pb.MEDIA_TRANSPORT_UNSPECIFIED
        else _enum(_TRANSPORTS, config.transport, "config.transport")
    )
    assert isinstance(fmt, AudioFormat) and isinstance(direction, Direction)
    assert isinstance(encapsulation, Encapsulation) and isinstance(transport, Transport)
    return StreamSpec(
        target=target,
        format=fmt,
        direction=direction if target.kind is TargetKind.CALL else Direction.BOTH,
        chunk_ms=validate_chunk_ms(config.chunk_ms),
        encapsulation=encapsulation,
        transport=transport,
        bidirectional=bidirectional,
    )


def _started(stream: Stream) -> pb.StreamStarted:
    spec = stream.spec
    return pb.StreamStarted(
        stream_id=stream.id,
        format=_FORMATS_OUT[spec.format],
        sample_rate_hz=spec.format.sample_rate,
        frame_bytes=spec.format.frame_bytes,
        chunk_ms=spec.chunk_ms,
        encapsulation={
            v: k for k, v in _ENCAPSULATIONS.items() if k != pb.ENCAPSULATION_UNSPECIFIED
        }[spec.encapsulation],
        transport=_TRANSPORTS_OUT[spec.transport],
    )


def _audio(chunk: Chunk) -> pb.AudioChunk:
    return pb.AudioChunk(
        data=chunk.data, sequence_number=chunk.sequence_number, timestamp=chunk.timestamp
    )


class MediaStreamServicer(pb_grpc.MediaStreamServiceServicer):
    """The gRPC MediaStreamService."""

    def __init__(self, streams: StreamManager, default_transport: Transport) -> None:
        self._streams = streams
        self._default_transport = default_transport

    async def StreamMedia(
        self,
        request_iterator: AsyncIterator[pb.StreamMediaRequest],
        context: grpc.aio.ServicerContext[pb.StreamMediaRequest, pb.StreamMediaResponse],
    ) -> AsyncIterator[pb.StreamMediaResponse]:
        """Two-way stream; see the proto for the contract."""
        stream: Stream | None = None
        reader: asyncio.Task[None] | None = None
        try:
            first = await anext(aiter(request_iterator), None)
            if first is None or first.WhichOneof("payload") != "config":
                raise FailedPrecondition(
                    "the first message must carry config", reason="CONFIG_NOT_FIRST"
                )
            spec = spec_from_config(
                first.config, bidirectional=True, default_transport=self._default_transport
            )
            stream = await self._streams.open(spec)
            yield pb.StreamMediaResponse(started=_started(stream))
            reader = asyncio.create_task(self._read_input(request_iterator, stream))
            async for chunk in stream.chunks():
                yield pb.StreamMediaResponse(audio=_audio(chunk))
            if stream.error is not None:
                raise stream.error
            stopped = await stream.stopped
            yield pb.StreamMediaResponse(
                stopped=pb.StreamStopped(
                    reason=_STOP_REASONS[stopped.reason], detail=stopped.detail
                )
            )
        except MediaStreamError as exc:
            log.info("StreamMedia refused: %s (%s)", exc.message, exc.reason)
            await context.abort_with_status(to_status(exc))
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                    await reader
            if stream is not None:
                await self._streams.close(stream, StopReason.CLIENT_DONE, "client went away")

    async def _read_input(
        self, requests: AsyncIterator[pb.StreamMediaRequest], stream: Stream
    ) -> None:
        try:
            async for request in requests:
                kind = request.WhichOneof("payload")
                if kind == "audio":
                    stream.play(request.audio.data)
                elif kind == "config":
                    raise FailedPrecondition(
                        "config may only be sent first", reason="CONFIG_NOT_FIRST"
                    )
            stream.end_input()
        except MediaStreamError as exc:
            stream.fail(exc)

    async def ListenMedia(
        self,
        request: pb.ListenMediaRequest,
        context: grpc.aio.ServicerContext[pb.ListenMediaRequest, pb.ListenMediaResponse],
    ) -> AsyncIterator[pb.ListenMediaResponse]:
        """Listen-only stream; see the proto for the contract."""
        stream: Stream | None = None
        try:
            spec = spec_from_config(
                request.config, bidirectional=False, default_transport=self._default_transport
            )
            stream = await self._streams.open(spec)
            yield pb.ListenMediaResponse(started=_started(stream))
            async for chunk in stream.chunks():
                yield pb.ListenMediaResponse(audio=_audio(chunk))
            stopped = await stream.stopped
            yield pb.ListenMediaResponse(
                stopped=pb.StreamStopped(
                    reason=_STOP_REASONS[stopped.reason], detail=stopped.detail
                )
            )
        except MediaStreamError as exc:
            log.info("ListenMedia refused: %s (%s)", exc.message, exc.reason)
            await context.abort_with_status(to_status(exc))
        finally:
            if stream is not None:
                await self._streams.close(stream, StopReason.CLIENT_DONE, "client went away")
