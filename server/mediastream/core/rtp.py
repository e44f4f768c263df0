"""RTP (RFC 3550) packets: parse, build, and sequence/timestamp arithmetic.

Only what an externalMedia ``UnicastRTP`` peer needs: no RTCP, no SDP. The parser
accepts CSRC lists, header extensions and padding (skipping the last two) so that
a packet from any sender can be read, and rejects malformed datagrams with an
:class:`RtpError` whose :attr:`RtpError.reason` says exactly what was wrong.

Sequence numbers wrap at 2**16 and timestamps at 2**32; compare them only through
:func:`seq_newer` / :func:`seq_distance` / :func:`ts_distance`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "PT_ALAW",
    "PT_SLIN",
    "PT_SLIN16",
    "PT_ULAW",
    "PT_VOIPBIN",
    "RTP_HEADER_SIZE",
    "RtpError",
    "RtpPacket",
    "RtpSequencer",
    "parse_rtp",
    "plain_header",
    "seq_distance",
    "seq_newer",
    "ts_distance",
]

PT_ULAW = 0
"""Static payload type of G.711 mu-law."""
PT_ALAW = 8
"""Static payload type of G.711 A-law."""
PT_SLIN = 10
"""Payload type Asterisk uses for 8 kHz slin (big-endian on the wire)."""
PT_SLIN16 = 118
"""Payload type Asterisk uses for 16 kHz slin16 (big-endian; Asterisk never accepts it back)."""
PT_VOIPBIN = 96
"""First dynamic payload type; the one VoIPBIN's media pipeline uses."""

RTP_VERSION = 2
"""The only RTP version there is."""
RTP_HEADER_SIZE = 12
"""Size of the fixed RTP header, without CSRCs or extension."""

_HEADER = struct.Struct("!BBHII")
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet.

    Attributes:
        reason: What is wrong, e.g. ``"too short: 7 bytes, need 12"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid RTP packet: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet, header fields plus payload (extension and padding dropped).

    Attributes:
        payload_type: 7-bit payload type.
        sequence_number: 16-bit sequence number.
        timestamp: 32-bit media timestamp (sample clock of the format).
        ssrc: 32-bit synchronisation source.
        payload: The media bytes.
        marker: The M bit (Asterisk sets it on the first packet after a gap).
        csrc: Contributing sources, at most 15.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrc: tuple[int, ...] = ()

    def serialize(self) -> bytes:
        """Build the datagram: fixed header, CSRC list, payload; no extension or padding.

        Returns:
            The packet bytes.

        Raises:
            ValueError: If a field does not fit its width.
        """
        if not 0 <= self.payload_type <= 0x7F:
            raise ValueError(f"payload type {self.payload_type} out of range 0..127")
        if len(self.csrc) > 15:
            raise ValueError(f"at most 15 CSRCs fit in a header, got {len(self.csrc)}")
        try:
            header = _HEADER.pack(
                0x80 | len(self.csrc),
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence_number,
                self.timestamp,
                self.ssrc,
            )
            if self.csrc:
                header += struct.pack(f"!{len(self.csrc)}I", *self.csrc)
        except struct.error as exc:
            raise ValueError(f"RTP header field out of range: {exc}") from None
        return header + self.payload


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP datagram.

    Args:
        data: The whole UDP payload.

    Returns:
        The packet, with the CSRC list kept and any header extension and padding
        removed from the payload.

    Raises:
        RtpError: If the datagram is too short, is not version 2, or its CSRC list,
            extension or padding do not fit in it.
    """
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise RtpError(f"too short: {size} bytes, need {RTP_HEADER_SIZE}")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    version = b0 >> 6
    if version != RTP_VERSION:
        raise RtpError(f"version {version}, expected 2")
    cc = b0 & 0x0F
    offset = RTP_HEADER_SIZE + 4 * cc
    if offset > size:
        raise RtpError(f"CSRC list overruns packet: {cc} CSRCs need {offset} bytes, have {size}")
    csrc: tuple[int, ...] = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE) if cc else ()
    if b0 & 0x10:
        if offset + 4 > size:
            raise RtpError(
                f"extension header overruns packet: need {offset + 4} bytes, have {size}"
            )
        words = int.from_bytes(data[offset + 2 : offset + 4], "big")
        offset += 4 + 4 * words
        if offset > size:
            raise RtpError(
                f"extension overruns packet: {words} words need {offset} bytes, have {size}"
            )
    end = size
    if b0 & 0x20:
        if end == offset:
            raise RtpError("padding bit set but no padding length byte")
        pad = data[-1]
        if pad == 0:
            raise RtpError("padding length is 0")
        if pad > end - offset:
            raise RtpError(
                f"padding length {pad} exceeds the {end - offset} bytes after the header"
            )
        end -= pad
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, data[offset:end], bool(b1 & 0x80), csrc)


_PLAIN_FIRST_BYTE = RTP_VERSION << 6
_PLAIN_HEADER = struct.Struct("!xBHII")


def plain_header(data: bytes) -> tuple[int, int, int, int] | None:
    """The header of a packet whose payload is everything after 12 bytes.

    That is what Asterisk sends: version 2, no padding, extension or CSRCs. A
    receiver can then skip building an :class:`RtpPacket` per 20 ms frame.

    Args:
        data: The whole UDP payload.

    Returns:
        ``(marker_and_payload_type, sequence_number, timestamp, ssrc)`` with the
        payload at ``data[RTP_HEADER_SIZE:]``, or None if the packet needs
        :func:`parse_rtp` (another header form, or too short to carry audio).
    """
    if len(data) <= RTP_HEADER_SIZE or data[0] != _PLAIN_FIRST_BYTE:
        return None
    header: tuple[int, int, int, int] = _PLAIN_HEADER.unpack_from(data)
    return header


def seq_distance(a: int, b: int) -> int:
    """Signed distance from sequence number ``b`` to ``a``, modulo 2**16.

    Args:
        a: A sequence number.
        b: The reference sequence number.

    Returns:
        ``n`` in ``-32768..32767`` such that ``(b + n) % 65536 == a``: positive when
        ``a`` is newer than ``b``. Exactly half the space apart counts as older.
    """
    d = (a - b) & 0xFFFF
    return d - _SEQ_MOD if d >= 0x8000 else d


def seq_newer(a: int, b: int) -> bool:
    """Whether sequence number ``a`` comes after ``b``, across the 16-bit wrap.

    Args:
        a: A sequence number.
        b: The reference sequence number.

    Returns:
        True if ``a`` is 1..32767 steps ahead of ``b``.
    """
    return 0 < ((a - b) & 0xFFFF) < 0x8000


def ts_distance(a: int, b: int) -> int:
    """Signed distance from timestamp ``b`` to ``a``, modulo 2**32.

    Args:
        a: A timestamp.
        b: The reference timestamp.

    Returns:
        ``n`` in ``-2**31..2**31-1`` such that ``(b + n) % 2**32 == a``.
    """
    d = (a - b) & 0xFFFFFFFF
    return d - _TS_MOD if d >= 0x80000000 else d


class RtpSequencer:
    """Builds the packets of one outgoing RTP stream.

    Each :meth:`next` uses the current sequence number and timestamp, then advances
    them: seq by 1 (mod 2**16), timestamp by the samples sent (mod 2**32).

    Attributes:
        payload_type: Payload type of every packet.
        ssrc: SSRC of every packet.
        sequence_number: Sequence number the next packet gets.
        timestamp: Timestamp the next packet gets.
    """

    __slots__ = ("payload_type", "sequence_number", "ssrc", "timestamp")

    def __init__(self, payload_type: int, ssrc: int, sequence_number: int, timestamp: int) -> None:
        """Start a stream.

        Args:
            payload_type: 0..127.
            ssrc: 32-bit SSRC.
            sequence_number: Sequence number of the first packet (taken mod 2**16).
            timestamp: Timestamp of the first packet (taken mod 2**32).

        Raises:
            ValueError: If ``payload_type`` or ``ssrc`` is out of range.
        """
        if not 0 <= payload_type <= 0x7F:
            raise ValueError(f"payload type {payload_type} out of range 0..127")
        if not 0 <= ssrc < _TS_MOD:
            raise ValueError(f"SSRC {ssrc} out of range 0..2**32-1")
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.sequence_number = sequence_number % _SEQ_MOD
        self.timestamp = timestamp % _TS_MOD

    def next(self, payload: bytes, samples: int, marker: bool = False) -> bytes:
        """Build the next packet and advance the stream.

        Args:
            payload: The media bytes.
            samples: Samples of audio in ``payload`` (160 for 20 ms of ulaw), by which
                the timestamp advances.
            marker: Set the M bit (first packet of a talk spurt).

        Returns:
            The datagram.
        """
        header = _HEADER.pack(
            0x80,
            (0x80 | self.payload_type) if marker else self.payload_type,
            self.sequence_number,
            self.timestamp,
            self.ssrc,
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        return header + payload

    def skip(self, samples: int) -> None:
        """Advance the timestamp over a gap in which nothing was sent.

        The sequence number stays contiguous, as Asterisk does across a DTMF gap;
        send the next packet with ``marker=True``.

        Args:
            samples: Samples of the gap.
        """
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
