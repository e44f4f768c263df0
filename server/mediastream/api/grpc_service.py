"""gRPC adapter: MediaStreamService over the stream core.

Only translation lives here: proto messages to `StreamSpec` and back, and the
error tree to `google.rpc.Status` (through `mediastream.api.status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import grpc

from mediastream import logs, metrics
from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.api.status import to_status, unary_errors
from mediastream.auth import Authenticator, Principal, client_id
from mediastream.core.formats import AudioFormat
from mediastream.core.stream import (
    Chunk,
    Direction,
    Dtmf,
    Encapsulation,
    Flow,
    MarkReached,
    PlaybackCleared,
    StopReason,
    StreamEvent,
    StreamSpec,
    Target,
    TargetKind,
    Transport,
    validate_chunk_ms,
    validate_target_id,
)
from mediastream.errors import FailedPrecondition, InvalidArgument, MediaStreamError, Unavailable
from mediastream.streams import Stream, StreamManager, StreamStopped

log = logging.getLogger(__name__)

_T = TypeVar("_T")

FIRST_MESSAGE_TIMEOUT_S = 10.0
"""How long StreamMedia waits for its first message (the config) before ending the call."""

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["MediaStreamService"].full_name

FORMATS = {
    pb.AUDIO_FORMAT_UNSPECIFIED: AudioFormat.ULAW,
    pb.AUDIO_FORMAT_ULAW: AudioFormat.ULAW,
    pb.AUDIO_FORMAT_SLIN: AudioFormat.SLIN,
    pb.AUDIO_FORMAT_SLIN16: AudioFormat.SLIN16,
}
FORMATS_OUT = {v: k for k, v in FORMATS.items() if k != pb.AUDIO_FORMAT_UNSPECIFIED}
DIRECTIONS = {
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
_ENCAPSULATIONS_OUT = {
    v: k for k, v in _ENCAPSULATIONS.items() if k != pb.ENCAPSULATION_UNSPECIFIED
}
_STOP_REASONS = {
    StopReason.CLIENT_DONE: pb.STOP_REASON_CLIENT_DONE,
    StopReason.CALL_HANGUP: pb.STOP_REASON_CALL_HANGUP,
    StopReason.CONFERENCE_ENDED: pb.STOP_REASON_CONFERENCE_ENDED,
    StopReason.SERVER_SHUTDOWN: pb.STOP_REASON_SERVER_SHUTDOWN,
    StopReason.ASTERISK_FAILURE: pb.STOP_REASON_ASTERISK_FAILURE,
    StopReason.CLIENT_HANGUP: pb.STOP_REASON_CLIENT_HANGUP,
}


def enum_value(table: Mapping[Any, _T], value: int, field: str) -> _T:
    """The domain value of a proto enum number.

    Raises:
        InvalidArgument: the number is not one the contract defines.
    """
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
    fmt = enum_value(FORMATS, config.format, "config.format")
    direction = enum_value(DIRECTIONS, config.direction, "config.direction")
    encapsulation = enum_value(_ENCAPSULATIONS, config.encapsulation, "config.encapsulation")
    transport = (
        default_transport
        if config.transport == pb.MEDIA_TRANSPORT_UNSPECIFIED
        else enum_value(_TRANSPORTS, config.transport, "config.transport")
    )
    return StreamSpec(
        target=target,
        format=fmt,
        direction=direction if target.kind is TargetKind.CALL else Direction.BOTH,
        chunk_ms=validate_chunk_ms(config.chunk_ms),
        encapsulation=encapsulation,
        transport=transport,
        bidirectional=bidirectional,
        resumable=config.resumable,
    )


def _started(stream: Stream, resumed: bool, instance_address: str) -> pb.StreamStarted:
    spec = stream.spec
    return pb.StreamStarted(
        stream_id=stream.id,
        format=FORMATS_OUT[spec.format],
        sample_rate_hz=spec.format.sample_rate,
        frame_bytes=spec.format.frame_bytes,
        chunk_ms=spec.chunk_ms,
        encapsulation=_ENCAPSULATIONS_OUT[spec.encapsulation],
        transport=_TRANSPORTS_OUT[spec.transport],
        resume_token=stream.resume_token,
        resumed=resumed,
        buffer_high_chunks=stream.buffer_high_ms // spec.chunk_ms,
        instance_address=instance_address,
    )


def _peer_host(peer: str) -> str:
    """The host of a gRPC peer (``ipv4:10.0.0.7:5123`` → ``10.0.0.7``)."""
    _, _, address = peer.partition(":")
    host, sep, port = address.rpartition(":")
    return host if sep and port.isdigit() else address


def _final(stopped: StreamStopped) -> StreamStopped:
    """A stream that Asterisk failed ends with UNAVAILABLE, so clients can retry.

    Raises:
        Unavailable: if Asterisk failed.
    """
    if stopped.reason is StopReason.ASTERISK_FAILURE:
        raise Unavailable(stopped.detail, reason="ASTERISK_FAILURE")
    return stopped


def _check_owner(stream: Stream, attachment: int) -> None:
    """Raise if another connection resumed the stream while this one was reading it.

    Raises:
        FailedPrecondition: the stream was taken over (STREAM_TAKEN_OVER).
    """
    if stream.attachment != attachment:
        raise FailedPrecondition(
            "the stream was resumed on another connection", reason="STREAM_TAKEN_OVER"
        )


def _stopped(stopped: StreamStopped) -> pb.StreamStopped:
    return pb.StreamStopped(reason=_STOP_REASONS[stopped.reason], detail=stopped.detail)


def _response_fields(item: Chunk | StreamEvent) -> dict[str, object]:
    """The oneof field of a response message carrying `item`."""
    if isinstance(item, Chunk):
        metrics.ADDED_LATENCY.observe(time.monotonic() - item.arrived)
        return {
            "audio": pb.AudioChunk(
                data=item.data, sequence_number=item.sequence_number, timestamp=item.timestamp
            )
        }
    if isinstance(item, Dtmf):
        return {"dtmf": pb.DtmfReceived(digit=item.digit, duration_ms=item.duration_ms)}
    if isinstance(item, MarkReached):
        return {"mark": pb.MarkPlayed(name=item.name, position_ms=item.position_ms)}
    if isinstance(item, PlaybackCleared):
        return {
            "cleared": pb.Cleared(
                position_ms=item.position_ms, dropped_marks=list(item.dropped_marks)
            )
        }
    assert isinstance(item, Flow)
    state = pb.FLOW_STATE_PAUSE if item.paused else pb.FLOW_STATE_RESUME
    return {"flow": pb.FlowControl(state=state, buffered_ms=item.buffered_ms)}


END_OF_INPUT_GRACE_S = 0.2
"""Seconds between the end of a StreamMedia's requests and taking it as the end of input.

What a broken connection needs for gRPC to cancel the call (a few ms on loopback), with room
for a busy machine; a client's half-close ends its stream this much later.
"""


class MediaStreamServicer(pb_grpc.MediaStreamServiceServicer):
    """The gRPC MediaStreamService."""

    def __init__(
        self, streams: StreamManager, default_transport: Transport, auth: Authenticator
    ) -> None:
        self._streams = streams
        self._default_transport = default_transport
        self._auth = auth

    async def _attach(
        self,
        config: pb.StreamConfig,
        context: grpc.aio.ServicerContext[object, object],
        *,
        bidirectional: bool,
    ) -> tuple[Stream, bool]:
        principal: Principal = self._auth.authenticate_metadata(context.invocation_metadata() or ())
        spec = spec_from_config(
            config, bidirectional=bidirectional, default_transport=self._default_transport
        )
        logs.target.set(f"{spec.target.kind.value}:{spec.target.id}")
        principal.check(spec.target)
        if config.HasField("resume"):
            stream = self._streams.resume(config.resume.token, spec, principal.identity)
            last = (
                config.resume.last_sequence_number
                if config.resume.HasField("last_sequence_number")
                else None
            )
            lost = stream.rewind(last)
            if lost:
                log.warning("stream %s resumed with %d chunks no longer held", stream.id, lost)
            return stream, True
        client = client_id(principal, _peer_host(context.peer()))
        return await self._streams.open(spec, client, principal.identity), False

    async def _release(self, stream: Stream | None, attachment: int = 0) -> None:
        if stream is None or stream.attachment != attachment:
            return  # another connection resumed the stream and owns it now
        if stream.stopped.done() or stream.error is not None or not stream.spec.resumable:
            await self._streams.close(stream, StopReason.CLIENT_DONE, "stream ended")
        else:
            # The client vanished mid-stream: keep it for a resume.
            self._streams.detach(stream)

    async def StreamMedia(
        self,
        request_iterator: AsyncIterator[pb.StreamMediaRequest],
        context: grpc.aio.ServicerContext[pb.StreamMediaRequest, pb.StreamMediaResponse],
    ) -> AsyncIterator[pb.StreamMediaResponse]:
        """Two-way stream; see the proto for the contract."""
        stream: Stream | None = None
        attachment = 0
        reader: asyncio.Task[None] | None = None
        try:
            try:
                # Credentials come with the first message: a call that never sends it
                # must not hold a slot (and memory) for ever.
                first = await asyncio.wait_for(
                    anext(aiter(request_iterator), None), FIRST_MESSAGE_TIMEOUT_S
                )
            except TimeoutError:
                raise FailedPrecondition(
                    f"send the config message within {FIRST_MESSAGE_TIMEOUT_S:g} s of opening "
                    "the stream",
                    reason="CONFIG_TIMEOUT",
                ) from None
            if first is None or first.WhichOneof("payload") != "config":
                raise FailedPrecondition(
                    "the first message must carry config", reason="CONFIG_NOT_FIRST"
                )
            stream, resumed = await self._attach(first.config, context, bidirectional=True)
            attachment = stream.attachment
            yield pb.StreamMediaResponse(
                started=_started(stream, resumed, self._streams.instance_address)
            )
            reader = asyncio.create_task(self._read_input(request_iterator, stream, context))
            async for item in stream.output():
                yield pb.StreamMediaResponse(**_response_fields(item))  # type: ignore[arg-type]
            _check_owner(stream, attachment)
            if stream.error is not None:
                raise stream.error
            yield pb.StreamMediaResponse(stopped=_stopped(_final(await stream.stopped)))
        except MediaStreamError as exc:
            metrics.STREAM_ERRORS.labels(exc.reason).inc()
            log.warning(
                "StreamMedia refused for %s%s: %s (%s)",
                context.peer(),
                logs.who(),
                exc.message,
                exc.reason,
            )
            await context.abort_with_status(to_status(exc))
        finally:
            try:
                if reader is not None:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
            finally:
                # Also when gRPC cancels this handler while the reader winds down
                # (after an abort): a stream left unreleased would hold its leg.
                await asyncio.shield(self._release(stream, attachment))

    async def _read_input(
        self,
        requests: AsyncIterator[pb.StreamMediaRequest],
        stream: Stream,
        context: grpc.aio.ServicerContext[pb.StreamMediaRequest, pb.StreamMediaResponse],
    ) -> None:
        # Straight __anext__ calls: anext()'s wrapper is a cost every message of a
        # burst pays ahead of the clear behind it (issue 16).
        next_request = requests.__anext__
        try:
            while True:
                # Always reading, never waiting for the play buffer to drain: a clear,
                # mark, DTMF or hang-up behind a burst of audio takes effect at once.
                # The buffer's cap bounds what the stream holds (Stream.play).
                if stream.error is not None:
                    return  # failed (e.g. EVENT_BACKLOG): nothing more is read
                try:
                    request = await next_request()
                except StopAsyncIteration:
                    # The requests end both when the client half-closes (its input is
                    # done) and when its connection breaks; gRPC tells the second apart
                    # only by cancelling the call, which it does a moment after. A broken
                    # connection is not the end of the input: the stream waits for a
                    # resume, which reads (and plays) on. Ending the input here made a
                    # resumed two-way stream refuse every send (INPUT_ENDED).
                    await asyncio.sleep(END_OF_INPUT_GRACE_S)
                    if context.cancelled() or context.done():
                        return
                    break
                kind = request.WhichOneof("payload")
                if kind == "audio":
                    audio = request.audio
                    # The sequence number places a ControlStream clear that overtook
                    # this chunk (it is dropped then).
                    stream.play(audio.data, audio.sequence_number)
                elif kind == "mark":
                    stream.mark(request.mark.name)
                elif kind == "clear":
                    stream.clear()
                elif kind == "dtmf":
                    stream.send_dtmf(request.dtmf.digits, request.dtmf.duration_ms)
                elif kind == "hangup":
                    await self._streams.hangup(stream)
                elif kind == "config":
                    raise FailedPrecondition(
                        "config may only be sent first", reason="CONFIG_NOT_FIRST"
                    )
            stream.end_input()
        except MediaStreamError as exc:
            stream.fail(exc)

    @unary_errors
    async def ControlStream(
        self,
        request: pb.ControlStreamRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> pb.ControlStreamResponse:
        """A clear, DTMF or hangup for a running stream, beside it; see the proto."""
        # The stream's own credentials, checked as when it was opened: the same
        # authenticator, then only the identity that opened it (as for a resume).
        principal: Principal = self._auth.authenticate_metadata(context.invocation_metadata() or ())
        stream = self._streams.controlled(request.stream_id, principal.identity)
        target = stream.spec.target
        logs.target.set(f"{target.kind.value}:{target.id}")
        principal.check(target)
        command = request.WhichOneof("command")
        if command is None:
            raise InvalidArgument(
                "command", "set one command: clear, dtmf or hangup", reason="MISSING_COMMAND"
            )
        if not stream.spec.bidirectional:
            # As on the stream: a listen-only stream sends nothing into the call.
            raise FailedPrecondition(
                f"stream {stream.id} is listen-only: it cannot {command}; open the stream "
                "with StreamMedia to play audio, DTMF or hang up",
                reason="LISTEN_ONLY",
            )
        metrics.STREAM_CONTROLS.labels(command).inc()
        if command == "clear":
            last = (
                request.last_sent_sequence_number
                if request.HasField("last_sent_sequence_number")
                else None
            )
            cleared = stream.clear(last, request.marks_and_dtmf_sent)
            log.info(
                "stream %s: clear by ControlStream: cut at %d ms, %d marks dropped",
                stream.id,
                cleared.position_ms,
                len(cleared.dropped_marks),
            )
            return pb.ControlStreamResponse(**_response_fields(cleared))  # type: ignore[arg-type]
        if command == "dtmf":
            stream.send_dtmf(request.dtmf.digits, request.dtmf.duration_ms, overtaking=True)
            log.info(
                "stream %s: DTMF by ControlStream (%d digits)", stream.id, len(request.dtmf.digits)
            )
        else:
            await self._streams.hangup(stream)
            log.info("stream %s: hangup by ControlStream", stream.id)
        return pb.ControlStreamResponse()

    async def ListenMedia(
        self,
        request: pb.ListenMediaRequest,
        context: grpc.aio.ServicerContext[pb.ListenMediaRequest, pb.ListenMediaResponse],
    ) -> AsyncIterator[pb.ListenMediaResponse]:
        """Listen-only stream; see the proto for the contract."""
        stream: Stream | None = None
        attachment = 0
        try:
            stream, resumed = await self._attach(request.config, context, bidirectional=False)
            attachment = stream.attachment
            yield pb.ListenMediaResponse(
                started=_started(stream, resumed, self._streams.instance_address)
            )
            async for item in stream.output():
                if isinstance(item, Chunk | Dtmf):
                    yield pb.ListenMediaResponse(**_response_fields(item))  # type: ignore[arg-type]
            _check_owner(stream, attachment)
            yield pb.ListenMediaResponse(stopped=_stopped(_final(await stream.stopped)))
        except MediaStreamError as exc:
            metrics.STREAM_ERRORS.labels(exc.reason).inc()
            log.warning(
                "ListenMedia refused for %s%s: %s (%s)",
                context.peer(),
                logs.who(),
                exc.message,
                exc.reason,
            )
            await context.abort_with_status(to_status(exc))
        finally:
            await self._release(stream, attachment)
