"""What a stream is, independent of gRPC, WebSocket and Asterisk transport.

`StreamSpec` is a validated request; `Downlink` turns the 20 ms frames taken
from Asterisk into the client's chunks (format, chunk size, encapsulation);
`Uplink` turns the client's chunks back into frames for Asterisk. Both are
pure: bytes in, bytes out.
"""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass

from mediastream.core import audiosocket
from mediastream.core.formats import FRAME_MS, MAX_CHUNK_MS, PLAY_BUFFER_MS, AudioFormat
from mediastream.core.pcm import Transcoder, swap16
from mediastream.core.rtp import PT_VOIPBIN, RtpError, RtpSequencer, parse_rtp
from mediastream.errors import InvalidArgument

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""A channel or bridge ID: UUIDs, Asterisk uniqueids (``1795515126.1745``), platform IDs.

Matched with ``fullmatch``: ``$`` would also accept a trailing newline.
"""


class TargetKind(enum.Enum):
    """What a stream is attached to."""

    CALL = "call"
    CONFERENCE = "conference"


@dataclass(frozen=True)
class Target:
    """A call (an Asterisk channel) or a conference (an Asterisk bridge)."""

    kind: TargetKind
    id: str


class Direction(enum.Enum):
    """Whose audio a call stream hears (the snoop's `spy`)."""

    BOTH = "both"
    IN = "in"
    OUT = "out"

    @property
    def whisper(self) -> str:
        """Snoop `whisper` so the client is heard by the party it hears."""
        return {Direction.BOTH: "both", Direction.IN: "out", Direction.OUT: "in"}[self]


class Encapsulation(enum.Enum):
    """Wire form of each chunk exchanged with the client."""

    SLN = "sln"
    RTP = "rtp"
    AUDIOSOCKET = "audiosocket"


class Transport(enum.Enum):
    """How the gateway takes audio from Asterisk (the externalMedia kind)."""

    RTP = "rtp"
    AUDIOSOCKET = "audiosocket"
    WEBSOCKET = "websocket"


class StopReason(enum.Enum):
    """Why a stream ended."""

    CLIENT_DONE = "client_done"
    CALL_HANGUP = "call_hangup"
    CONFERENCE_ENDED = "conference_ended"
    SERVER_SHUTDOWN = "server_shutdown"
    ASTERISK_FAILURE = "asterisk_failure"
    CLIENT_HANGUP = "client_hangup"


@dataclass(frozen=True)
class StreamSpec:
    """A validated stream request.

    Attributes:
        target: The call or conference.
        format: Sample format in both directions, as the client sees it.
        direction: Whose audio a call stream hears.
        chunk_ms: Duration of one chunk, a multiple of 20 ms.
        encapsulation: Wire form of each chunk.
        transport: Transport towards Asterisk.
        bidirectional: Whether the client sends audio into the call.
        resumable: Whether the stream outlives a dropped connection for a resume.
        uplink_format: Sample format the client sends, when it differs from
            `format`; None: `format`. VoIPBIN's media_stream sends mu-law down
            and reads 16-bit slin up, and its clients rely on that.
        voipbin_rtp: Frame RTP as VoIPBIN does: payload type 96 for every format
            and 16-bit samples little-endian (the bytes of the sln form), instead
            of Asterisk's payload types and RFC 3551's big-endian L16.
    """

    target: Target
    format: AudioFormat = AudioFormat.ULAW
    direction: Direction = Direction.BOTH
    chunk_ms: int = FRAME_MS
    encapsulation: Encapsulation = Encapsulation.SLN
    transport: Transport = Transport.RTP
    bidirectional: bool = True
    resumable: bool = False
    uplink_format: AudioFormat | None = None
    voipbin_rtp: bool = False

    @property
    def input_format(self) -> AudioFormat:
        """Sample format of the audio the client sends."""
        return self.uplink_format or self.format

    @property
    def chunk_bytes(self) -> int:
        """Bytes of samples in one chunk."""
        return self.format.bytes_for(self.chunk_ms)

    @property
    def asterisk_format(self) -> AudioFormat:
        """The externalMedia `format` to ask Asterisk for.

        Asterisk reads every AudioSocket audio message as 8 kHz slin, and over
        RTP it drops slin16 (dynamic PT 118) coming in, so those transports
        carry slin and the gateway resamples; the WebSocket channel carries
        any format both ways.
        """
        if self.transport is Transport.AUDIOSOCKET:
            return AudioFormat.SLIN
        if (
            self.transport is Transport.RTP
            and self.format is AudioFormat.SLIN16
            and self.bidirectional
        ):
            return AudioFormat.SLIN
        return self.format


def validate_target_id(field: str, value: str) -> str:
    """Check an ID's shape (Asterisk channel and bridge IDs, UUIDs).

    Raises:
        InvalidArgument: the ID is empty or has characters an ID never has.
    """
    if not value:
        raise InvalidArgument(field, f"{field} must be set", reason="MISSING_TARGET")
    if not _ID.fullmatch(value):
        raise InvalidArgument(
            field,
            f"{field} must be 1-128 letters, digits, '.', '_', ':' or '-'",
            reason="INVALID_ID",
        )
    return value


def validate_chunk_ms(chunk_ms: int) -> int:
    """0 means 20; otherwise a multiple of 20 up to 200.

    Raises:
        InvalidArgument: any other value.
    """
    if chunk_ms == 0:
        return FRAME_MS
    if chunk_ms % FRAME_MS or not FRAME_MS <= chunk_ms <= MAX_CHUNK_MS:
        raise InvalidArgument(
            "config.chunk_ms",
            f"chunk_ms must be a multiple of {FRAME_MS} from {FRAME_MS} to {MAX_CHUNK_MS}, "
            f"got {chunk_ms}",
            reason="INVALID_CHUNK_MS",
        )
    return chunk_ms


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk for the client.

    Attributes:
        data: Encapsulated bytes.
        sequence_number: 0, 1, 2, ... per stream.
        timestamp: Media time of the first sample, in samples since stream start.
        arrived: When its last frame came from Asterisk (the caller's clock), for
            measuring the latency the gateway adds.
    """

    data: bytes
    sequence_number: int
    timestamp: int
    arrived: float = 0.0


class Downlink:
    """Asterisk frames -> client chunks."""

    def __init__(self, spec: StreamSpec) -> None:
        self._spec = spec
        self._transcoder = Transcoder(spec.asterisk_format, spec.format)
        self._pending = bytearray()
        self._chunk_bytes = spec.chunk_bytes
        self._samples_per_chunk = spec.chunk_bytes // spec.format.sample_width
        self._sequence = 0
        self._rtp = RtpSequencer(
            payload_type=PT_VOIPBIN
            if spec.format is AudioFormat.ULAW or spec.voipbin_rtp
            else spec.format.rtp_payload_type,
            ssrc=random.getrandbits(32),
            sequence_number=1,
            timestamp=0,
        )

    def push(self, frame: bytes, now: float = 0.0) -> list[Chunk]:
        """Take one frame from Asterisk, which arrived at `now`; return the chunks now complete."""
        self._pending += self._transcoder.convert(frame)
        out: list[Chunk] = []
        while len(self._pending) >= self._chunk_bytes:
            samples = bytes(self._pending[: self._chunk_bytes])
            del self._pending[: self._chunk_bytes]
            out.append(self._chunk(samples, now))
        return out

    def _chunk(self, samples: bytes, now: float) -> Chunk:
        seq = self._sequence
        self._sequence += 1
        ts = seq * self._samples_per_chunk
        enc = self._spec.encapsulation
        if enc is Encapsulation.RTP:
            # RTP carries 16-bit samples big-endian (network order), except in
            # VoIPBIN's framing, which wraps the little-endian payload as it is.
            swap = self._spec.format.is_linear and not self._spec.voipbin_rtp
            wire = swap16(samples) if swap else samples
            data = self._rtp.next(wire, self._samples_per_chunk)
        elif enc is Encapsulation.AUDIOSOCKET:
            data = audiosocket.encode(audiosocket.Kind.AUDIO, samples)
        else:
            data = samples
        return Chunk(data, seq, ts, now)


class Uplink:
    """Client chunks -> audio in the Asterisk leg's format.

    A chunk may hold any amount of audio up to `max_ms` (a whole number of 20 ms
    frames or not: a partial frame waits in the pacer for the rest).

    Args:
        spec: The stream.
        max_ms: Most audio one chunk may carry.
    """

    def __init__(self, spec: StreamSpec, max_ms: int = PLAY_BUFFER_MS) -> None:
        self._spec = spec
        self._format = spec.input_format
        self._transcoder = Transcoder(self._format, spec.asterisk_format)
        self._max_ms = max_ms
        self._max_bytes = self._format.bytes_for(max_ms)
        # Bare samples already in the leg's format: nothing to unwrap or convert, so
        # decode only checks the size (a burst of thousands of chunks, issue 16).
        self._plain = spec.encapsulation is Encapsulation.SLN and self._transcoder.identity
        self._width = self._format.sample_width

    def decode(self, data: bytes) -> bytes:
        """Unwrap and convert one client chunk.

        Raises:
            InvalidArgument: the chunk is not in the stream's encapsulation, holds
                more than `max_ms` of audio, or has a partial sample. The message
                says how to send it right.
        """
        if self._plain and len(data) <= self._max_bytes and not len(data) % self._width:
            return data
        enc = self._spec.encapsulation
        if enc is Encapsulation.RTP:
            try:
                packet = parse_rtp(data)
            except RtpError as exc:
                raise InvalidArgument(
                    "audio.data",
                    "with encapsulation rtp each message is one RTP packet: a 12-byte header "
                    f"(first byte 0x80), then the samples (not an RTP packet: {exc.reason}; "
                    "send bare samples with encapsulation sln)",
                    reason="MALFORMED_CHUNK",
                ) from exc
            samples = packet.payload
            if self._format.is_linear and not self._spec.voipbin_rtp and len(samples) % 2 == 0:
                samples = swap16(samples)
        elif enc is Encapsulation.AUDIOSOCKET:
            samples = _audiosocket_audio(data)
        else:
            samples = data
        if len(samples) > self._max_bytes:
            raise InvalidArgument(
                "audio.data",
                f"split the audio into messages of at most {self._max_bytes} bytes "
                f"({self._max_ms / 1000:g} s of {self._format.value}); this one carries "
                f"{len(samples)}",
                reason="CHUNK_TOO_LARGE",
                metadata={"max_bytes": str(self._max_bytes)},
            )
        if len(samples) % self._format.sample_width:
            raise InvalidArgument(
                "audio.data",
                f"{len(samples)} bytes is not a whole number of 16-bit samples: "
                "send an even number of bytes",
                reason="PARTIAL_SAMPLE",
            )
        return self._transcoder.convert(samples)


AUDIOSOCKET_HINT = (
    "AudioSocket messages start with a 3-byte header: kind 0x10 and a 16-bit length "
    "(big-endian), then that many bytes of samples"
)
"""How an AudioSocket-encapsulated message is built; every refusal of one starts with it."""


def _audiosocket_refusal(detail: str) -> InvalidArgument:
    return InvalidArgument(
        "audio.data",
        f"{AUDIOSOCKET_HINT}; {detail} (to send bare samples, use encapsulation sln)",
        reason="MALFORMED_CHUNK",
    )


def _audiosocket_audio(data: bytes) -> bytes:
    decoder = audiosocket.AudioSocketDecoder()
    try:
        messages = decoder.feed(data)
    except audiosocket.AudioSocketError as exc:
        raise _audiosocket_refusal(str(exc)) from exc
    if decoder.pending:
        at = len(data) - decoder.pending
        rest = data[at:]
        if len(rest) < audiosocket.HEADER_SIZE:
            detail = f"this {len(data)}-byte message ends {len(rest)} bytes into a header"
        else:
            declared = int.from_bytes(rest[1:3], "big")
            detail = (
                f"the header at byte {at} (kind 0x{rest[0]:02x}) declares {declared} bytes "
                f"but {len(rest) - audiosocket.HEADER_SIZE} follow"
            )
        raise _audiosocket_refusal(detail)
    out = bytearray()
    for m in messages:
        if m.kind != audiosocket.Kind.AUDIO:
            raise _audiosocket_refusal(f"kind 0x{m.kind:02x} is not audio")
        out += m.payload
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A DTMF digit from the call."""

    digit: str
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class MarkReached:
    """The audio before a client's mark has been played."""

    name: str
    position_ms: int


@dataclass(frozen=True, slots=True)
class PlaybackCleared:
    """A clear dropped queued audio."""

    position_ms: int
    dropped_marks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Flow:
    """Tell the client to hold off (paused) or resume sending."""

    paused: bool
    buffered_ms: int


StreamEvent = Dtmf | MarkReached | PlaybackCleared | Flow
"""Anything besides audio a stream tells its client."""


class DownlinkBuffer:
    """What a stream has produced for its client, kept for replay.

    Audio chunks are numbered from 0 and kept in a ring of the last
    `capacity` chunks: a reader that falls further behind skips ahead and the
    skipped chunks are counted as dropped, so one slow client never holds
    memory or delays anyone. A reader that reconnects (resume) starts again
    from any sequence number still in the ring. Events are kept in order with
    the number of the audio chunk they follow, until read.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._chunks: list[Chunk | None] = [None] * capacity
        self._next = 0
        self._events: list[tuple[int, StreamEvent]] = []
        self.cursor = 0
        self.dropped = 0

    @property
    def produced(self) -> int:
        """Number of audio chunks produced so far."""
        return self._next

    @property
    def oldest(self) -> int:
        """Sequence number of the oldest chunk still held."""
        return max(0, self._next - self.capacity)

    def add_chunk(self, chunk: Chunk) -> None:
        """Append the next audio chunk (its sequence number must be `produced`)."""
        if chunk.sequence_number != self._next:
            raise ValueError(f"chunk {chunk.sequence_number} out of order, expected {self._next}")
        self._chunks[self._next % self.capacity] = chunk
        self._next += 1

    @property
    def pending_events(self) -> int:
        """Events added and not read yet."""
        return len(self._events)

    def add_event(self, event: StreamEvent) -> None:
        """Append an event, after the audio produced so far."""
        self._events.append((self._next, event))

    def rewind(self, last_received: int | None) -> int:
        """Restart reading after `last_received` (None: from the start).

        Returns:
            How many chunks asked for are no longer held.
        """
        want = 0 if last_received is None else last_received + 1
        want = min(want, self._next)
        lost = max(0, self.oldest - want)
        self.cursor = max(want, self.oldest)
        return lost

    def skip_lost(self) -> int:
        """Move a reader the ring has overtaken to the oldest chunk still held.

        Returns:
            How many chunks it skipped (also added to `dropped`).
        """
        lost = max(0, self.oldest - self.cursor)
        self.dropped += lost
        self.cursor += lost
        return lost

    def take(self, max_chunks: int | None = None) -> list[Chunk | StreamEvent]:
        """Everything not read yet, in order; advances the read position.

        Args:
            max_chunks: Take at most this many audio chunks (and the events before
                them): a reader that takes few at a time never holds chunks the ring
                has moved past.
        """
        out: list[Chunk | StreamEvent] = []
        self.skip_lost()
        events = self._events
        i = 0
        taken = 0
        while self.cursor < self._next or i < len(events):
            if i < len(events) and events[i][0] <= self.cursor:
                out.append(events[i][1])
                i += 1
                continue
            if self.cursor >= self._next or taken == max_chunks:
                break
            taken += 1
            chunk = self._chunks[self.cursor % self.capacity]
            assert chunk is not None
            out.append(chunk)
            self.cursor += 1
        del events[:i]
        return out
