"""Media transports between the gateway and an externalMedia channel.

Each transport is a thin asyncio adapter around the sans-I/O core: it moves
20 ms frames of the channel's format, with 16-bit linear audio always
little-endian at this interface (RTP's big-endian samples are swapped here).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Protocol, cast

from mediastream import metrics
from mediastream.core.formats import AudioFormat
from mediastream.core.jitterbuffer import JitterBuffer
from mediastream.core.pcm import swap16
from mediastream.core.rtp import RTP_HEADER_SIZE, RtpError, RtpSequencer, parse_rtp, plain_header

log = logging.getLogger(__name__)

REORDER_CAPACITY = 16
"""Packets the RTP reorder window holds (320 ms)."""

FRAMES_CONCEALED = metrics.FRAMES.labels("from_asterisk", "concealed")


class FrameSink(Protocol):
    """Receives the frames a transport takes from Asterisk."""

    def on_frame(self, frame: bytes) -> None:
        """One 20 ms frame arrived from Asterisk."""

    def on_dtmf(self, digit: str, duration_ms: int = 0) -> None:
        """Asterisk reported the end of a DTMF digit."""

    def on_transport_closed(self, reason: str) -> None:
        """The transport ended; no more frames will come."""


class MediaTransport(Protocol):
    """What a stream needs from a transport."""

    def send_frame(self, frame: bytes) -> None:
        """Send one 20 ms frame to Asterisk."""

    def close(self) -> None:
        """Release the transport's socket."""


class RtpTransport(asyncio.DatagramProtocol):
    """externalMedia over RTP/UDP.

    The socket is bound to exactly the address given to Asterisk as
    ``external_host`` and RTP is sent from it, because Asterisk's strict RTP
    accepts at once only packets from the address it sends to.
    """

    def __init__(self, fmt: AudioFormat, sink: FrameSink) -> None:
        self.fmt = fmt
        self._sink = sink
        self._transport: asyncio.DatagramTransport | None = None
        self._remote: tuple[str, int] | None = None
        self._sequencer = RtpSequencer(
            payload_type=fmt.rtp_payload_type,
            ssrc=random.getrandbits(32),
            sequence_number=random.getrandbits(16),
            timestamp=random.getrandbits(32),
        )
        self._swap = fmt.is_linear
        # Packet-driven: in-order packets pass at once; a gap waits for two
        # later packets before it is concealed.
        self.jitter = JitterBuffer(REORDER_CAPACITY, fmt.frame_bytes, prefetch=1, fmt=fmt)
        self.malformed = 0
        self.foreign = 0
        self.wrong_payload_type = 0
        # What Asterisk sends for this format (slin may also come as PT 11).
        self._payload_types = frozenset(
            pt for pt in range(128) if _format_of_payload_type(pt) is fmt
        )

    @classmethod
    async def bind(cls, host: str, fmt: AudioFormat, sink: FrameSink) -> RtpTransport:
        """Open a UDP socket on `host` (any free port)."""
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: cls(fmt, sink), local_addr=(host, 0))
        return proto

    @property
    def external_host(self) -> str:
        """``host:port`` of the bound socket."""
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    def set_remote(self, host: str, port: int) -> None:
        """Where Asterisk listens (UNICASTRTP_LOCAL_ADDRESS / _PORT)."""
        self._remote = (host, port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        # The selector loop's UDP transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:  # noqa: D102
        remote = self._remote
        if remote is not None and (addr[1] != remote[1] or addr[0] != remote[0]):
            self.foreign += 1
            return
        # Asterisk's packets in order: no RtpPacket or PlayoutFrame per frame.
        header = plain_header(data)
        if header is not None and (header[0] & 0x7F) in self._payload_types:
            payload = data[RTP_HEADER_SIZE:]
            if self.jitter.play_next(header[3], header[1], header[2], payload):
                if self._swap and not len(payload) & 1:
                    payload = swap16(payload)
                self._sink.on_frame(payload)
                return
        try:
            packet = parse_rtp(data)
        except RtpError as exc:
            self.malformed += 1
            metrics.MALFORMED_INPUT.labels("rtp").inc()
            log.warning("dropped malformed RTP from Asterisk: %s", exc.reason)
            return
        if packet.payload_type not in self._payload_types:
            # Another codec's payload (or telephone-event) is not a frame of this
            # format: fed to the jitter buffer it would be played as noise.
            self.wrong_payload_type += 1
            metrics.MALFORMED_INPUT.labels("rtp").inc()
            if self.wrong_payload_type == 1:
                log.warning(
                    "dropped RTP with payload type %d from Asterisk (expected %s)",
                    packet.payload_type,
                    "/".join(map(str, sorted(self._payload_types))),
                )
            return
        jitter = self.jitter
        before = jitter.stats.concealed
        jitter.push(packet)
        for frame in jitter.pop_ready():
            payload = frame.payload
            if self._swap and not len(payload) & 1:
                payload = swap16(payload)
            self._sink.on_frame(payload)
        if jitter.stats.concealed != before:
            FRAMES_CONCEALED.inc(jitter.stats.concealed - before)

    def error_received(self, exc: Exception) -> None:  # noqa: D102
        log.warning("RTP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._sink.on_transport_closed("rtp socket closed")

    def send_frame(self, frame: bytes) -> None:
        """Send one frame as an RTP packet to Asterisk."""
        if self._transport is None or self._remote is None or self._transport.is_closing():
            return
        if self._swap:
            packet = self._sequencer.next(swap16(frame), len(frame) >> 1)
        else:
            packet = self._sequencer.next(frame, len(frame))
        self._transport.sendto(packet, self._remote)

    def close(self) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()


def _format_of_payload_type(payload_type: int) -> AudioFormat | None:
    try:
        return AudioFormat.from_rtp_payload_type(payload_type)
    except ValueError:
        return None
