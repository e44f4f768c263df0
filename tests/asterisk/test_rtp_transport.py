"""The gateway's RTP socket with real UDP: reordering, loss, duplicates and junk from 'Asterisk'."""

from __future__ import annotations

import asyncio
import socket

from mediastream.asterisk.transports import RtpTransport
from mediastream.core.formats import AudioFormat
from mediastream.core.pcm import swap16
from mediastream.core.rtp import RtpPacket, parse_rtp


class Sink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def on_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def on_dtmf(self, digit: str, duration_ms: int = 0) -> None:
        raise AssertionError("no DTMF over RTP")

    def on_transport_closed(self, reason: str) -> None:
        pass


def packet(seq: int, fmt: AudioFormat = AudioFormat.ULAW) -> bytes:
    payload = bytes([seq % 200 + 1]) * fmt.frame_bytes
    return RtpPacket(fmt.rtp_payload_type, seq, seq * 160, 0xABCDEF, payload).serialize()


async def gateway_and_asterisk(fmt: AudioFormat) -> tuple[RtpTransport, Sink, socket.socket]:
    sink = Sink()
    rtp = await RtpTransport.bind("127.0.0.1", fmt, sink)
    asterisk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    asterisk.bind(("127.0.0.1", 0))
    rtp.set_remote(*asterisk.getsockname())
    return rtp, sink, asterisk


async def settle() -> None:
    await asyncio.sleep(0.05)


async def test_reordered_lost_and_duplicated_packets_come_out_in_order() -> None:
    rtp, sink, asterisk = await gateway_and_asterisk(AudioFormat.ULAW)
    host, port = rtp.external_host.split(":")
    try:
        for seq in [1, 2, 4, 3, 5, 5, 8, 9, 10, 6, 11]:  # 3 late-ish, 5 twice, 7 lost, 6 too late
            asterisk.sendto(packet(seq), (host, int(port)))
            await asyncio.sleep(0.002)
        await settle()
        firsts = [f[0] for f in sink.frames]
        # Payload bytes are seq + 1. 3 waited for; 5's duplicate dropped; 6 and 7 missing
        # when 8 and 9 were in: concealed; 6 arriving after that is late.
        assert firsts[:5] == [2, 3, 4, 5, 6]
        assert firsts[7:] == [9, 10, 11, 12]
        assert len(sink.frames) == 11  # every slot 1..11 exactly once
        assert sink.frames[5] != sink.frames[4] and sink.frames[5][0] not in (7, 8)
        stats = rtp.jitter.stats
        assert (stats.duplicates, stats.lost, stats.concealed) == (1, 2, 2)
        assert (stats.late, stats.reordered) == (1, 1)
    finally:
        rtp.close()
        asterisk.close()


async def test_linear_payloads_are_swapped_to_little_endian() -> None:
    rtp, sink, asterisk = await gateway_and_asterisk(AudioFormat.SLIN)
    host, port = rtp.external_host.split(":")
    try:
        raw = packet(1, AudioFormat.SLIN)
        asterisk.sendto(raw, (host, int(port)))
        await settle()
        assert sink.frames == [swap16(parse_rtp(raw).payload)]
    finally:
        rtp.close()
        asterisk.close()


async def test_junk_and_strangers_are_dropped_and_counted() -> None:
    rtp, sink, asterisk = await gateway_and_asterisk(AudioFormat.ULAW)
    host, port = rtp.external_host.split(":")
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        asterisk.sendto(b"\x00\x01junk", (host, int(port)))
        asterisk.sendto(b"\x80", (host, int(port)))
        stranger.sendto(packet(1), (host, int(port)))
        asterisk.sendto(packet(1), (host, int(port)))
        await settle()
        assert (rtp.malformed, rtp.foreign, len(sink.frames)) == (2, 1, 1)
    finally:
        rtp.close()
        asterisk.close()
        stranger.close()
