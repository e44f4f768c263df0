"""Async client for the mediastream gateway.

Example:
    async with MediaStreamClient("127.0.0.1:50051") as client:
        async with client.listen(call_id=CALL, format=AudioFormat.SLIN) as stream:
            async for chunk in stream.audio():
                handle(chunk.data)
        async with client.stream(call_id=CALL, format=AudioFormat.SLIN) as stream:
            await stream.send(frame)
            await stream.done_sending()
        # Leaving the block after done_sending() waited until `frame` was played.

Which call waits for what:

* ``send`` waits while the server has asked to pause (flow control), then
  until gRPC has taken the message; it does not wait for the audio to play.
* ``mark`` returns at once; the ``MarkPlayed`` event comes when the audio sent
  before it has been played.
* ``done_sending`` only ends the input; the server then plays what it has and
  ends the stream with ``Stopped(CLIENT_DONE)``.
* Leaving ``async with client.stream(...)`` normally (or ``aclose()``) after
  ``done_sending``: waits for that ``Stopped``, at most the audio still to
  play plus ``close_grace`` seconds (default 10), then closes. Without
  ``done_sending``, or when the block is left by an exception, the stream is
  cancelled at once (``cancel()`` does that explicitly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import grpc

from mediastream_client._convert import (
    DIRECTIONS,
    ENCAPSULATIONS,
    FORMATS,
    STOP_REASONS,
    TRANSPORTS,
    reverse,
)
from mediastream_client._proto import mediastream_pb2 as pb
from mediastream_client._proto import mediastream_pb2_grpc as pb_grpc
from mediastream_client.errors import ConfigError, RPCError
from mediastream_client.external_media import ExternalMediaClient
from mediastream_client.types import (
    AudioChunk,
    AudioFormat,
    Cleared,
    Direction,
    DtmfReceived,
    Encapsulation,
    FlowControl,
    MarkPlayed,
    Stopped,
    StopReason,
    StreamEvent,
    StreamInfo,
    Transport,
)

log = logging.getLogger(__name__)


RESUMABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
)
"""Codes after which a stream is resumed (a dropped connection, not a refusal)."""

FINAL_REASONS = frozenset({"ASTERISK_FAILURE", "DRAINING"})
"""Reasons of an UNAVAILABLE that a resume cannot mend: the stream is gone."""

LOCAL_CANCELLATION = "Locally cancelled by application!"
"""grpc.aio's message for a call this process cancelled (never retried)."""

REFUSED_BEFORE_START = "DRAINING"
"""The reason of an UNAVAILABLE with which a draining instance refuses a new stream."""

DEFAULT_OPEN_RETRIES = 3
"""How many times a stream refused before it started is opened again (`MediaStreamClient`)."""

OPEN_RETRY_BACKOFF_S = 0.05
"""The first pause before opening again; it doubles with each attempt."""

OPEN_RETRY_CONNECT_S = 2.0
"""How long an attempt waits, at most, for its channel to connect again before it is made."""

TARGET_HEADER = "x-mediastream-target"
"""Sent with every stream: ``call:<id>`` or ``conference:<id>``. A proxy that hashes on it
(deploy/nginx, deploy/haproxy) sends every stream of a call, and its resumes, to one
instance, so that per-call limits hold across instances and a resume needs no second hop."""

WRONG_INSTANCE = "RESUME_WRONG_INSTANCE"
"""A resume reached a gateway instance other than the one holding the stream."""

CONTROL_TIMEOUT_S = 10.0
"""Seconds a `clear` or `hangup` (one ControlStream call) may take at most."""

DEFAULT_CLOSE_GRACE = 10.0
"""Seconds that leaving a two-way stream after ``done_sending`` waits for ``Stopped``
beyond the client's estimate of the audio still to play (network, server start-up)."""

_BYTES_PER_MS = {AudioFormat.ULAW: 8, AudioFormat.SLIN: 16, AudioFormat.SLIN16: 32}
"""Bytes of bare samples per millisecond. Headers (RTP, AudioSocket) counted as audio
only lengthen the estimate of what is left to play, which is the safe side."""

StubFor = Callable[[str], pb_grpc.MediaStreamServiceStub]
"""The stub for a gateway instance's own address ("" : the client's target)."""

WaitConnected = Callable[[str, float], Awaitable[None]]
"""Waits (at most the seconds given) until the channel to an address ("" : the client's
target) has connected again."""


def refused_before_start(error: RPCError) -> bool:
    """Whether an error opening a stream means it never started, so opening it again is safe.

    An UNAVAILABLE with reason DRAINING (the instance took the stream on a connection
    it is closing) or with no reason at all (no gateway answered: connection refused
    or reset, a proxy's 502 or 503 without an upstream). A reasoned UNAVAILABLE from
    the gateway (ASTERISK_FAILURE) is an answer, not a refusal to try elsewhere.

    Also a CANCELLED this client did not cause: grpc-core closes a draining
    instance's listener and sends GOAWAY on its own thread a moment after the drain
    begins, and cancels a stream that reached it in that moment (seen through
    HAProxy: 1 new stream of 46 to 112 in a drain under load).
    """
    if error.code is grpc.StatusCode.CANCELLED:
        return error.reason == "" and error.message != LOCAL_CANCELLATION
    return error.code is grpc.StatusCode.UNAVAILABLE and error.reason in ("", REFUSED_BEFORE_START)


def _config(
    call_id: str | None,
    conference_id: str | None,
    fmt: AudioFormat,
    direction: Direction,
    chunk_ms: int,
    encapsulation: Encapsulation,
    transport: Transport | None,
    resumable: bool,
) -> pb.StreamConfig:
    if call_id is not None and conference_id is not None:
        raise ConfigError(
            ConfigError.BOTH_TARGETS, "config.target", "give only one of call_id and conference_id"
        )
    if call_id is None and conference_id is None:
        raise ConfigError(
            ConfigError.MISSING_TARGET, "config.target", "give call_id or conference_id"
        )
    config = pb.StreamConfig(
        resumable=resumable,
        format=FORMATS[fmt],
        direction=DIRECTIONS[direction],
        chunk_ms=chunk_ms,
        encapsulation=ENCAPSULATIONS[encapsulation],
        transport=TRANSPORTS[transport] if transport else pb.MEDIA_TRANSPORT_UNSPECIFIED,
    )
    if call_id is not None:
        config.call_id = call_id
    else:
        assert conference_id is not None
        config.conference_id = conference_id
    return config


def _target_metadata(config: pb.StreamConfig) -> tuple[tuple[str, str], ...]:
    kind = config.WhichOneof("target")
    if kind == "call_id":
        return ((TARGET_HEADER, f"call:{config.call_id}"),)
    if kind == "conference_id":
        return ((TARGET_HEADER, f"conference:{config.conference_id}"),)
    return ()


def _with_resume(
    config: pb.StreamConfig, token: str | None, last_sequence_number: int | None
) -> pb.StreamConfig:
    if token is not None:
        config.resume.token = token
        if last_sequence_number is not None:
            config.resume.last_sequence_number = last_sequence_number
    return config


def _info(started: Any) -> StreamInfo:
    return StreamInfo(
        stream_id=started.stream_id,
        format=reverse(FORMATS)[started.format],
        sample_rate=started.sample_rate_hz,
        frame_bytes=started.frame_bytes,
        chunk_ms=started.chunk_ms,
        encapsulation=reverse(ENCAPSULATIONS)[started.encapsulation],
        transport=reverse(TRANSPORTS)[started.transport],
        resume_token=started.resume_token,
        resumed=started.resumed,
        instance_address=started.instance_address,
    )


def _event(msg: Any) -> StreamEvent | None:
    kind = msg.WhichOneof("payload")
    if kind == "audio":
        return AudioChunk(msg.audio.data, msg.audio.sequence_number, msg.audio.timestamp)
    if kind == "dtmf":
        return DtmfReceived(msg.dtmf.digit, msg.dtmf.duration_ms)
    if kind == "mark":
        return MarkPlayed(msg.mark.name, msg.mark.position_ms)
    if kind == "cleared":
        return Cleared(msg.cleared.position_ms, tuple(msg.cleared.dropped_marks))
    if kind == "flow":
        return FlowControl(msg.flow.state == pb.FLOW_STATE_PAUSE, msg.flow.buffered_ms)
    if kind == "stopped":
        return Stopped(
            STOP_REASONS.get(msg.stopped.reason, StopReason.UNSPECIFIED), msg.stopped.detail
        )
    return None


class _Stream:
    """Shared machinery of listen-only and two-way streams."""

    def __init__(
        self,
        stub_for: StubFor,
        config: pb.StreamConfig,
        metadata: tuple[tuple[str, str], ...],
        timeout: float | None,
        auto_resume: bool,
        instance_address: str = "",
        allowed_instances: frozenset[str] = frozenset(),
        open_retries: int = 0,
        wait_connected: WaitConnected | None = None,
    ) -> None:
        self._stub_for = stub_for
        metadata = metadata + _target_metadata(config)
        self._stub = stub_for(instance_address)
        self._address = instance_address  # of `_stub`: "" is the client's target
        self._open_retries = open_retries
        self._wait_connected = wait_connected
        # Where a RESUME_WRONG_INSTANCE refusal may send this stream: the address the
        # server advertised for it, or one the application allows. A forged token can
        # make a server name any address; credentials must not follow it there.
        self._advertised = instance_address
        self._allowed = allowed_instances
        self._config, self._metadata = config, metadata
        self._timeout, self._auto_resume = timeout, auto_resume
        self._call: Any = None
        self._last_sequence: int | None = None
        self.info: StreamInfo | None = None
        """What the server confirmed; set once the stream has started."""
        self.stopped: Stopped | None = None
        """The final event; set once the server has ended the stream."""
        self.resumes = 0
        """How many times the stream was resumed after a dropped connection."""
        self._ended = asyncio.Event()
        self._readers = 0
        self._readers_changed = asyncio.Event()

    def _open_call(self, config: pb.StreamConfig) -> Any:
        raise NotImplementedError

    async def _start(self, config: pb.StreamConfig, retries: int | None = None) -> None:
        try:
            first = await self._open_retrying(config, retries)
        except RPCError as error:
            holder = error.metadata.get("instance_address", "")
            if error.reason != WRONG_INSTANCE or not holder:
                raise
            advertised = self.info.instance_address if self.info else self._advertised
            if holder != advertised and holder not in self._allowed:
                raise
            # Behind a load balancer: the resume landed on another instance,
            # which names the one holding the stream. Go there directly.
            self._stub, self._address = self._stub_for(holder), holder
            first = await self._open_retrying(config)
        if first is grpc.aio.EOF or first.WhichOneof("payload") != "started":
            raise RPCError(grpc.StatusCode.INTERNAL, "server did not confirm the stream", None)
        self.info = _info(first.started)

    async def _open_retrying(self, config: pb.StreamConfig, retries: int | None = None) -> Any:
        """`_open`, again (up to `open_retries` times) while refused before it started.

        A draining instance closes its listeners and sends GOAWAY, so the channel's
        next attempt goes out on a new connection (to another instance behind a
        proxy or Service): a pause that doubles, then a bounded wait for the
        channel to connect (past gRPC's own reconnect backoff after a refusal).
        """
        attempt = 0
        while True:
            try:
                return await self._open(config)
            except RPCError as error:
                limit = self._open_retries if retries is None else retries
                if attempt >= limit or not refused_before_start(error):
                    raise
                log.info(
                    "stream refused before it started (%s%s); opening it again",
                    error.code.name,
                    f"/{error.reason}" if error.reason else "",
                )
            await asyncio.sleep(OPEN_RETRY_BACKOFF_S * 2**attempt)
            attempt += 1
            if self._wait_connected is not None:
                await self._wait_connected(self._address, OPEN_RETRY_CONNECT_S)

    async def _open(self, config: pb.StreamConfig) -> Any:
        try:
            self._call = self._open_call(config)
            await self._after_open(config)
            return await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise RPCError.from_aio(exc) from None

    async def _after_open(self, config: pb.StreamConfig) -> None:
        """Hook for two-way streams, which send the config as a message."""

    async def __aenter__(self) -> _Stream:
        await self._start(self._config)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            await self.aclose()
        else:
            await self.cancel()

    async def aclose(self) -> None:
        """Close the stream: a listen-only stream is cancelled if still running."""
        await self.cancel()

    async def cancel(self) -> None:
        """Cancel the stream at once if it is still running (nothing more is played)."""
        if self._call is not None and not self._call.done():
            self._call.cancel()

    async def _resume(self) -> None:
        assert self.info is not None
        config = pb.StreamConfig()
        config.CopyFrom(self._config)
        config.resume.token = self.info.resume_token
        if self._last_sequence is not None:
            config.resume.last_sequence_number = self._last_sequence
        # The stream lives on one instance; the load balancer may pick another.
        self._address = self.info.instance_address
        self._stub = self._stub_for(self._address)
        if not self._address or self._stub is self._stub_for(""):
            await self._start(config)
        else:
            try:
                # Once: the balancer below is the retry, and it is quick to reach.
                await self._start(config, retries=0)
            except RPCError as error:
                if not refused_before_start(error):
                    raise
                # The advertised address cannot be reached from here (NAT, a client
                # outside the cluster): through the balancer, which routes by call
                # (x-mediastream-target) to the holder, or reaches an instance that
                # names it (RESUME_WRONG_INSTANCE).
                log.info(
                    "stream %s: instance %s unreachable (%s); resuming through %s",
                    self.info.stream_id,
                    self._address,
                    error.code.name,
                    "the client's target",
                )
                self._address, self._stub = "", self._stub_for("")
                await self._start(config)
        self.resumes += 1

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self.events()

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
        """Every event of the stream: audio chunks, DTMF, marks, clears, flow, stop.

        Iteration waits for the next event and ends after ``Stopped``; it raises
        `RPCError` if the stream fails.
        """
        self._readers += 1
        self._readers_changed.set()
        finished = False
        try:
            async for event in self._read_events():
                yield event
            finished = True
        except RPCError:
            finished = True
            raise
        finally:
            self._readers -= 1
            self._readers_changed.set()
            if finished:
                self._ended.set()
                self._on_end()

    def _on_end(self) -> None:
        """Hook for two-way streams: the stream has ended."""

    async def _read_events(self) -> AsyncIterator[StreamEvent]:
        while True:
            try:
                msg = await self._call.read()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling() == 0 and self._call.cancelled():
                    # The stream was cancelled (cancel(), or a timeout), not this
                    # task: an RPC error, as the other SDKs report it.
                    raise RPCError(
                        grpc.StatusCode.CANCELLED, "the stream was cancelled", None
                    ) from None
                raise
            except grpc.aio.AioRpcError as exc:
                error = RPCError.from_aio(exc)
                if (
                    self._auto_resume
                    and exc.code() in RESUMABLE
                    and error.reason not in FINAL_REASONS
                    and self.info is not None
                ):
                    log.info(
                        "stream %s dropped (%s); resuming", self.info.stream_id, exc.code().name
                    )
                    await self._resume()
                    continue
                raise error from None
            if msg is grpc.aio.EOF:
                return
            event = _event(msg)
            if isinstance(event, AudioChunk):
                self._last_sequence = event.sequence_number
            elif isinstance(event, Stopped):
                self.stopped = event
            elif isinstance(event, FlowControl):
                self._on_flow(event)
            if event is not None:
                yield event

    async def audio(self) -> AsyncIterator[AudioChunk]:
        """Only the audio chunks of the stream."""
        async for event in self.events():
            if isinstance(event, AudioChunk):
                yield event

    def _on_flow(self, event: FlowControl) -> None:
        """Hook for two-way streams."""


class ListenStream(_Stream):
    """A listen-only stream: iterate it for the call's audio and DTMF."""

    def _open_call(self, config: pb.StreamConfig) -> Any:
        return self._stub.ListenMedia(
            pb.ListenMediaRequest(config=config), timeout=self._timeout, metadata=self._metadata
        )

    async def __aenter__(self) -> ListenStream:
        await super().__aenter__()
        return self


class DuplexStream(_Stream):
    """A two-way stream: iterate it for the call's audio, `send` audio into the call.

    `send` waits while the server has asked to pause (FlowControl), so a client
    that sends faster than real time is held back without losing audio.
    """

    def __init__(self, *args: Any, close_grace: float = DEFAULT_CLOSE_GRACE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._close_grace = close_grace
        self._done_sending = False
        self._play_end = 0.0  # loop time by which the audio sent so far has played, at most
        self._may_send = asyncio.Event()
        self._may_send.set()
        self.wait_while_paused = True
        """Whether `send` waits while the server has asked to pause (the Go SDK's
        ``SetWaitWhilePaused``, the TypeScript SDK's ``waitWhilePaused``)."""
        # gRPC allows one write in flight per call; barge-in writes from two tasks.
        self._writing = asyncio.Lock()
        self._sequence = 0
        """Audio chunks handed to `send` so far: the next chunk's sequence number."""
        self._marks_and_dtmf = 0
        """Marks and DTMF messages handed to `mark` and `send_dtmf` so far."""

    def _open_call(self, config: pb.StreamConfig) -> Any:
        return self._stub.StreamMedia(timeout=self._timeout, metadata=self._metadata)

    async def _after_open(self, config: pb.StreamConfig) -> None:
        await self._call.write(pb.StreamMediaRequest(config=config))

    async def __aenter__(self) -> DuplexStream:
        await super().__aenter__()
        return self

    def _on_flow(self, event: FlowControl) -> None:
        if event.paused:
            self._may_send.clear()
        else:
            self._may_send.set()

    @property
    def paused(self) -> bool:
        """Whether the server has asked to pause sending (a FlowControl pause, no resume since)."""
        return not self._may_send.is_set()

    def _on_end(self) -> None:
        # A sender waiting for RESUME must not wait for a stream that is over.
        self._may_send.set()

    async def _write(self, request: pb.StreamMediaRequest) -> None:
        try:
            async with self._writing:
                await self._call.write(request)
        except grpc.aio.AioRpcError as exc:
            raise RPCError.from_aio(exc) from None
        except (asyncio.InvalidStateError, grpc.aio.UsageError):
            # The RPC is over (or its input ended): say so as the other SDKs do,
            # an RPCError, rather than grpc's state error.
            raise RPCError(
                grpc.StatusCode.FAILED_PRECONDITION, "the stream has ended", None
            ) from None

    async def send(self, data: bytes) -> None:
        """Send one chunk (in the stream's format and encapsulation) to be played.

        Waits while the server has asked to pause (unless `wait_while_paused` is
        False), then until gRPC has taken the message; not until it has been
        played (a mark reports that).
        """
        if self.wait_while_paused:
            await self._may_send.wait()
        # Numbered from 0 as the Go and TypeScript SDKs do: a `clear` (beside the
        # stream) names the last chunk sent before it, which the server then drops
        # even if the clear overtook it. Counted before the write: a chunk whose
        # write is under way when `clear` is called was sent before it.
        sequence = self._sequence
        self._sequence += 1
        await self._write(
            pb.StreamMediaRequest(audio=pb.AudioChunk(data=data, sequence_number=sequence))
        )
        self._count_played(len(data) / self._bytes_per_ms())

    def _bytes_per_ms(self) -> int:
        return _BYTES_PER_MS[self.info.format] if self.info is not None else 8

    def _count_played(self, ms: float) -> None:
        # The server plays in real time from when audio arrives; a gap plays silence.
        now = asyncio.get_running_loop().time()
        self._play_end = max(self._play_end, now) + ms / 1000

    async def send_dtmf(self, digits: str, duration_ms: int = 0) -> None:
        """Send DTMF digits into the call, after the audio sent so far (on the stream)."""
        self._marks_and_dtmf += 1
        await self._write(
            pb.StreamMediaRequest(dtmf=pb.SendDtmf(digits=digits, duration_ms=duration_ms))
        )
        # Each digit plays for its duration (100 ms by default) and a gap.
        self._count_played(len(digits) * ((duration_ms or 100) + 100))

    async def mark(self, name: str) -> None:
        """Ask for a MarkPlayed event once everything sent so far has been played."""
        self._marks_and_dtmf += 1
        await self._write(pb.StreamMediaRequest(mark=pb.Mark(name=name)))

    async def clear(self) -> None:
        """Drop all audio sent so far that has not played (barge-in); a Cleared event follows.

        Sent beside the stream (the ControlStream RPC), not on it: it never waits
        behind the audio sent before it, which the server may not have read yet
        (after a burst of 60 s, an in-stream clear waited hundreds of ms). That audio
        is dropped too, as the server reads it. Returns once the server has cut
        playback; the Cleared event (cut position, dropped marks) comes on the
        stream as before.

        Raises:
            RPCError: The stream has ended (FAILED_PRECONDITION), or the server
                refused the clear.
        """
        request = pb.ControlStreamRequest(
            clear=pb.Clear(), marks_and_dtmf_sent=self._marks_and_dtmf
        )
        if self._sequence:
            request.last_sent_sequence_number = self._sequence - 1
        await self._control(request)
        self._play_end = 0.0

    async def hangup(self) -> None:
        """Hang up the call, at once: beside the stream, never behind audio sent before it."""
        await self._control(pb.ControlStreamRequest(hangup=pb.HangupCall()))

    async def _control(self, request: pb.ControlStreamRequest) -> pb.ControlStreamResponse:
        """Send a ControlStream command to the instance holding the stream."""
        if self.info is None or self._call is None or self._call.done():
            # As a write on an ended stream: the same error as the other SDKs give.
            raise RPCError(grpc.StatusCode.FAILED_PRECONDITION, "the stream has ended", None)
        request.stream_id = self.info.stream_id
        try:
            response: pb.ControlStreamResponse = await self._stub.ControlStream(
                request, timeout=CONTROL_TIMEOUT_S, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise RPCError.from_aio(exc) from None
        return response

    async def done_sending(self) -> None:
        """End input; returns at once, without waiting for the audio to play.

        The server plays what it has, then ends the stream with
        ``Stopped(CLIENT_DONE)``: read `events` until then, or call
        `wait_stopped`, or just leave the ``async with`` block (which waits).
        """
        async with self._writing:
            await self._call.done_writing()
        self._done_sending = True

    def _still_to_play(self) -> float:
        """Seconds of sent audio the server has probably not played yet (an upper bound)."""
        return max(0.0, self._play_end - asyncio.get_running_loop().time())

    async def wait_stopped(self, timeout: float | None = None) -> Stopped | None:
        """Wait until the stream has ended and return its ``Stopped`` event.

        If no other task is iterating `events` (or `audio`), this reads the
        events itself and drops them; otherwise it waits for that task to see
        the end (which it must keep iterating for).

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes.

        Returns:
            The ``Stopped`` event, or None if the stream ended without one.

        Raises:
            TimeoutError: The stream had not ended within `timeout`; it is
                cancelled (as gRPC does to a call whose read is cancelled).
            RPCError: The stream failed (when this call was the one reading).
        """
        try:
            await asyncio.wait_for(self._wait_ended(), timeout)
        except TimeoutError:
            await self.cancel()
            raise
        return self.stopped

    async def _wait_ended(self) -> None:
        while not self._ended.is_set():
            if self._call is None or self._call.cancelled():
                return  # cancelled: no Stopped is coming
            if self._readers == 0:
                async with contextlib.aclosing(self.events()) as events:
                    async for _ in events:
                        if self._readers > 1:
                            break  # someone else reads now: leave the events to them
                continue
            self._readers_changed.clear()
            ended = asyncio.ensure_future(self._ended.wait())
            changed = asyncio.ensure_future(self._readers_changed.wait())
            try:
                await asyncio.wait({ended, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ended.cancel()
                changed.cancel()

    async def aclose(self) -> None:
        """Close the stream; what leaving ``async with`` normally does.

        After `done_sending`, waits until the server has played what was sent
        and sent ``Stopped`` (see `wait_stopped`), at most the estimated audio
        still to play plus ``close_grace`` seconds; then, or at once without
        `done_sending`, the stream is cancelled if still running.
        """
        if (
            self._done_sending
            and self.stopped is None
            and not self._ended.is_set()
            and self._call is not None
        ):
            bound = self._still_to_play() + self._close_grace
            try:
                await self.wait_stopped(bound)
            except TimeoutError:
                log.warning(
                    "stream %s: no Stopped within %.1f s of leaving it after done_sending;"
                    " cancelling it",
                    self.info.stream_id if self.info else "?",
                    bound,
                )
        await self.cancel()


class MediaStreamClient:
    """A connection to the gateway.

    Args:
        target: ``host:port`` of the gateway's gRPC endpoint.
        token: Bearer token (API key or JWT) sent with every call.
        root_certificates: PEM CA to verify the server with; enables TLS.
        private_key: PEM client key for mTLS.
        certificate_chain: PEM client certificate for mTLS.
        channel: An existing channel to use instead (not closed by this client).
        instance_channel: Opens a channel to one gateway instance (``host:port``)
            for resumes behind a load balancer. Default: dial as this client does
            (same TLS; the certificate is checked against `target`'s host name);
            with `channel` and no `instance_channel`, resumes go through `channel`,
            since the client cannot know that channel's credentials.
        allowed_instances: ``host:port`` addresses a RESUME_WRONG_INSTANCE refusal
            may send a resume to, besides the instance the server advertised for
            the stream (StreamInfo.instance_address); any other is not followed
            and the refusal is raised.
        open_retries: How many times a stream refused before it started (UNAVAILABLE
            with reason DRAINING, or with none: connection refused) is opened again,
            each on the channel's next connection; 0: never.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        token: str | None = None,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        channel: grpc.aio.Channel | None = None,
        instance_channel: Callable[[str], grpc.aio.Channel] | None = None,
        allowed_instances: Iterable[str] = (),
        open_retries: int = DEFAULT_OPEN_RETRIES,
    ) -> None:
        if open_retries < 0:
            raise ValueError("open_retries must be 0 or more")
        self._open_retries = open_retries
        self._own = channel is None
        self._allowed_instances = frozenset(allowed_instances)
        self._target_host = target.rpartition(":")[0].strip("[]")
        self._instance_channel = instance_channel
        if instance_channel is None and channel is None:
            self._instance_channel = self._dial_instance
        self._creds = (
            grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            if root_certificates is not None
            else None
        )
        if channel is None:
            channel = self._dial(target)
        self._channel = channel
        self._stub = pb_grpc.MediaStreamServiceStub(self._channel)
        self._instances: dict[str, tuple[grpc.aio.Channel, pb_grpc.MediaStreamServiceStub]] = {}
        self._external: ExternalMediaClient | None = None
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )

    async def __aenter__(self) -> MediaStreamClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def external_media(self) -> ExternalMediaClient:
        """ExternalMediaService on the same connection."""
        if self._external is None:
            self._external = ExternalMediaClient(self._channel, self._metadata)
        return self._external

    def _dial(self, target: str) -> grpc.aio.Channel:
        if self._creds is not None:
            return grpc.aio.secure_channel(target, self._creds)
        return grpc.aio.insecure_channel(target)

    def _dial_instance(self, address: str) -> grpc.aio.Channel:
        if self._creds is not None:
            # Instances are dialled by address; the certificate names the service.
            options = [("grpc.ssl_target_name_override", self._target_host)]
            return grpc.aio.secure_channel(address, self._creds, options=options)
        return grpc.aio.insecure_channel(address)

    def _stub_for(self, instance_address: str) -> pb_grpc.MediaStreamServiceStub:
        """The stub for one gateway instance, dialled directly (a resume's target).

        Args:
            instance_address: ``host:port`` of the instance; empty for the
                client's own target (the load balancer).
        """
        if not instance_address or self._instance_channel is None:
            return self._stub
        known = self._instances.get(instance_address)
        if known is None:
            channel = self._instance_channel(instance_address)
            known = (channel, pb_grpc.MediaStreamServiceStub(channel))
            self._instances[instance_address] = known
        return known[1]

    async def _wait_connected(self, instance_address: str, timeout: float) -> None:
        """Wait (at most `timeout` s) for the channel a stub of `_stub_for` uses to connect."""
        known = self._instances.get(instance_address) if instance_address else None
        channel = known[0] if known is not None else self._channel
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(channel.channel_ready(), timeout)

    async def close(self) -> None:
        """Close the connection (if this client opened it), and any to single instances."""
        for channel, _ in self._instances.values():
            await channel.close()
        self._instances.clear()
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
        auto_resume: bool = False,
        resume_token: str | None = None,
        last_sequence_number: int | None = None,
        instance_address: str | None = None,
    ) -> ListenStream:
        """A listen-only stream of a call or conference (use with ``async with``).

        With `auto_resume`, the stream is opened resumable and re-attached with
        no chunk lost when its connection drops; the server then keeps it for
        its grace period after it is closed, too. To take over a stream another
        process opened, pass its `resume_token` (and the last sequence number
        received, if any) with the same configuration, and its
        `instance_address` (StreamInfo) when the gateway runs behind a load balancer.
        """
        return ListenStream(
            self._stub_for,
            _with_resume(
                _config(
                    call_id,
                    conference_id,
                    format,
                    direction,
                    chunk_ms,
                    encapsulation,
                    transport,
                    auto_resume or resume_token is not None,
                ),
                resume_token,
                last_sequence_number,
            ),
            self._metadata,
            timeout,
            auto_resume,
            instance_address or "",
            self._allowed_instances,
            self._open_retries,
            self._wait_connected,
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
        auto_resume: bool = False,
        resume_token: str | None = None,
        last_sequence_number: int | None = None,
        instance_address: str | None = None,
        close_grace: float = DEFAULT_CLOSE_GRACE,
    ) -> DuplexStream:
        """A two-way stream of a call or conference (use with ``async with``).

        Leaving the ``async with`` block normally after `DuplexStream.done_sending`
        waits until what was sent has been played and the server has sent
        ``Stopped`` (at most the audio still to play plus `close_grace` seconds);
        leaving it without ``done_sending``, or by an exception, cancels the stream.

        With `auto_resume`, the stream is opened resumable and re-attached when
        its connection drops: received audio continues with no chunk lost;
        audio being written while the connection was down must be re-sent.
        `resume_token` and `last_sequence_number` take over an existing stream;
        `instance_address` (its StreamInfo's) sends the resume to the instance
        that holds it, past a load balancer.
        """
        return DuplexStream(
            self._stub_for,
            _with_resume(
                _config(
                    call_id,
                    conference_id,
                    format,
                    direction,
                    chunk_ms,
                    encapsulation,
                    transport,
                    auto_resume or resume_token is not None,
                ),
                resume_token,
                last_sequence_number,
            ),
            self._metadata,
            timeout,
            auto_resume,
            instance_address or "",
            self._allowed_instances,
            self._open_retries,
            self._wait_connected,
            close_grace=close_grace,
        )
