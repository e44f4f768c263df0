"""Audio formats and frame sizes: the one place that defines them.

Every size in the gateway is derived from here: a 20 ms frame is 160 bytes of
mu-law or A-law, 320 bytes of 8 kHz slin and 640 bytes of 16 kHz slin16.
"""

from __future__ import annotations

import enum

FRAME_MS = 20
"""Duration of one frame: Asterisk's ptime for every format used here."""

MAX_CHUNK_MS = 200
"""Longest chunk a client may ask the gateway to send (ten frames)."""

PLAY_BUFFER_MS = 120_000
"""Default cap on a stream's client audio not yet played, and on the audio in one message."""


class AudioFormat(enum.Enum):
    """A sample encoding as Asterisk names it (the externalMedia `format`)."""

    ULAW = "ulaw"
    ALAW = "alaw"
    SLIN = "slin"
    SLIN16 = "slin16"

    # Computed once per member: these are read for every frame, and an Enum
    # comparison or hash is a Python-level call.
    _rate: int
    _width: int

    def __init__(self, value: str) -> None:
        self._rate = 16000 if value == "slin16" else 8000
        self._width = 1 if value in ("ulaw", "alaw") else 2

    @property
    def sample_rate(self) -> int:
        """Samples per second."""
        return self._rate

    @property
    def sample_width(self) -> int:
        """Bytes per sample: 1 for G.711, 2 for signed linear."""
        return self._width

    @property
    def is_linear(self) -> bool:
        """Whether samples are 16-bit signed linear."""
        return self._width == 2

    @property
    def samples_per_frame(self) -> int:
        """Samples in one 20 ms frame."""
        return self._rate * FRAME_MS // 1000

    @property
    def frame_bytes(self) -> int:
        """Bytes in one 20 ms frame."""
        return self.samples_per_frame * self._width

    def bytes_for(self, ms: int) -> int:
        """Bytes in `ms` milliseconds of audio (a multiple of 20 ms)."""
        if ms <= 0 or ms % FRAME_MS:
            raise ValueError(f"duration must be a positive multiple of {FRAME_MS} ms, got {ms}")
        return self.frame_bytes * (ms // FRAME_MS)

    @property
    def rtp_payload_type(self) -> int:
        """Payload type Asterisk uses for this format on externalMedia RTP."""
        return _RTP_PAYLOAD_TYPES[self]

    @classmethod
    def from_rtp_payload_type(cls, payload_type: int) -> AudioFormat:
        """The format Asterisk sends with `payload_type` (PT 11 is slin too)."""
        if payload_type == 11:
            return cls.SLIN
        for fmt, pt in _RTP_PAYLOAD_TYPES.items():
            if pt == payload_type:
                return fmt
        raise ValueError(f"no audio format for RTP payload type {payload_type}")


_RTP_PAYLOAD_TYPES = {
    AudioFormat.ULAW: 0,
    AudioFormat.ALAW: 8,
    AudioFormat.SLIN: 10,
    AudioFormat.SLIN16: 118,
}
