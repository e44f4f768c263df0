"""Streams: the part shared by every client-facing adapter (gRPC, WebSocket).

A `Stream` joins a client to a `Leg` in Asterisk. Downlink, it turns the
leg's frames into the client's chunks. Uplink, it decodes the client's chunks
and hands them to a `Pacer`, which a task drains at one frame per 20 ms into
the leg, because Asterisk relays RTP and AudioSocket input without re-timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mediastream.asterisk.legs import Leg, LegEnd, LegFactory
from mediastream.core.pacer import Pacer
from mediastream.core.pcm import silence
from mediastream.core.stream import Chunk, Downlink, StopReason, StreamSpec, Uplink
from mediastream.errors import FailedPrecondition, MediaStreamError, ResourceExhausted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamStopped:
    """How a stream ended."""

    reason: StopReason
    detail: str


class Stream:
    """One client's stream on a call or conference."""

    def __init__(self, stream_id: str, spec: StreamSpec, leg: Leg, legs: LegFactory) -> None:
        self.id = stream_id
        self.spec = spec
        self._leg = leg
        self._legs = legs
        self._downlink = Downlink(spec)
        self._uplink = Uplink(spec) if spec.bidirectional else None
        fmt = spec.asterisk_format
        self._pacer = Pacer(fmt.frame_bytes, silence=silence(fmt))
        self._wake = asyncio.Event()
        self._stopped: asyncio.Future[StreamStopped] = asyncio.get_running_loop().create_future()
        self._input_done = False
        self.error: MediaStreamError | None = None
        self._player = (
            asyncio.create_task(self._play(), name=f"play-{stream_id}")
            if spec.bidirectional
            else None
        )
        leg.ended.add_done_callback(self._on_leg_end)

    @property
    def sample_rate(self) -> int:
        """Sample rate of the client's audio."""
        return self.spec.format.sample_rate

    @property
    def stopped(self) -> asyncio.Future[StreamStopped]:
        """Resolves when the stream has ended, with the reason."""
        return self._stopped

    async def chunks(self) -> AsyncIterator[Chunk]:
        """The call's audio as client chunks, until the stream stops."""
        while True:
            frame = await self._leg.frames.get()
            if frame is None:
                return
            for chunk in self._downlink.push(frame):
                yield chunk

    def play(self, data: bytes) -> None:
        """Queue one client chunk for playing into the call.

        Raises:
            FailedPrecondition: the stream is listen-only or its input has ended.
            InvalidArgument: the chunk is malformed or too large.
            ResourceExhausted: the play buffer is full.
        """
        if self._uplink is None:
            raise FailedPrecondition(
                "this stream is listen-only; audio cannot be sent", reason="LISTEN_ONLY"
            )
        if self._input_done:
            raise FailedPrecondition("input already ended", reason="INPUT_ENDED")
        audio = self._uplink.decode(data)
        if not self._pacer.push(audio, time.monotonic()):
            raise ResourceExhausted("play buffer full: send at real time", reason="BUFFER_FULL")
        self._wake.set()

    def end_input(self) -> None:
        """The client will send nothing more; stop once what it sent has played."""
        if self._input_done:
            return
        self._input_done = True
        if self._uplink is None:
            return
        self._pacer.end_input()
        self._wake.set()

    async def _play(self) -> None:
        while True:
            now = time.monotonic()
            out = self._pacer.poll(now)
            for frame in out.frames:
                self._leg.send_frame(frame)
            if self._input_done and self._pacer.idle:
                self._finish(StreamStopped(StopReason.CLIENT_DONE, "input ended and played"))
                return
            deadline = self._pacer.next_deadline()
            self._wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def fail(self, error: MediaStreamError) -> None:
        """End the stream because the client broke the contract; `error` says how."""
        if self.error is None:
            self.error = error
        self._leg.frames.close(error.message)

    def _on_leg_end(self, fut: asyncio.Future[LegEnd]) -> None:
        if fut.cancelled():
            return
        end = fut.result()
        self._finish(StreamStopped(end.reason, end.detail))

    def _finish(self, stopped: StreamStopped) -> None:
        if not self._stopped.done():
            self._stopped.set_result(stopped)
        self._leg.frames.close(stopped.detail)

    async def close(self, reason: StopReason, detail: str) -> None:
        """End the stream and remove its Asterisk side."""
        self._finish(StreamStopped(reason, detail))
        if self._player is not None:
            self._player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._player
        await self._legs.close(self._leg)


class StreamManager:
    """Opens streams and keeps track of the live ones."""

    def __init__(self, legs: LegFactory) -> None:
        self._legs = legs
        self.streams: dict[str, Stream] = {}

    async def open(self, spec: StreamSpec) -> Stream:
        """Attach a new stream to its call or conference.

        Raises:
            MediaStreamError: anything the Asterisk side refuses.
        """
        stream_id = str(uuid.uuid4())
        leg = await self._legs.open(stream_id, spec)
        stream = Stream(stream_id, spec, leg, self._legs)
        self.streams[stream_id] = stream
        log.info("stream %s opened on %s %s", stream_id, spec.target.kind.value, spec.target.id)
        return stream

    async def close(self, stream: Stream, reason: StopReason, detail: str) -> None:
        """End a stream and release everything it holds."""
        self.streams.pop(stream.id, None)
        await stream.close(reason, detail)
        log.info("stream %s closed: %s", stream.id, detail)

    async def close_all(self, reason: StopReason, detail: str) -> None:
        """End every live stream (shutdown)."""
        await asyncio.gather(
            *(self.close(s, reason, detail) for s in list(self.streams.values())),
            return_exceptions=True,
        )
