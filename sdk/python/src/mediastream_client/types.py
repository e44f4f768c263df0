"""Plain Python types of the client API (no protobuf in public signatures)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AudioFormat(enum.Enum):
    """Sample format of a stream's audio, both ways."""

    ULAW = "ulaw"
    """G.711 mu-law, 8 kHz (160 bytes per 20 ms)."""
    SLIN = "slin"
    """16-bit signed linear little-endian, 8 kHz (320 bytes per 20 ms)."""
    SLIN16 = "slin16"
    """16-bit signed linear little-endian, 16 kHz (640 bytes per 20 ms)."""

    @property
    def sample_rate(self) -> int:
        """Samples per second."""
        return 16000 if self is AudioFormat.SLIN16 else 8000

    @property
    def sample_width(self) -> int:
        """Bytes per sample."""
        return 1 if self is AudioFormat.ULAW else 2


class Direction(enum.Enum):
    """Whose audio a call stream hears."""

    BOTH = "both"
    IN = "in"
    OUT = "out"


class Encapsulation(enum.Enum):
    """Wire form of each chunk."""

    SLN = "sln"
    RTP = "rtp"
    AUDIOSOCKET = "audiosocket"


class Transport(enum.Enum):
    """How the gateway takes the audio from Asterisk."""

    RTP = "rtp"
    AUDIOSOCKET = "audiosocket"
    WEBSOCKET = "websocket"


class StopReason(enum.Enum):
    """Why a stream ended."""

    UNSPECIFIED = "unspecified"
    CLIENT_DONE = "client_done"
    CALL_HANGUP = "call_hangup"
    CONFERENCE_ENDED = "conference_ended"
    SERVER_SHUTDOWN = "server_shutdown"
    ASTERISK_FAILURE = "asterisk_failure"
    CLIENT_HANGUP = "client_hangup"


@dataclass(frozen=True)
class StreamInfo:
    """What the server confirmed when the stream started."""

    stream_id: str
    format: AudioFormat
    sample_rate: int
    frame_bytes: int
    chunk_ms: int
    encapsulation: Encapsulation
    transport: Transport
    resume_token: str = ""
    resumed: bool = False
    instance_address: str = ""
    """``host:port`` of the gateway instance holding the stream, if it advertises
    one: a resume is sent there, past the load balancer."""


@dataclass(frozen=True)
class AudioChunk:
    """One chunk of audio from the call."""

    data: bytes
    sequence_number: int
    timestamp: int


@dataclass(frozen=True)
class Stopped:
    """The stream's final event."""

    reason: StopReason
    detail: str


@dataclass(frozen=True)
class DtmfReceived:
    """A DTMF digit the call sent (reported at the digit's end)."""

    digit: str
    duration_ms: int


@dataclass(frozen=True)
class MarkPlayed:
    """Everything sent before the mark named `name` has been played."""

    name: str
    position_ms: int


@dataclass(frozen=True)
class Cleared:
    """A clear dropped queued audio: where playback was cut, and the marks dropped."""

    position_ms: int
    dropped_marks: tuple[str, ...]


class FlowState(enum.Enum):
    """Flow control: hold off sending audio (`PAUSE`) or go on (`RESUME`)."""

    PAUSE = "pause"
    RESUME = "resume"


@dataclass(frozen=True)
class FlowControl:
    """The server asks to hold off (`paused`) or resume sending audio."""

    paused: bool
    buffered_ms: int

    @property
    def state(self) -> FlowState:
        """The flow state, `FlowState.PAUSE` or `FlowState.RESUME`.

        The same name as in the Go (`State`) and TypeScript (`state`) SDKs.
        """
        return FlowState.PAUSE if self.paused else FlowState.RESUME


StreamEvent = AudioChunk | DtmfReceived | MarkPlayed | Cleared | FlowControl | Stopped
"""Anything a stream delivers."""
