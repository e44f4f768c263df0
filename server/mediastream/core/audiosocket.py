"""AudioSocket framing (Asterisk ``res_audiosocket``): encode messages, decode a TCP stream.

Every message is a 3-byte header, ``kind`` then the payload length as a big-endian
uint16, followed by the payload. Asterisk connects as the TCP client, sends a UUID
message first, then audio (and DTMF digits, kind 0x03, at the end of each digit).
On hangup it simply closes the connection: it never sends :data:`HANGUP`.

Audio payloads are slin little-endian, except that a ``format=ulaw`` channel sends
kind 0x10 carrying mu-law bytes. In the other direction Asterisk reads every 0x10
as 8 kHz slin whatever the channel format, so always send slin.
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass

__all__ = [
    "HANGUP",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "AudioSocketDecoder",
    "AudioSocketError",
    "Kind",
    "Message",
    "audio_kind_for_rate",
    "encode",
    "encode_audio",
    "encode_dtmf",
    "encode_uuid",
    "is_audio_kind",
    "sample_rate_of",
]

HEADER_SIZE = 3
"""Bytes in a message header: kind (1) and payload length (2, big-endian)."""

MAX_PAYLOAD = 0xFFFF
"""Largest payload the 16-bit length field can declare."""


class Kind(enum.IntEnum):
    """Message kinds of ``enum ast_audiosocket_msg_kind``."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    SLIN12 = 0x11
    SLIN16 = 0x12
    SLIN24 = 0x13
    SLIN32 = 0x14
    SLIN44 = 0x15
    SLIN48 = 0x16
    SLIN96 = 0x17
    SLIN192 = 0x18
    ERROR = 0xFF


_SAMPLE_RATES = {
    Kind.AUDIO: 8000,
    Kind.SLIN12: 12000,
    Kind.SLIN16: 16000,
    Kind.SLIN24: 24000,
    Kind.SLIN32: 32000,
    Kind.SLIN44: 44100,
    Kind.SLIN48: 48000,
    Kind.SLIN96: 96000,
    Kind.SLIN192: 192000,
}
_KINDS_BY_RATE = {rate: kind for kind, rate in _SAMPLE_RATES.items()}

HANGUP: bytes = b"\x00\x00\x00"
"""The hangup message (kind 0x00, no payload), sent by the app to end the call."""

_HEADER = struct.Struct("!BH")
_AUDIO_FIRST = int(Kind.AUDIO)
_AUDIO_LAST = int(Kind.SLIN192)


class AudioSocketError(ValueError):
    """An AudioSocket message that cannot be encoded or a stream that cannot be decoded.

    Attributes:
        reason: What is wrong.
        messages: Messages the failing :meth:`AudioSocketDecoder.feed` call had
            already decoded before the bad header (empty when encoding).
    """

    def __init__(self, reason: str, messages: list[Message] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.messages: list[Message] = messages or []


def is_audio_kind(kind: int) -> bool:
    """Whether ``kind`` carries audio (0x10..0x18).

    Args:
        kind: A message kind.

    Returns:
        True for the slin kinds.
    """
    return Kind.AUDIO <= kind <= Kind.SLIN192


def sample_rate_of(kind: int) -> int:
    """Sample rate of the slin audio an audio kind carries.

    Args:
        kind: 0x10 (8000) to 0x18 (192000).

    Returns:
        Samples per second.

    Raises:
        ValueError: If ``kind`` is not an audio kind.
    """
    try:
        return _SAMPLE_RATES[Kind(kind)]
    except (ValueError, KeyError):
        raise ValueError(f"AudioSocket kind 0x{kind:02x} does not carry audio") from None


def audio_kind_for_rate(sample_rate: int) -> Kind:
    """The audio kind for slin at ``sample_rate``.

    Args:
        sample_rate: One of 8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000, 192000.

    Returns:
        The kind (``Kind.AUDIO`` for 8 kHz).

    Raises:
        ValueError: If no kind has that rate.
    """
    try:
        return _KINDS_BY_RATE[sample_rate]
    except KeyError:
        raise ValueError(f"no AudioSocket kind for {sample_rate} Hz") from None


@dataclass(frozen=True, slots=True)
class Message:
    """One AudioSocket message.

    ``kind`` is a plain int so that kinds this module does not know survive decoding;
    compare it with :class:`Kind` members.

    Attributes:
        kind: The message kind byte.
        payload: The payload bytes.
    """

    kind: int
    payload: bytes

    @property
    def is_audio(self) -> bool:
        """Whether this is an audio message (kind 0x10..0x18)."""
        return Kind.AUDIO <= self.kind <= Kind.SLIN192

    @property
    def sample_rate(self) -> int:
        """Sample rate of an audio message (see :func:`sample_rate_of`)."""
        return sample_rate_of(self.kind)

    @property
    def uuid(self) -> uuid.UUID:
        """The call's UUID carried by a UUID message.

        Raises:
            ValueError: If this is not a 16-byte UUID message.
        """
        if self.kind != Kind.UUID or len(self.payload) != 16:
            raise ValueError(
                f"not a UUID message: kind 0x{self.kind:02x}, {len(self.payload)} bytes"
            )
        return uuid.UUID(bytes=self.payload)

    @property
    def digit(self) -> str:
        """The DTMF digit (``0-9 * # A-D``) of a DTMF message.

        Raises:
            ValueError: If this is not a 1-byte DTMF message.
        """
        if self.kind != Kind.DTMF or len(self.payload) != 1:
            raise ValueError(
                f"not a DTMF message: kind 0x{self.kind:02x}, {len(self.payload)} bytes"
            )
        return chr(self.payload[0])

    def encode(self) -> bytes:
        """The message on the wire (see :func:`encode`)."""
        return encode(self.kind, self.payload)


def encode(kind: int, payload: bytes = b"") -> bytes:
    """Build one message: header then payload.

    Write the result with a single ``sendall`` so Asterisk reads whole headers.

    Args:
        kind: Message kind, 0..255.
        payload: At most 65535 bytes.

    Returns:
        The message bytes.

    Raises:
        AudioSocketError: If the payload is longer than 65535 bytes or the kind is not a byte.
    """
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise AudioSocketError(
            f"payload of {n} bytes does not fit in an AudioSocket message (max {MAX_PAYLOAD})"
        )
    if not 0 <= kind <= 0xFF:
        raise AudioSocketError(f"kind {kind} is not a byte")
    return _HEADER.pack(kind, n) + payload


def encode_audio(pcm: bytes, kind: int = Kind.AUDIO) -> bytes:
    """Build an audio message.

    Args:
        pcm: slin little-endian samples; 320 bytes is 20 ms at 8 kHz.
        kind: The audio kind; 0x10 (8 kHz) unless the call uses a wider slin.

    Returns:
        The message bytes.

    Raises:
        AudioSocketError: If ``pcm`` is empty (Asterisk hangs up on a zero-length
            audio message), has an odd length, or is longer than 65535 bytes, or
            ``kind`` is not an audio kind.
    """
    n = len(pcm)
    if not 0 < n <= MAX_PAYLOAD or n & 1:
        if n == 0:
            raise AudioSocketError("empty audio message: Asterisk treats it as an error")
        if n & 1 and n <= MAX_PAYLOAD:
            raise AudioSocketError(f"audio payload of {n} bytes is not whole 16-bit samples")
        raise AudioSocketError(
            f"payload of {n} bytes does not fit in an AudioSocket message (max {MAX_PAYLOAD})"
        )
    if not Kind.AUDIO <= kind <= Kind.SLIN192:
        raise AudioSocketError(f"kind 0x{kind:02x} is not an audio kind")
    return _HEADER.pack(kind, n) + pcm


def encode_uuid(u: uuid.UUID) -> bytes:
    """Build the UUID message Asterisk sends first (16 raw bytes, RFC 4122 order).

    Args:
        u: The call's UUID.

    Returns:
        The message bytes: ``01 00 10`` then ``u.bytes``.
    """
    return b"\x01\x00\x10" + u.bytes


def encode_dtmf(digit: str) -> bytes:
    """Build a DTMF message (as Asterisk sends at the end of a digit).

    Args:
        digit: One of ``0-9 * # A-D``.

    Returns:
        The message bytes.

    Raises:
        AudioSocketError: If ``digit`` is not a DTMF digit.
    """
    if len(digit) != 1 or digit not in "0123456789*#ABCD":
        raise AudioSocketError(f"{digit!r} is not a DTMF digit")
    return b"\x03\x00\x01" + digit.encode("ascii")


class AudioSocketDecoder:
    """Incremental decoder for the byte stream of one AudioSocket connection.

    :meth:`feed` takes whatever ``recv`` returned and gives back every message that
    is now complete; a partial message stays buffered (:attr:`pending`). The same
    stream gives the same messages however it is split.

    Errors: a header declaring more than ``max_payload`` bytes, or an audio kind with
    a zero length, raises :class:`AudioSocketError`. The exception's ``messages``
    holds what that call decoded before the bad header, so nothing is lost. Framing
    cannot be recovered on a byte stream, so the decoder is then *failed*: the bad
    header and everything after it stay in :attr:`pending`, and every later
    :meth:`feed` raises the same error again without consuming anything. Close the
    connection.

    Attributes:
        max_payload: Largest payload accepted.
    """

    __slots__ = ("_buf", "_error", "max_payload")

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        """Create a decoder.

        Args:
            max_payload: Largest payload to accept, up to 65535 (the field's maximum).
        """
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be 0..{MAX_PAYLOAD}, got {max_payload}")
        self.max_payload = max_payload
        self._buf = bytearray()
        self._error: str | None = None

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a whole message."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        """Whether a framing error stopped the decoder."""
        return self._error is not None

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes and return the messages they complete.

        Args:
            data: Bytes from the connection, any length.

        Returns:
            The complete messages, in order.

        Raises:
            AudioSocketError: On a bad header (see the class docstring).
        """
        if self._error is not None:
            self._buf += data
            raise AudioSocketError(self._error)
        # Parse straight from `data` when nothing is buffered (one whole message per
        # recv is the common case); otherwise append to the bytearray, which keeps a
        # large message arriving in small pieces linear rather than quadratic.
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        out: list[Message] = []
        size = len(buf)
        pos = 0
        max_payload = self.max_payload
        while size - pos >= HEADER_SIZE:
            kind = buf[pos]
            n = (buf[pos + 1] << 8) | buf[pos + 2]
            if n > max_payload or (n == 0 and _AUDIO_FIRST <= kind <= _AUDIO_LAST):
                if n:
                    self._error = (
                        f"message kind 0x{kind:02x} declares {n} bytes, over {max_payload}"
                    )
                else:
                    self._error = f"audio message kind 0x{kind:02x} with zero length"
                self._consume(buf, pos)
                raise AudioSocketError(self._error, out)
            end = pos + HEADER_SIZE + n
            if end > size:
                break
            out.append(Message(kind, bytes(buf[pos + HEADER_SIZE : end])))
            pos = end
        self._consume(buf, pos)
        return out

    def _consume(self, buf: bytes | bytearray, pos: int) -> None:
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < len(buf):
            self._buf = bytearray(buf[pos:])
