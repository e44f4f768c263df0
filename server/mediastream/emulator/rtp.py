"""UnicastRTP externalMedia channels (``chan_rtp`` + ``res_rtp_asterisk``).

What the recordings show, and what this reproduces:

* Asterisk sends from ``UNICASTRTP_LOCAL_ADDRESS:PORT`` (an even port from the
  configured range) to ``external_host``; PT 0/8/10/118 for ulaw/alaw/slin/slin16,
  slin samples big-endian; random SSRC and initial sequence number; no marker on
  the first packet.
* Timestamps follow ``ast_rtp_raw_write``: the first is one frame (160/320), each
  next one is predicted as ``last + samples`` unless the real time elapsed differs
  from that by 640 or more, in which case the elapsed time is used and the marker
  bit is set (the packet after a DTMF gap). A frame that came from RTP keeps its
  media time, so echoed packets carry the sender's own timestamps.
* Only static payload types (<= 34) are accepted, so slin16 (PT 118) sent to
  Asterisk is dropped silently. There is no jitter buffer: a packet received is
  passed on at once.
* Strict RTP: packets from ``external_host`` are accepted at once; another source
  is learned after 4 packets with consecutive sequence numbers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from typing import Any, cast

from mediastream.core.formats import FRAME_MS, AudioFormat
from mediastream.core.pcm import swap16
from mediastream.core.rtp import RtpError, RtpPacket, parse_rtp, seq_distance
from mediastream.emulator.media import MediaClock
from mediastream.emulator.model import Channel, Frame

__all__ = ["RtpTech", "bind_rtp_socket"]

log = logging.getLogger(__name__)

MAX_TIMESTAMP_SKEW = 640
"""``res_rtp_asterisk``: drift (in timestamp units) beyond which the clock is trusted."""

LAST_STATIC_PT = 34
"""``AST_RTP_PT_LAST_STATIC``: the highest payload type accepted without SDP."""

STRICT_RTP_PROBATION = 4
"""Consecutive packets a new source needs before it is learned."""

_RECEIVE_FORMATS = {
    0: AudioFormat.ULAW,
    8: AudioFormat.ALAW,
    10: AudioFormat.SLIN,
    11: AudioFormat.SLIN,
}


def bind_rtp_socket(host: str, port_start: int, port_end: int) -> socket.socket:
    """Bind a UDP socket to a free even port in ``[port_start, port_end]``.

    Raises:
        OSError: If every port in the range is taken.
    """
    first = port_start + (port_start & 1)
    ports = list(range(first, port_end + 1, 2))
    offset = random.randrange(len(ports)) if ports else 0
    for port in ports[offset:] + ports[:offset]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        sock.setblocking(False)
        return sock
    raise OSError(errno.EADDRINUSE, f"no free RTP port in {port_start}-{port_end}")


class RtpTech(asyncio.DatagramProtocol):
    """The RTP endpoint of a UnicastRTP channel."""

    def __init__(self, channel: Channel, remote: tuple[str, int], clock: MediaClock) -> None:
        """Create the endpoint for ``channel``, sending to ``remote``."""
        self.channel = channel
        self.clock = clock
        self.remote = remote
        self.format = channel.native_format
        self.payload_type = self.format.rtp_payload_type
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._last_ts = 0
        self._txcore: float | None = None
        self._smoother = bytearray()
        self._transport: asyncio.DatagramTransport | None = None
        self._source: tuple[str, int] | None = None
        self._candidate: tuple[tuple[str, int], int, int] | None = None
        self.packets_sent = 0

    @property
    def local_address(self) -> tuple[str, int]:
        """``(address, port)`` the endpoint sends from and listens on."""
        assert self._transport is not None
        sockname: tuple[str, int] = self._transport.get_extra_info("sockname")
        return sockname[0], sockname[1]

    async def open(self, sock: socket.socket) -> None:
        """Start using a bound socket."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=sock)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # CPython's selector datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    # --- sending ------------------------------------------------------------

    def write_frame(self, frame: Frame) -> None:
        """Send a frame; slin goes through a 20 ms smoother as in Asterisk."""
        if self.format.is_linear:
            self._smoother += frame.payload
            size = self.format.frame_bytes
            timing_ms = frame.timing_ms
            while len(self._smoother) >= size:
                chunk = bytes(self._smoother[:size])
                del self._smoother[:size]
                self._send(swap16(chunk), size // 2, timing_ms)
                timing_ms = None  # the frame's media time belongs to its first packet
        else:
            self._send(frame.payload, frame.samples, frame.timing_ms)

    def _send(self, payload: bytes, samples: int, timing_ms: int | None) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        now = self.clock.now()
        if self._txcore is None:
            # calc_txstamp(): the reference starts on a 20 ms boundary.
            self._txcore = now - (now % (FRAME_MS / 1000))
        # ast_tvdiff_ms(): whole microseconds, truncated to milliseconds.
        elapsed_ms = max(0, round((now - self._txcore) * 1_000_000) // 1000)
        self._txcore = now
        rate_ms = self.format.sample_rate // 1000
        predicted = self._last_ts + samples
        self._last_ts += elapsed_ms * rate_ms
        marker = False
        if abs(self._last_ts - predicted) < MAX_TIMESTAMP_SKEW:
            self._last_ts = predicted
        else:
            marker = True
        if timing_ms is not None:
            self._last_ts = timing_ms * rate_ms
        packet = RtpPacket(
            self.payload_type,
            self._seq,
            self._last_ts & 0xFFFFFFFF,
            self.ssrc,
            payload,
            marker,
        )
        self._seq = (self._seq + 1) & 0xFFFF
        self._transport.sendto(packet.serialize(), self.remote)
        self.packets_sent += 1

    def write_dtmf(self, digit: str, duration_ms: int) -> None:
        """chan_rtp has no DTMF callbacks: nothing is sent (not even RFC 2833)."""

    def close(self) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()

    # --- receiving ------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """Pass an acceptable RTP packet on as a frame."""
        try:
            packet = parse_rtp(data)
        except RtpError:
            return
        source = (str(addr[0]), int(addr[1]))
        if not self._accept_source(source, packet.sequence_number):
            return
        fmt = _RECEIVE_FORMATS.get(packet.payload_type)
        if packet.payload_type > LAST_STATIC_PT or fmt is None or not packet.payload:
            return
        payload = packet.payload
        if fmt.is_linear:
            if len(payload) % 2:
                return
            payload = swap16(payload)
        rate_ms = fmt.sample_rate // 1000
        self.channel.read(Frame(fmt, payload, packet.timestamp // rate_ms))

    def _accept_source(self, source: tuple[str, int], seq: int) -> bool:
        if source == self.remote or source == self._source:
            return True
        # Strict RTP learning: a new source must send consecutive sequence numbers.
        if self._candidate is not None and self._candidate[0] == source:
            _, last_seq, count = self._candidate
            count = count + 1 if seq_distance(seq, last_seq) == 1 else 1
        else:
            count = 1
        self._candidate = (source, seq, count)
        if count >= STRICT_RTP_PROBATION:
            self._source = source
            self._candidate = None
            return True
        return False

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (nobody listening yet) are normal for RTP."""
