"""Real-time pacing of audio going into a call, modelled on chan_websocket's queue.

AudioSocket and RTP relay whatever they receive at once, so the gateway must send
one frame per frame period itself; chan_websocket paces on its own, but the same
queue semantics (1000-frame limit, XOFF at 900, XON below 800, marks, flush) are
what its clients expect. :class:`Pacer` implements them without I/O or clock
reads: every call takes ``now`` (monotonic seconds) and :meth:`Pacer.poll`
returns the frames due by then.

Schedule. Frames are cut from the pushed bytes (a partial remainder waits for
more input). When a push finds the queue empty, playback (re)starts: the first
frame is due at ``now``, but never earlier than one frame period after the last
frame emitted, so output is never faster than real time; frame k of the run is due
at ``start + k * frame_ms``, computed by multiplication so nothing drifts. A poll
that comes late emits every overdue frame at once to catch up, unless more than
``max_catchup`` frames are overdue: then the schedule is re-anchored at ``now``
and a single frame is emitted (no burst; the audio is delayed, not dropped;
counted in ``stats.resyncs``).

Position. ``position_ms`` is the audio emitted so far (frames x ``frame_ms``);
it never goes back, even across :meth:`Pacer.clear`.

Marks. A mark sits after everything pushed before it, including a partial
remainder; it fires (:class:`MarkPlayed`) in the poll that emits the frame
holding the last byte before it, or in the next poll if nothing is queued or
pending. If a remainder is never completed it fires when :meth:`Pacer.end_input`
pads that remainder into a frame.

Flow control. :class:`Xoff` when the queue depth reaches ``high_water`` (while
pushing), :class:`Xon` in the first poll that sees it below ``low_water`` (also
after a :meth:`Pacer.clear`). A push when the queue already holds ``max_frames``
is refused whole, as chan_websocket does. Events raised by :meth:`Pacer.push`
are delivered by the next :meth:`Pacer.poll`, so poll after pushing.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from mediastream.core.formats import FRAME_MS, AudioFormat

__all__ = [
    "Cleared",
    "Drained",
    "InputFinished",
    "MarkPlayed",
    "Pacer",
    "PacerEvent",
    "PacerOutput",
    "PacerStats",
    "Xoff",
    "Xon",
]

_EPSILON = 1e-9
"""Slack when comparing a due time with ``now``, so float rounding never delays a frame."""


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """Everything pushed before the mark has been emitted.

    Attributes:
        name: The mark's name.
        position_ms: Playback position at the mark.
    """

    name: str
    position_ms: int


@dataclass(frozen=True, slots=True)
class Xoff:
    """The queue reached the high-water mark: stop sending.

    Attributes:
        position_ms: Playback position when it happened.
        depth: Frames queued.
    """

    position_ms: int
    depth: int


@dataclass(frozen=True, slots=True)
class Xon:
    """The queue fell below the low-water mark: sending may resume.

    Attributes:
        position_ms: Playback position when it happened.
        depth: Frames queued.
    """

    position_ms: int
    depth: int


@dataclass(frozen=True, slots=True)
class Drained:
    """The last queued frame was emitted; nothing is left to play.

    Attributes:
        position_ms: Playback position at the end of the last frame.
    """

    position_ms: int


@dataclass(frozen=True, slots=True)
class InputFinished:
    """After :meth:`Pacer.end_input`, all input (and its padded tail) was emitted.

    Attributes:
        position_ms: Playback position at the end of the input.
    """

    position_ms: int


PacerEvent = MarkPlayed | Xoff | Xon | Drained | InputFinished
"""Any event :meth:`Pacer.poll` reports."""


@dataclass(slots=True)
class PacerOutput:
    """What one :meth:`Pacer.poll` produced.

    Attributes:
        frames: Frames to send now, in order, each ``frame_bytes`` long.
        events: Events in the order they happened; each carries the position it
            refers to, so they can be interleaved with ``frames``.
    """

    frames: list[bytes] = field(default_factory=list)
    events: list[PacerEvent] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.frames or self.events)


@dataclass(frozen=True, slots=True)
class Cleared:
    """Result of :meth:`Pacer.clear`.

    Attributes:
        position_ms: Playback position where the audio was cut.
        dropped_marks: Names of the marks that will now never fire, in order.
        dropped_frames: Whole frames discarded.
        dropped_bytes: Bytes discarded, frames plus partial remainder.
    """

    position_ms: int
    dropped_marks: tuple[str, ...]
    dropped_frames: int
    dropped_bytes: int


@dataclass(slots=True)
class PacerStats:
    """Counters.

    Attributes:
        pushed: Messages accepted by :meth:`Pacer.push`.
        pushed_bytes: Bytes accepted.
        refused: Messages refused because the queue was full.
        refused_bytes: Bytes refused.
        frames: Frames emitted.
        resyncs: Times a late poll re-anchored the schedule instead of bursting.
        clears: Calls to :meth:`Pacer.clear`.
    """

    pushed: int = 0
    pushed_bytes: int = 0
    refused: int = 0
    refused_bytes: int = 0
    frames: int = 0
    resyncs: int = 0
    clears: int = 0


class Pacer:
    """Queue of outgoing audio frames released one per frame period.

    Attributes:
        frame_bytes: Bytes in a frame.
        frame_ms: Frame duration.
        max_frames: Queue depth at which a push is refused.
        high_water: Depth that raises :class:`Xoff`.
        low_water: Depth below which :class:`Xon` follows an Xoff.
        max_catchup: Most overdue frames a late poll emits before re-anchoring.
        stats: Counters.
    """

    def __init__(
        self,
        frame_bytes: int,
        *,
        frame_ms: int = FRAME_MS,
        max_frames: int = 1000,
        high_water: int = 900,
        low_water: int = 800,
        silence: bytes | AudioFormat | None = None,
        max_catchup: int = 5,
    ) -> None:
        """Create an idle pacer.

        Args:
            frame_bytes: Bytes per frame (160 ulaw, 320 slin, 640 slin16).
            frame_ms: Frame duration in ms.
            max_frames: Refuse a push when this many frames are already queued.
            high_water: Xoff at this depth.
            low_water: Xon below this depth.
            silence: Padding for the final partial frame: one silent frame, or the
                format (0xFF mu-law, 0xD5 A-law, zeros slin); default zeros.
            max_catchup: Overdue frames emitted at once before resynchronising.

        Raises:
            ValueError: On inconsistent sizes.
        """
        if frame_bytes < 1 or frame_ms < 1:
            raise ValueError("frame_bytes and frame_ms must be positive")
        if not 0 < low_water <= high_water:
            raise ValueError(f"need 0 < low_water <= high_water, got {low_water}, {high_water}")
        if max_catchup < 1:
            raise ValueError(f"max_catchup must be >= 1, got {max_catchup}")
        if isinstance(silence, AudioFormat):
            fill = {AudioFormat.ULAW: b"\xff", AudioFormat.ALAW: b"\xd5"}.get(silence, b"\x00")
            silence = fill * frame_bytes
        elif silence is None:
            silence = bytes(frame_bytes)
        elif len(silence) != frame_bytes:
            raise ValueError(f"silence frame is {len(silence)} bytes, need {frame_bytes}")
        self.frame_bytes = frame_bytes
        self.frame_ms = frame_ms
        self.max_frames = max_frames
        self.high_water = high_water
        self.low_water = low_water
        self.max_catchup = max_catchup
        self.stats = PacerStats()
        self._silence = silence
        self._period = frame_ms / 1000
        self._queue: deque[bytes] = deque()
        self._remainder = b""
        # Frames have absolute indices: the queue holds [_emitted, _enqueued).
        self._emitted = 0
        self._enqueued = 0
        self._marks: deque[tuple[int, str]] = deque()
        self._pending: list[PacerEvent] = []
        self._anchor_time = 0.0
        self._anchor_index = 0
        self._last_slot: float | None = None
        self._last_now = -math.inf
        self._xoff = False
        self._ended = False
        self._ended_reported = False

    @property
    def position_ms(self) -> int:
        """Milliseconds of audio emitted so far."""
        return self._emitted * self.frame_ms

    @property
    def depth(self) -> int:
        """Whole frames queued."""
        return len(self._queue)

    @property
    def pending_events(self) -> int:
        """Events raised by :meth:`push` and not yet reported by :meth:`poll`."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Bytes of a partial frame waiting for more input."""
        return len(self._remainder)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be emitted: whole frames queued plus a partial remainder."""
        return len(self._queue) * self.frame_bytes + len(self._remainder)

    @property
    def xoff(self) -> bool:
        """Whether an Xoff is in force."""
        return self._xoff

    def push(self, audio: bytes, now: float) -> bool:
        """Queue audio of any length.

        Args:
            audio: Bytes in the stream's format; joined to any partial remainder and
                cut into frames.
            now: Current time.

        Returns:
            False (nothing queued) if the queue already held ``max_frames`` frames.
        """
        self._last_now = now
        queue = self._queue
        if len(queue) >= self.max_frames:
            self.stats.refused += 1
            self.stats.refused_bytes += len(audio)
            return False
        self.stats.pushed += 1
        self.stats.pushed_bytes += len(audio)
        self._ended = False
        self._ended_reported = False
        data = self._remainder + audio if self._remainder else audio
        fb = self.frame_bytes
        whole = len(data) - len(data) % fb
        self._remainder = data[whole:]
        if whole:
            self._enqueue([data[i : i + fb] for i in range(0, whole, fb)], now)
        return True

    def _enqueue(self, frames: list[bytes], now: float) -> None:
        queue = self._queue
        if not queue:
            self._anchor_index = self._emitted
            start = now
            if self._last_slot is not None:
                start = max(start, self._last_slot + self._period)
            self._anchor_time = start
        before = len(queue)
        queue.extend(frames)
        self._enqueued += len(frames)
        if not self._xoff and before < self.high_water <= len(queue):
            self._xoff = True
            self._pending.append(Xoff(self.position_ms, len(queue)))

    def mark(self, name: str) -> None:
        """Place a mark after everything pushed so far (see the module docstring).

        Args:
            name: Reported back in :class:`MarkPlayed`.
        """
        threshold = self._enqueued + (1 if self._remainder else 0)
        self._marks.append((threshold, name))

    def end_input(self) -> None:
        """Declare the input finished: pad the remainder with silence into a last frame.

        :class:`InputFinished` follows once everything is emitted. Calling it again
        before another :meth:`push` does nothing; a later push starts new input.
        """
        if self._ended:
            return
        if self._remainder:
            tail = self._remainder + self._silence[len(self._remainder) :]
            self._remainder = b""
            self._enqueue([tail], self._last_now)
        self._ended = True
        self._ended_reported = False

    def clear(self, now: float) -> Cleared:
        """Drop all queued audio, the remainder and the marks (like ``FLUSH_MEDIA``).

        Frames due but not yet polled are dropped too: poll first to send them.

        Args:
            now: Current time.

        Returns:
            Where playback was cut and what was dropped.
        """
        self._last_now = now
        dropped_frames = len(self._queue)
        dropped_bytes = dropped_frames * self.frame_bytes + len(self._remainder)
        names = tuple(name for _, name in self._marks)
        self._queue.clear()
        self._marks.clear()
        self._remainder = b""
        self._enqueued = self._emitted
        self._ended = False
        self._ended_reported = False
        self.stats.clears += 1
        return Cleared(self.position_ms, names, dropped_frames, dropped_bytes)

    def next_deadline(self) -> float | None:
        """When to poll next.

        Returns:
            The due time of the next frame; a time already passed (the latest
            ``now`` seen, or -inf before any call took one) if events are waiting
            to be reported; None if idle.
        """
        if self._pending or self._ready_marks() or self._finish_due():
            return self._last_now
        if self._queue:
            return self._anchor_time + (self._emitted - self._anchor_index) * self._period
        if self._xoff:
            return self._last_now
        return None

    def _ready_marks(self) -> bool:
        return bool(self._marks) and self._marks[0][0] <= self._emitted

    def _finish_due(self) -> bool:
        return self._ended and not self._ended_reported and not self._queue

    def poll(self, now: float) -> PacerOutput:
        """Emit the frames due by ``now`` and the events that go with them.

        Args:
            now: Current time.

        Returns:
            Frames to send and events, possibly both empty.
        """
        self._last_now = now
        out = PacerOutput()
        events = out.events
        if self._pending:
            events.extend(self._pending)
            self._pending.clear()
        marks = self._marks
        if marks:
            self._fire_marks(events)
        queue = self._queue
        if queue:
            period = self._period
            due = self._anchor_time + (self._emitted - self._anchor_index) * period
            if due <= now + _EPSILON:
                count = int((now + _EPSILON - due) / period) + 1
                if count > self.max_catchup:
                    self.stats.resyncs += 1
                    self._anchor_time = due = now
                    self._anchor_index = self._emitted
                    count = 1
                count = min(count, len(queue))
                frames = out.frames
                for _ in range(count):
                    frames.append(queue.popleft())
                    self._emitted += 1
                    if marks and marks[0][0] <= self._emitted:
                        self._fire_marks(events)
                self.stats.frames += count
                self._last_slot = (
                    self._anchor_time + (self._emitted - 1 - self._anchor_index) * period
                )
                if not queue:
                    events.append(Drained(self.position_ms))
        if self._xoff and len(queue) < self.low_water:
            self._xoff = False
            events.append(Xon(self.position_ms, len(queue)))
        if self._ended and not self._ended_reported and not queue:
            self._ended_reported = True
            events.append(InputFinished(self.position_ms))
        return out

    def _fire_marks(self, events: list[PacerEvent]) -> None:
        marks = self._marks
        emitted = self._emitted
        position = self.position_ms
        while marks and marks[0][0] <= emitted:
            events.append(MarkPlayed(marks.popleft()[1], position))
