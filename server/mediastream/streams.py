"""Streams: the part shared by every client-facing adapter (gRPC, WebSocket).

A `Stream` joins a client to a `Leg` in Asterisk. Downlink, it turns the
leg's frames into the client's chunks and keeps them in a bounded replay
buffer that the client's connection reads from. Uplink, it decodes the
client's chunks and hands them to a `Pacer`, which the loop's `PlayClock`
drains at one frame per 20 ms into the leg, because Asterisk relays RTP and
AudioSocket input without re-timing. A client whose connection drops may come back within the
resume grace period and continue where it was; the Asterisk side stays up.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mediastream import logs, metrics
from mediastream.asterisk.legs import Leg, LegEnd
from mediastream.asterisk.pool import AsteriskPool
from mediastream.core.dtmf import DIGITS, dtmf_tones
from mediastream.core.formats import FRAME_MS, PLAY_BUFFER_MS, AudioFormat
from mediastream.core.pacer import Cleared, InputFinished, MarkPlayed, Pacer, Xoff, Xon
from mediastream.core.pcm import Transcoder, silence
from mediastream.core.stream import (
    Chunk,
    Downlink,
    DownlinkBuffer,
    Dtmf,
    Flow,
    MarkReached,
    PlaybackCleared,
    StopReason,
    StreamEvent,
    StreamSpec,
    Target,
    TargetKind,
    Uplink,
)
from mediastream.errors import (
    FailedPrecondition,
    InvalidArgument,
    MediaStreamError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from mediastream.play_clock import PlayClock
from mediastream.target_counts import LocalTargetCounts, TargetCounts

log = logging.getLogger(__name__)

FRAMES_IN = metrics.FRAMES.labels("from_asterisk", "relayed")
FRAMES_DROPPED = metrics.FRAMES.labels("from_asterisk", "dropped")
FRAMES_OUT = metrics.FRAMES.labels("to_asterisk", "relayed")
FRAMES_REFUSED = metrics.FRAMES.labels("to_asterisk", "refused")
FRAMES_CLEARED = metrics.FRAMES.labels("to_asterisk", "cleared")
"""Frames of chunks a side-channel clear overtook, dropped as they were read."""
_FRAMES_PER_COUNT = 25
"""Frames sent into a call between two updates of their counter (half a second)."""

STARVED_AFTER_S = 2.0
"""Seconds without a frame from Asterisk, channel up, after which a stream is reported."""

STARVED_CHECK_S = 0.5
"""Seconds between two looks for starved streams (one timer for all streams)."""


MAX_MARK_NAME_CHARS = 256
"""Longest mark name a client may send (the name comes back in its mark event)."""
MAX_STREAM_ID_CHARS = 64
"""Longest stream ID a ControlStream command may name (the gateway's are 36-character UUIDs)."""
MAX_DTMF_DIGITS = 64
"""Most digits one DTMF message may carry (their tones are made before they queue)."""
MAX_PENDING_MARKS = 1000
"""Marks a stream holds that have not played yet; one more is refused (TOO_MANY_MARKS)."""
MAX_PENDING_EVENTS = 1000
"""Events (marks played, DTMF, flow, cleared) waiting for a client that does not read;
one more ends the stream with RESOURCE_EXHAUSTED (EVENT_BACKLOG), as audio the
client does not read is dropped from the ring: memory stays bounded either way."""


def _labels(spec: StreamSpec) -> tuple[str, str, str, str]:
    mode = "bidirectional" if spec.bidirectional else "listen"
    return spec.target.kind.value, spec.transport.value, spec.encapsulation.value, mode


@dataclass(frozen=True)
class StreamLimits:
    """Sizes and times that bound a stream.

    Attributes:
        play_buffer_ms: Client audio not yet played that a stream holds, and the
            most one client message may carry. The gateway always keeps reading
            the client's messages, so a control message never waits behind audio;
            a message that would take the held audio past this is refused whole
            and fails the stream (``BUFFER_FULL``, RESOURCE_EXHAUSTED).
        pause_at_ms: Buffered audio at which the client is advised to pause.
        resume_at_ms: Buffered audio below which the client is advised to resume.
        replay_ms: Audio kept for a slow or reconnecting client.
        resume_grace_s: How long a stream whose client vanished waits for it.
        max_streams: Concurrent streams in this process.
        max_streams_per_target: Concurrent streams on one call or conference.
        max_streams_per_client: Concurrent streams of one client (0: no limit).
    """

    play_buffer_ms: int = PLAY_BUFFER_MS
    pause_at_ms: int = 8_000
    resume_at_ms: int = 4_000
    replay_ms: int = 5_000
    resume_grace_s: float = 10.0
    max_streams: int = 1000
    max_streams_per_target: int = 5
    max_streams_per_client: int = 0


@dataclass
class _Overtaken:
    """What a side-channel clear overtook on the stream, and what it dropped so far.

    Attributes:
        cleared: The clear's cut position and the marks it dropped from the queue.
        last_sent: Sequence number of the last audio chunk sent before the clear (-1: none).
        controls_sent: Mark and SendDtmf messages sent before the clear.
        marks: Marks read since, dropped (they were sent before the clear).
    """

    cleared: PlaybackCleared
    last_sent: int
    controls_sent: int
    marks: list[str] = field(default_factory=list)

    def caught_up(self, last_read: int | None, controls_read: int) -> bool:
        """Whether the stream has read everything sent before the clear."""
        audio_read = self.last_sent < 0 or (last_read is not None and last_read >= self.last_sent)
        return audio_read and controls_read >= self.controls_sent


@dataclass(frozen=True)
class StreamStopped:
    """How a stream ended."""

    reason: StopReason
    detail: str


class Stream:
    """One client's stream on a call or conference."""

    def __init__(
        self, stream_id: str, spec: StreamSpec, limits: StreamLimits, clock: PlayClock
    ) -> None:
        self.id = stream_id
        self.spec = spec
        self.resume_token = f"{stream_id}.{secrets.token_urlsafe(16)}"
        self.leg: Leg | None = None
        self.error: MediaStreamError | None = None
        self._downlink = Downlink(spec)
        self._buffer = DownlinkBuffer(max(1, limits.replay_ms // spec.chunk_ms))
        self._ready = asyncio.Event()
        self._uplink = Uplink(spec, limits.play_buffer_ms) if spec.bidirectional else None
        fmt = spec.asterisk_format
        self._play_limit_ms = limits.play_buffer_ms
        # The cap is checked here, in bytes of the leg's format, before each push;
        # the pacer's own whole-frame limit (one more frame) then never refuses.
        self._play_limit_bytes = fmt.bytes_for(limits.play_buffer_ms)
        self._pacer = Pacer(
            fmt.frame_bytes,
            silence=silence(fmt),
            max_frames=limits.play_buffer_ms // FRAME_MS + 1,
            high_water=limits.pause_at_ms // FRAME_MS,
            low_water=limits.resume_at_ms // FRAME_MS,
        )
        self._clock = clock
        # Frame counters go to Prometheus in batches: its counters take a lock.
        self._frames_in = 0
        self._frames_out = 0
        self._stopped: asyncio.Future[StreamStopped] = asyncio.get_running_loop().create_future()
        self._input_done = False
        self._marks_due: list[MarkReached] = []
        """Marks whose frame was sent, reported once its 20 ms have played."""
        self._marks_pending = 0
        self._hangup_requested = False
        self.attached = True
        self.detached_at: float | None = None
        self.buffer_high_ms = limits.pause_at_ms
        # Bumped by each resume: the connection that resumed owns the stream, and an
        # older one still reading (not yet noticed dead) stops and lets go of it.
        self.attachment = 0
        self.client_key = ""
        """What the stream counts against in the per-client limit, if anything."""
        self._last_frame_at = 0.0
        self.starved = False
        """Whether the stream was reported for getting no frame from Asterisk."""
        self.owner = ""
        """The identity that opened the stream (`Principal.identity`); only it may resume."""
        self._last_read_sequence: int | None = None
        """The sequence_number of the last audio chunk read (gRPC), for a side-channel clear."""
        self._controls_read = 0
        """Marks and DTMF messages read on the stream, for a side-channel clear."""
        self._overtaken: _Overtaken | None = None
        """Set while a side-channel clear has overtaken messages still on their way."""

    # --- what the leg reports (LegSink) -------------------------------------------------

    def on_frame(self, frame: bytes) -> None:
        """A frame from Asterisk: convert it and make it readable."""
        self._frames_in += 1
        now = self._last_frame_at = time.monotonic()
        chunks = self._downlink.push(frame, now)
        if chunks:
            FRAMES_IN.inc(self._frames_in)
            self._frames_in = 0
            # Only a whole chunk is worth waking the client's writer for.
            for chunk in chunks:
                self._buffer.add_chunk(chunk)
            if self.attached:
                # A reader the ring overtook (its writer blocked on a slow client)
                # skips ahead: counted now, not when the client next takes.
                self._count_dropped(self._buffer.skip_lost())
            self._ready.set()

    def on_dtmf(self, digit: str, duration_ms: int = 0) -> None:
        """A digit from the call."""
        self._emit(Dtmf(digit, duration_ms))

    def on_transport_closed(self, reason: str) -> None:
        """Not used: the leg turns transport ends into `on_leg_end`."""

    def on_leg_end(self, end: LegEnd) -> None:
        """Asterisk ended the stream's side."""
        reason = end.reason
        if self._hangup_requested and reason is StopReason.CALL_HANGUP:
            reason = StopReason.CLIENT_HANGUP
        self._finish(StreamStopped(reason, end.detail))

    # --- what the client adapter uses ---------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """Sample rate of the client's audio."""
        return self.spec.format.sample_rate

    @property
    def stopped(self) -> asyncio.Future[StreamStopped]:
        """Resolves when the stream has ended, with the reason."""
        return self._stopped

    @property
    def dropped_chunks(self) -> int:
        """Chunks a slow reader skipped."""
        return self._buffer.dropped

    def start(self, leg: Leg) -> None:
        """Begin media once the leg is up."""
        self.leg = leg
        self._last_frame_at = time.monotonic()
        self._kick()

    def check_starved(self, now: float) -> bool:
        """Report, once, a stream whose channel is up but that gets no frame from Asterisk.

        A safety net, not a cure: counted in ``mediastream_streams_starved_total``
        and logged at WARNING with the stream, its target and its transport.

        Args:
            now: The current ``time.monotonic()``.

        Returns:
            Whether it was reported now.
        """
        leg = self.leg
        if (
            self.starved
            or leg is None
            or leg.ended.done()
            or self._stopped.done()
            or now - self._last_frame_at < STARVED_AFTER_S
        ):
            return False
        self.starved = True
        transport = self.spec.transport.value
        metrics.STREAMS_STARVED.labels(transport).inc()
        log.warning(
            "stream %s on %s %s: no audio from Asterisk for %.1f s while its channel is up"
            " (transport %s)",
            self.id,
            self.spec.target.kind.value,
            self.spec.target.id,
            now - self._last_frame_at,
            transport,
        )
        return True

    def rewind(self, last_received: int | None) -> int:
        """Continue from after chunk `last_received` (for a resumed client).

        Returns:
            How many of the chunks asked for are no longer held.
        """
        lost = self._buffer.rewind(last_received)
        self._ready.set()
        return lost

    async def output(self) -> AsyncIterator[Chunk | StreamEvent]:
        """Audio chunks and events for the client, until the stream stops.

        Ends early, without taking anything more, once another connection resumed
        the stream (`attachment` changed).
        """
        attachment = self.attachment
        while self.attachment == attachment:
            dropped = self._buffer.dropped
            # One chunk at a time: a writer blocked on a slow client then holds no
            # batch of chunks that go stale while the ring moves on.
            items = self._buffer.take(max_chunks=1)
            self._count_dropped(self._buffer.dropped - dropped)
            if items:
                for item in items:
                    if self.attachment != attachment:
                        return  # the resume rewound the read position for its client
                    yield item
                continue
            if self._stopped.done() or self.error is not None:
                return
            self._ready.clear()
            await self._ready.wait()

    def _count_dropped(self, chunks: int) -> None:
        if chunks:
            FRAMES_DROPPED.inc(chunks * (self.spec.chunk_ms // FRAME_MS))  # in 20 ms frames

    @property
    def buffered_ms(self) -> int:
        """Client audio queued and not yet played, in ms (whole frames)."""
        return self._pacer.depth * FRAME_MS

    def play(self, data: bytes, sequence_number: int | None = None) -> None:
        """Queue one client chunk for playing into the call.

        Never waits: the caller can read the client's next message at once.

        Args:
            data: The chunk, in the stream's format and encapsulation.
            sequence_number: The client's number for the chunk (gRPC), if any: a
                chunk sent before a side-channel clear that overtook it is dropped.

        Raises:
            FailedPrecondition: the stream is listen-only or its input has ended.
            InvalidArgument: the chunk is malformed or too large.
            ResourceExhausted: the chunk would take the play buffer past its cap
                (``BUFFER_FULL``); nothing of it is queued.
        """
        self._check_input()
        assert self._uplink is not None
        if sequence_number is not None:
            self._last_read_sequence = sequence_number
            overtaken = self._overtaken
            if overtaken is not None:
                if sequence_number > overtaken.last_sent:
                    # Sent after the clear: everything before it has been read.
                    self._end_overtaken()
                else:
                    # Whole frames (an encapsulation header is shorter than a frame).
                    FRAMES_CLEARED.inc(max(1, len(data) // self.spec.format.frame_bytes))
                    self._check_overtaken()
                    return
        self._push(self._uplink.decode(data))

    def _check_overtaken(self) -> None:
        """End the dropping once everything the side-channel clear overtook was read."""
        overtaken = self._overtaken
        assert overtaken is not None
        read = self._last_read_sequence
        if overtaken.caught_up(read, self._controls_read):
            self._end_overtaken()

    def _end_overtaken(self) -> None:
        """Report the side-channel clear on the stream, with every mark it dropped.

        One Cleared event, as an in-stream clear gives, in stream order: once the
        stream has read what was sent before the clear.
        """
        overtaken, self._overtaken = self._overtaken, None
        if overtaken is not None:
            event = overtaken.cleared
            self._emit(PlaybackCleared(event.position_ms, (*event.dropped_marks, *overtaken.marks)))

    def _push(self, audio: bytes) -> None:
        if self._pacer.queued_bytes + len(audio) > self._play_limit_bytes:
            frame_bytes = self._pacer.frame_bytes
            FRAMES_REFUSED.inc(-(-len(audio) // frame_bytes))
            raise ResourceExhausted(
                f"at most {self._play_limit_ms / 1000:g} s of audio may wait to play "
                f"({self.buffered_ms / 1000:g} s do): wait for a mark or flow resume before "
                "sending more",
                reason="BUFFER_FULL",
                metadata={"limit_ms": str(self._play_limit_ms)},
            )
        pacer = self._pacer
        # Audio behind audio already queued moves no deadline: the clock already has the
        # pacer down for its head frame. Skipping the reschedule saves a burst of
        # thousands of chunks that cost per chunk, ahead of the clear behind it (issue 16).
        # A push that raised an event (Xoff) still kicks: the event is due at once.
        queued = pacer.depth
        events = pacer.pending_events
        if not pacer.push(audio, self._clock.align(time.monotonic())):  # pragma: no cover
            raise AssertionError("the pacer refused audio within the play buffer's cap")
        if not queued or pacer.pending_events != events:
            self._kick()

    def send_dtmf(self, digits: str, duration_ms: int, *, overtaking: bool = False) -> None:
        """Play DTMF tones into the call after the audio already queued.

        Args:
            digits: The digits, 0-9, *, #, A-D.
            duration_ms: Each digit's duration; 0 means 100.
            overtaking: Whether the digits came by the side channel (ControlStream):
                they are never dropped as sent before a side-channel clear.

        Raises:
            InvalidArgument: a digit is not 0-9, *, #, A-D, or the duration is
                outside 40-2000 ms.
            FailedPrecondition: the stream is listen-only or its input has ended.
            ResourceExhausted: the tones would take the play buffer past its cap.
        """
        if len(digits) > MAX_DTMF_DIGITS:
            raise InvalidArgument(
                "dtmf.digits",
                f"at most {MAX_DTMF_DIGITS} digits per message",
                reason="INVALID_DTMF",
                metadata={"limit": str(MAX_DTMF_DIGITS)},
            )
        if not digits or any(d not in DIGITS for d in digits):
            raise InvalidArgument(
                "dtmf.digits", "digits must be 0-9, *, #, A-D", reason="INVALID_DTMF"
            )
        duration_ms = duration_ms or 100
        if not 40 <= duration_ms <= 2000:
            raise InvalidArgument(
                "dtmf.duration_ms", "duration_ms must be 40-2000", reason="INVALID_DTMF"
            )
        self._check_input()
        if not overtaking:
            self._controls_read += 1
            if self._overtaken is not None:
                # Sent before a side-channel clear that overtook it: dropped with the audio.
                self._check_overtaken()
                return
        fmt = self.spec.asterisk_format
        pcm = dtmf_tones(digits, fmt.sample_rate, duration_ms)
        self._push(pcm if fmt.is_linear else Transcoder(AudioFormat.SLIN, fmt).convert(pcm))

    def mark(self, name: str) -> None:
        """Report `name` once everything sent before it has played.

        Raises:
            FailedPrecondition: the stream is listen-only or its input has ended.
            InvalidArgument: the name is longer than MAX_MARK_NAME_CHARS.
            ResourceExhausted: MAX_PENDING_MARKS marks have not played yet.
        """
        self._check_input()
        self._controls_read += 1
        if len(name) > MAX_MARK_NAME_CHARS:
            raise InvalidArgument(
                "mark.name",
                f"a mark name may hold at most {MAX_MARK_NAME_CHARS} characters",
                reason="MARK_NAME_TOO_LONG",
                metadata={"limit": str(MAX_MARK_NAME_CHARS)},
            )
        # Marks a side-channel clear dropped, held for its Cleared event, count too.
        held = self._marks_pending + (len(self._overtaken.marks) if self._overtaken else 0)
        if held >= MAX_PENDING_MARKS:
            raise ResourceExhausted(
                f"{MAX_PENDING_MARKS} marks have not played yet: wait for their events",
                reason="TOO_MANY_MARKS",
                metadata={"limit": str(MAX_PENDING_MARKS)},
            )
        if self._overtaken is not None:
            # Sent before a side-channel clear that overtook it: dropped, and reported
            # in that clear's Cleared event (`_end_overtaken`).
            self._overtaken.marks.append(name)
            self._check_overtaken()
            return
        self._marks_pending += 1
        self._pacer.mark(name)
        self._kick()

    def clear(self, last_sent: int | None = None, controls_sent: int = 0) -> PlaybackCleared:
        """Drop every queued frame (barge-in) and report where playback was cut.

        A clear that came by the side channel (gRPC ControlStream) may have overtaken
        messages sent before it on the stream: `last_sent` and `controls_sent` say
        which. Until the stream has read them, they are dropped as they are read
        (audio, marks, DTMF), and the stream's Cleared event waits for them so that
        it names every mark dropped; the cut itself is at once.

        Args:
            last_sent: The sequence number of the last audio chunk the client sent
                on the stream before the clear; None: none, or not known.
            controls_sent: How many Mark and SendDtmf messages the client sent on
                the stream before the clear.

        Returns:
            Where playback was cut and the marks dropped from what had been read.

        Raises:
            FailedPrecondition: the stream is listen-only.
        """
        if self._uplink is None:
            raise FailedPrecondition(
                "this stream is listen-only: there is no audio to clear; open it with "
                "StreamMedia to play audio",
                reason="LISTEN_ONLY",
            )
        cleared: Cleared = self._pacer.clear(time.monotonic())
        self._marks_pending = max(0, self._marks_pending - len(cleared.dropped_marks))
        event = PlaybackCleared(cleared.position_ms, cleared.dropped_marks)
        self._kick()
        if self._overtaken is not None:
            self._end_overtaken()  # an earlier side-channel clear: reported first
        overtaken = _Overtaken(event, -1 if last_sent is None else last_sent, controls_sent)
        if overtaken.caught_up(self._last_read_sequence, self._controls_read):
            self._emit(event)
        else:
            self._overtaken = overtaken
        return event

    def end_input(self) -> None:
        """The client will send nothing more; stop once what it sent has played."""
        if self._input_done:
            return
        self._input_done = True
        self._end_overtaken()  # nothing more comes that a clear overtook
        if self._uplink is None:
            return
        self._pacer.end_input()
        self._kick()

    def note_hangup_request(self) -> None:
        """The client asked to hang up the call: report that as the reason."""
        self._hangup_requested = True

    def fail(self, error: MediaStreamError) -> None:
        """End the stream because the client broke the contract; `error` says how."""
        if self.error is None:
            self.error = error
        self._ready.set()

    def _check_input(self) -> None:
        if self._uplink is None:
            raise FailedPrecondition(
                "this stream is listen-only; audio cannot be sent", reason="LISTEN_ONLY"
            )
        if self._input_done:
            raise FailedPrecondition("input already ended", reason="INPUT_ENDED")

    def _emit(self, event: StreamEvent) -> None:
        if self._buffer.pending_events >= MAX_PENDING_EVENTS:
            # The client stopped reading: end the stream rather than hold more.
            self.fail(
                ResourceExhausted(
                    f"{MAX_PENDING_EVENTS} events were not read: read the stream",
                    reason="EVENT_BACKLOG",
                    metadata={"limit": str(MAX_PENDING_EVENTS)},
                )
            )
            return
        self._buffer.add_event(event)
        self._ready.set()

    def on_tick(self, now: float) -> float | None:
        """Send the frames due by `now` and report the pacer's events (run by the clock).

        Returns:
            When the pacer next has something due, or None if it is idle.
        """
        leg = self.leg
        if leg is None or not self._playing:
            return None
        out = self._pacer.poll(now)
        frames = out.frames
        if frames:
            for frame in frames:
                leg.send_frame(frame)
            self._frames_out += len(frames)
            if self._frames_out >= _FRAMES_PER_COUNT:
                FRAMES_OUT.inc(self._frames_out)
                self._frames_out = 0
        for event in out.events:
            if isinstance(event, MarkPlayed):
                self._marks_pending = max(0, self._marks_pending - 1)
                # The pacer reports a mark when the frame before it is sent;
                # it has been played once that frame's 20 ms are over.
                reached = MarkReached(event.name, event.position_ms)
                self._marks_due.append(reached)
                asyncio.get_running_loop().call_later(FRAME_MS / 1000, self._reach_mark, reached)
            elif isinstance(event, Xoff):
                self._emit(Flow(True, event.depth * FRAME_MS))
            elif isinstance(event, Xon):
                self._emit(Flow(False, event.depth * FRAME_MS))
            elif isinstance(event, InputFinished):
                # The last frame was sent in this tick: it has played 20 ms from now,
                # and the marks waiting out that frame are reported first (a mark just
                # before the end of input was lost when the stream stopped here).
                asyncio.get_running_loop().call_later(FRAME_MS / 1000, self._input_played)
                return None
        return self._pacer.next_deadline()

    def _reach_mark(self, reached: MarkReached) -> None:
        # Reported here unless the end of input reported it already.
        if any(m is reached for m in self._marks_due):
            self._marks_due = [m for m in self._marks_due if m is not reached]
            self._emit(reached)

    def _input_played(self) -> None:
        due, self._marks_due = self._marks_due, []
        for reached in due:
            self._emit(reached)
        self._finish(StreamStopped(StopReason.CLIENT_DONE, "input ended and played"))

    @property
    def _playing(self) -> bool:
        """Whether the pacer is run: a two-way stream with its leg up, not stopped."""
        return self.leg is not None and self.spec.bidirectional and not self._stopped.done()

    def _kick(self) -> None:
        """Have the pacer polled when it next has something due (new audio, a mark, a clear)."""
        if self._playing:
            deadline = self._pacer.next_deadline()
            if deadline is not None:
                self._clock.schedule(self, deadline)

    def _finish(self, stopped: StreamStopped) -> None:
        if not self._stopped.done():
            self._stopped.set_result(stopped)
        self._ready.set()

    async def close(self, legs: AsteriskPool, reason: StopReason, detail: str) -> None:
        """End the stream and remove its Asterisk side."""
        self._finish(StreamStopped(reason, detail))
        self._clock.cancel(self)
        FRAMES_IN.inc(self._frames_in)
        FRAMES_OUT.inc(self._frames_out)
        self._frames_in = self._frames_out = 0
        if self.leg is not None:
            await legs.close(self.leg)


def _check_owner(stream: Stream, owner: str, verb: str, reason: str) -> None:
    """Raise unless `owner` is the identity that opened `stream`.

    Raises:
        PermissionDenied: with `reason`; nothing changes for the stream's holder.
    """
    if not secrets.compare_digest(stream.owner.encode(), owner.encode()):
        raise PermissionDenied(
            f"only the credentials that opened a stream may {verb} it", reason=reason
        )


def _target_key(target: Target) -> str:
    return f"{target.kind.value}:{target.id}"


def _encode_instance(address: str) -> str:
    return base64.urlsafe_b64encode(address.encode()).decode().rstrip("=")


def _decode_instance(text: str) -> str:
    """The instance address a token names, or "" if it names none (or is garbage)."""
    if not text:
        return ""
    try:
        address = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""
    # Only a plausible host:port goes back to the client as a place to dial.
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not address.isprintable():
        return ""
    return address


class StreamManager:
    """Opens streams, keeps the live ones, and holds detached ones for resume."""

    def __init__(
        self,
        legs: AsteriskPool,
        limits: StreamLimits | None = None,
        *,
        instance_address: str = "",
        target_counts: TargetCounts | None = None,
        clock: PlayClock | None = None,
    ) -> None:
        self._legs = legs
        self.limits = limits or StreamLimits()
        self._counts = target_counts or LocalTargetCounts()
        self.instance_address = instance_address
        """``host:port`` clients can reach this instance on directly, or empty."""
        self.streams: dict[str, Stream] = {}
        self.clock = clock if clock is not None else PlayClock()
        """Paces the audio of every stream this manager holds (and, in a gateway, runs
        the Asterisk side's other 20 ms work: see `Gateway.start`)."""
        self._grace_tasks: dict[str, asyncio.Task[None]] = {}
        self._closing: dict[str, asyncio.Task[None]] = {}
        self.draining = False
        self.resumes = 0
        self._watchdog: asyncio.TimerHandle | None = None

    async def open(self, spec: StreamSpec, client: str = "", owner: str = "") -> Stream:
        """Attach a new stream to its call or conference.

        Args:
            spec: What the client asked for.
            client: Who asks (a JWT subject, an API key's name, a peer address),
                for the per-client limit; empty: not counted.
            owner: The identity a resume of this stream must present.

        Raises:
            Unavailable: the gateway is draining.
            ResourceExhausted: a stream limit is reached.
            MediaStreamError: anything the Asterisk side refuses.
        """
        if self.draining:
            raise Unavailable(
                "the gateway is shutting down; connect to another instance", reason="DRAINING"
            )
        limits = self.limits
        if len(self.streams) >= limits.max_streams:
            raise ResourceExhausted(
                f"the gateway already carries {limits.max_streams} streams",
                reason="TOO_MANY_STREAMS",
                metadata={"limit": str(limits.max_streams)},
            )
        target_key = _target_key(spec.target)
        same = self._counts.acquire(target_key, limits.max_streams_per_target)
        if same is not None:
            raise ResourceExhausted(
                f"{spec.target.kind.value} {spec.target.id} already has {same} streams",
                reason="TOO_MANY_STREAMS_FOR_TARGET",
                metadata={"limit": str(limits.max_streams_per_target)},
            )
        client_key = f"client:{client}" if client and limits.max_streams_per_client else ""
        if client_key:
            held = self._counts.acquire(client_key, limits.max_streams_per_client)
            if held is not None:
                self._counts.release(target_key)
                raise ResourceExhausted(
                    f"this client already holds {held} streams",
                    reason="TOO_MANY_STREAMS_FOR_CLIENT",
                    metadata={"limit": str(limits.max_streams_per_client)},
                )
        stream = Stream(str(uuid.uuid4()), spec, self.limits, self.clock)
        stream.client_key = client_key
        stream.owner = owner
        if self.instance_address:
            # The token names its instance, so that an instance a resume reaches by
            # mistake can say where the stream is (behind a load balancer).
            stream.resume_token += "." + _encode_instance(self.instance_address)
        logs.stream_id.set(stream.id)
        # From here the stream's counts are released by whoever removes it from
        # `streams`: this method if the open fails, else `close` (a drain may close
        # it while its leg is still being made).
        self.streams[stream.id] = stream
        try:
            leg = await self._legs.open(stream.id, spec, stream)
        except BaseException:
            if self.streams.pop(stream.id, None) is not None:
                self._release_counts(stream)
            raise
        if stream.id not in self.streams:
            # Closed (drained) while Asterisk was making its leg: undo that too.
            await self._legs.close(leg)
            raise Unavailable(
                "the gateway is shutting down; connect to another instance", reason="DRAINING"
            )
        stream.start(leg)
        self._arm_watchdog()
        labels = _labels(spec)
        metrics.STREAMS_ACTIVE.labels(*labels).inc()
        metrics.STREAMS_OPENED.labels(labels[0], labels[1]).inc()
        log.info("stream %s opened on %s %s", stream.id, spec.target.kind.value, spec.target.id)
        return stream

    def check_starved(self, now: float | None = None) -> int:
        """Look for streams that get no frame from Asterisk (`Stream.check_starved`).

        Args:
            now: The current ``time.monotonic()``; tests pass their own.

        Returns:
            How many streams were reported now.
        """
        if self._watchdog is not None:
            self._watchdog.cancel()  # run early (a test): one timer only, from now
            self._watchdog = None
        when = time.monotonic() if now is None else now
        reported = sum(s.check_starved(when) for s in list(self.streams.values()))
        self._arm_watchdog()
        return reported

    def _arm_watchdog(self) -> None:
        # One timer for every stream, running only while there are streams.
        if self._watchdog is None and self.streams:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(STARVED_CHECK_S, self.check_starved)

    def resume(self, token: str, spec: StreamSpec, owner: str = "") -> Stream:
        """Take over a stream whose client connection dropped.

        Args:
            token: The stream's resume token.
            spec: The configuration the resuming client asks for.
            owner: Who resumes (`Principal.identity`); must be who opened the stream.

        Raises:
            NotFound: no stream holds that token (expired, ended, or never issued).
            PermissionDenied: another identity opened the stream (RESUME_NOT_OWNER).
            InvalidArgument: the configuration differs from the stream's.
        """
        stream_id, _, rest = token.partition(".")
        stream = self.streams.get(stream_id)
        if stream is None or not secrets.compare_digest(stream.resume_token, token):
            holder = _decode_instance(rest.partition(".")[2])
            if holder and holder != self.instance_address:
                raise NotFound(
                    f"the stream is held by the gateway instance at {holder}; resume there",
                    reason="RESUME_WRONG_INSTANCE",
                    metadata={"instance_address": holder},
                )
            raise NotFound(
                "no stream to resume with that token (it may have expired)",
                reason="RESUME_TOKEN_UNKNOWN",
            )
        # A token is a secret, but a leaked one must not hand the stream (and
        # the holder's connection) to someone else: nothing changes for the holder.
        _check_owner(stream, owner, "resume", "RESUME_NOT_OWNER")
        if stream.spec != spec:
            raise InvalidArgument(
                "config",
                "a resumed stream must keep its configuration",
                reason="RESUME_CONFIG_MISMATCH",
            )
        grace = self._grace_tasks.pop(stream_id, None)
        if grace is not None:
            grace.cancel()
        # A connection still attached is one whose loss the server has not noticed
        # yet: this resume takes the stream over from it.
        stream.attachment += 1
        stream._ready.set()
        stream.attached = True
        stream.detached_at = None
        logs.stream_id.set(stream_id)
        self.resumes += 1
        metrics.RESUMES.inc()
        log.info("stream %s resumed", stream_id)
        return stream

    def controlled(self, stream_id: str, owner: str) -> Stream:
        """The running stream a side-channel command (gRPC ControlStream) acts on.

        Args:
            stream_id: The stream's ID (StreamStarted.stream_id).
            owner: Who asks (`Principal.identity`); must be who opened the stream,
                as for a resume.

        Raises:
            InvalidArgument: `stream_id` is empty (MISSING_STREAM_ID) or too long
                (INVALID_ID).
            NotFound: no running stream has that ID here (STREAM_UNKNOWN).
            PermissionDenied: another identity opened the stream (STREAM_NOT_OWNER).
        """
        if not stream_id:
            raise InvalidArgument(
                "stream_id",
                "set stream_id to the stream_id of the stream's StreamStarted",
                reason="MISSING_STREAM_ID",
            )
        if len(stream_id) > MAX_STREAM_ID_CHARS:
            # Never a stream's (a UUID); not echoed back whole in the refusal.
            raise InvalidArgument(
                "stream_id",
                f"stream_id is the stream_id of a StreamStarted (at most {MAX_STREAM_ID_CHARS} "
                "characters)",
                reason="INVALID_ID",
            )
        stream = self.streams.get(stream_id)
        if stream is None or stream.stopped.done() or stream.error is not None:
            raise NotFound(
                f"no running stream {stream_id} on this gateway instance: it ended, or "
                "another instance holds it (send the command to StreamStarted.instance_address)",
                reason="STREAM_UNKNOWN",
                metadata={"stream_id": stream_id},
            )
        # Only who opened it: a stream ID shows in logs and metrics, it is no secret.
        _check_owner(stream, owner, "control", "STREAM_NOT_OWNER")
        logs.stream_id.set(stream_id)
        return stream

    def detach(self, stream: Stream) -> None:
        """The client vanished: keep the stream for the grace period, then close it."""
        if stream.stopped.done() or stream.id not in self.streams:
            self._schedule_close(stream, 0.0)
            return
        stream.attached = False
        stream.detached_at = time.monotonic()
        self._schedule_close(stream, self.limits.resume_grace_s)
        log.info("stream %s detached; resumable for %.0f s", stream.id, self.limits.resume_grace_s)

    def _schedule_close(self, stream: Stream, delay: float) -> None:
        async def later() -> None:
            await asyncio.sleep(delay)
            self._grace_tasks.pop(stream.id, None)
            await self.close(stream, StopReason.CLIENT_DONE, "client went away")

        old = self._grace_tasks.pop(stream.id, None)
        if old is not None:
            old.cancel()
        self._grace_tasks[stream.id] = asyncio.create_task(later(), name=f"grace-{stream.id}")

    async def close(self, stream: Stream, reason: StopReason, detail: str) -> None:
        """End a stream and release everything it holds.

        The release runs as a task of its own, so that a cancelled caller (a
        client that went away) cannot leave half of it undone, and shutdown
        can wait for it.
        """
        if self.streams.pop(stream.id, None) is not None:
            self._release_counts(stream)
            if stream.leg is not None:  # active (and counted so) once its leg was up
                metrics.STREAMS_ACTIVE.labels(*_labels(stream.spec)).dec()
                ended = stream.stopped.result().reason if stream.stopped.done() else reason
                metrics.STREAMS_ENDED.labels(ended.value).inc()
            grace = self._grace_tasks.pop(stream.id, None)
            if grace is not None and grace is not asyncio.current_task():
                grace.cancel()
            closing = asyncio.create_task(stream.close(self._legs, reason, detail))
            self._closing[stream.id] = closing
            closing.add_done_callback(lambda _: self._closing.pop(stream.id, None))
            log.info("stream %s closing: %s", stream.id, detail)
        pending = self._closing.get(stream.id)
        if pending is not None:
            await asyncio.shield(pending)

    def _release_counts(self, stream: Stream) -> None:
        self._counts.release(_target_key(stream.spec.target))
        if stream.client_key:
            self._counts.release(stream.client_key)

    async def hangup(self, stream: Stream) -> None:
        """Hang up the stream's call.

        Raises:
            FailedPrecondition: the stream is on a conference.
        """
        if stream.spec.target.kind is not TargetKind.CALL:
            raise FailedPrecondition("only a call can be hung up", reason="NOT_A_CALL")
        stream.note_hangup_request()
        await self._legs.hangup(stream.spec.target.id)

    async def drain(self, timeout: float) -> None:
        """Refuse new streams; give live ones `timeout` s to end, then end them."""
        self.draining = True
        live = [s.stopped for s in self.streams.values() if s.attached and not s.stopped.done()]
        if live:
            await asyncio.wait(live, timeout=timeout)
        await self.close_all(StopReason.SERVER_SHUTDOWN, "gateway shutting down")

    async def close_all(self, reason: StopReason, detail: str) -> None:
        """End every stream (shutdown)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        await asyncio.gather(
            *(self.close(s, reason, detail) for s in list(self.streams.values())),
            return_exceptions=True,
        )
        await asyncio.gather(*self._closing.values(), return_exceptions=True)
