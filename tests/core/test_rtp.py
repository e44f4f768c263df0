"""RTP parse/serialize, sequencing and wrap arithmetic, against recorded Asterisk traffic."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediastream.core.g711 import ulaw_decode
from mediastream.core.pcm import swap16
from mediastream.core.rtp import (
    PT_SLIN16,
    PT_ULAW,
    RTP_HEADER_SIZE,
    RtpError,
    RtpPacket,
    RtpSequencer,
    parse_rtp,
    plain_header,
    seq_distance,
    seq_newer,
    ts_distance,
)
from tests.asterisk_fixtures import case, records


def level(x: np.ndarray, rate: int, hz: float) -> float:  # type: ignore[type-arg]
    t = np.arange(len(x)) / rate
    return float(
        2 * np.hypot(x @ np.cos(2 * np.pi * hz * t), x @ np.sin(2 * np.pi * hz * t)) / len(x)
    )


def dominant(x: np.ndarray, rate: int) -> float:  # type: ignore[type-arg]
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[0] = 0
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize(
    ("name", "pt", "size", "step"),
    [("rtp_ulaw", PT_ULAW, 160, 160), ("rtp_slin16", PT_SLIN16, 640, 320)],
)
def test_recorded_stream_matches_readme(name: str, pt: int, size: int, step: int) -> None:
    recs = list(records(f"{name}_from_asterisk.bin"))
    assert len(recs) >= 50
    packets = [parse_rtp(data) for _, data in recs]
    first = packets[0]
    assert first.timestamp == step  # "starts at 160" / "starts at 320", not random
    assert first.marker is False
    for (_, data), p in zip(recs, packets, strict=True):
        assert p.payload_type == pt
        assert len(p.payload) == size
        assert p.csrc == ()
        assert p.marker is False
        assert p.ssrc == first.ssrc
        assert data[0] == 0x80  # v2, no padding, no extension, CC 0
        assert p.serialize() == data
    for a, b in itertools.pairwise(packets):
        assert seq_distance(b.sequence_number, a.sequence_number) == 1
        assert ts_distance(b.timestamp, a.timestamp) == step
    gaps = np.diff([t for t, _ in recs])
    assert 0.0195 < float(np.median(gaps)) < 0.0205


def test_rtp_slin16_payload_is_big_endian_440hz() -> None:
    packets = [parse_rtp(d) for _, d in records("rtp_slin16_from_asterisk.bin")]
    mid = b"".join(p.payload for p in packets[20:30])
    be = np.frombuffer(swap16(mid), "<i2").astype(float)
    assert abs(dominant(be, 16000) - 440) < 3
    assert 6800 < level(be, 16000, 440) < 7400  # README: 7100
    le = np.frombuffer(mid, "<i2").astype(float)
    assert level(le, 16000, 440) < 1500  # read little-endian it is noise (README: 594)


def test_rtp_ulaw_payload_is_440hz() -> None:
    packets = [parse_rtp(d) for _, d in records("rtp_ulaw_from_asterisk.bin")]
    x = np.frombuffer(ulaw_decode(b"".join(p.payload for p in packets[20:30])), "<i2").astype(float)
    assert abs(dominant(x, 8000) - 440) < 5
    assert 6800 < level(x, 8000, 440) < 7600


def test_dtmf_gaps_set_marker_and_jump_timestamp() -> None:
    recs = list(records("dtmf_rtp_ulaw_from_asterisk.bin"))
    packets = [parse_rtp(d) for _, d in recs]
    assert {p.payload_type for p in packets} == {PT_ULAW}  # no RFC 2833 (PT 101)
    marked = [i for i, p in enumerate(packets) if p.marker]
    assert len(marked) == 3  # one per digit of "12#"
    for i in range(1, len(packets)):
        a, b = packets[i - 1], packets[i]
        assert seq_distance(b.sequence_number, a.sequence_number) == 1  # seq stays contiguous
        if i in marked:
            assert ts_distance(b.timestamp, a.timestamp) == 1120  # the real 140 ms
            assert 0.13 < recs[i][0] - recs[i - 1][0] < 0.15
        else:
            assert ts_distance(b.timestamp, a.timestamp) == 160


def test_sequencer_reproduces_the_app_side_of_roundtrip_rtp_ulaw() -> None:
    # The recorder sent seq from 1000, ts from 5000, SSRC 0x11223344, marker on the first.
    sent = [d for _, d in records("roundtrip_rtp_ulaw_to_asterisk.bin")]
    seq = RtpSequencer(PT_ULAW, 0x11223344, 1000, 5000)
    for i, data in enumerate(sent):
        assert seq.next(data[12:], 160, marker=(i == 0)) == data
    back = [parse_rtp(d) for _, d in records("roundtrip_rtp_ulaw_from_asterisk.bin")]
    # Asterisk copies our timestamps but uses its own SSRC/seq, and no marker.
    assert [p.timestamp for p in back] == [5000 + 160 * i for i in range(len(back))]
    assert all(p.ssrc != 0x11223344 and not p.marker for p in back)
    assert [p.payload for p in back] == [d[12:] for d in sent]


def test_external_media_steps_match_recording() -> None:
    steps = case("rtp_ulaw.json")["steps"]
    em = [s for s in steps if "externalMedia" in s.get("request", "")]
    assert em and em[0]["params"]["format"] == "ulaw"


def test_sequencer_wraps_seq_and_timestamp() -> None:
    seq = RtpSequencer(PT_SLIN16, 0xDEADBEEF, 65534, 2**32 - 320)
    pkts = [parse_rtp(seq.next(b"\x00" * 640, 320)) for _ in range(4)]
    assert [p.sequence_number for p in pkts] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in pkts] == [2**32 - 320, 0, 320, 640]
    assert all(p.ssrc == 0xDEADBEEF and p.payload_type == PT_SLIN16 for p in pkts)
    seq.skip(1120)
    p = parse_rtp(seq.next(b"", 320, marker=True))
    assert (p.sequence_number, p.timestamp, p.marker) == (2, 960 + 1120, True)


def test_sequencer_matches_packet_serialize() -> None:
    seq = RtpSequencer(8, 7, 100, 200)
    assert seq.next(b"abc", 3, marker=True) == RtpPacket(8, 100, 200, 7, b"abc", True).serialize()
    with pytest.raises(ValueError, match="payload type"):
        RtpSequencer(128, 1, 0, 0)
    with pytest.raises(ValueError, match="SSRC"):
        RtpSequencer(0, 2**32, 0, 0)


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
)


@given(packets)
def test_parse_serialize_round_trip(p: RtpPacket) -> None:
    data = p.serialize()
    assert len(data) == 12 + 4 * len(p.csrc) + len(p.payload)
    assert parse_rtp(data) == p


def build(
    *,
    csrc: tuple[int, ...] = (),
    ext: bytes | None = None,
    payload: bytes = b"PAYLOAD",
    pad: int = 0,
    version: int = 2,
) -> bytes:
    b0 = (version << 6) | len(csrc) | (0x10 if ext is not None else 0) | (0x20 if pad else 0)
    data = struct.pack("!BBHII", b0, 0x80 | 96, 4242, 123456, 0xCAFEBABE)
    data += b"".join(struct.pack("!I", c) for c in csrc)
    if ext is not None:
        data += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    data += payload
    if pad:
        data += bytes(pad - 1) + bytes([pad])
    return data


def test_parse_skips_csrc_extension_and_padding() -> None:
    p = parse_rtp(build(csrc=(1, 2, 3), ext=b"\x11\x22\x33\x44" * 2, pad=4))
    assert p == RtpPacket(96, 4242, 123456, 0xCAFEBABE, b"PAYLOAD", True, (1, 2, 3))
    assert parse_rtp(build(ext=b"")).payload == b"PAYLOAD"
    assert parse_rtp(build(pad=1)).payload == b"PAYLOAD"
    assert parse_rtp(build(payload=b"", pad=5)).payload == b""
    assert parse_rtp(build(payload=b"")).payload == b""


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00\x00", "too short: 3 bytes, need 12"),
        (build(version=1), "version 1, expected 2"),
        (build(version=0), "version 0, expected 2"),
        (build(csrc=(1, 2))[:18], "CSRC list overruns packet: 2 CSRCs need 20 bytes, have 18"),
        (
            build(ext=b"", payload=b"")[:14],
            "extension header overruns packet: need 16 bytes, have 14",
        ),
        (
            build(ext=bytes(8), payload=b"")[:20],
            "extension overruns packet: 2 words need 24 bytes, have 20",
        ),
        (build(payload=b"abc") + b"\x00", "padding length is 0"),
        (
            build(payload=b"ab")[:-2] + b"\x09",
            "padding length 9 exceeds the 1 bytes after the header",
        ),
        (build(payload=b"")[:12], "padding bit set but no padding length byte"),
    ],
)
def test_parse_errors_have_precise_reasons(data: bytes, reason: str) -> None:
    if reason.startswith("padding"):
        data = bytes([data[0] | 0x20]) + data[1:]
    with pytest.raises(RtpError) as info:
        parse_rtp(data)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_serialize_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="payload type"):
        RtpPacket(128, 0, 0, 0, b"").serialize()
    with pytest.raises(ValueError, match="15 CSRCs"):
        RtpPacket(0, 0, 0, 0, b"", csrc=tuple(range(16))).serialize()
    with pytest.raises(ValueError, match="out of range"):
        RtpPacket(0, 65536, 0, 0, b"").serialize()


def ref_distance(a: int, b: int) -> int:
    # Brute force: the n of smallest magnitude with (b + n) % 65536 == a, ties to negative.
    return min((n for n in range(-32768, 32768) if (b + n) % 65536 == a), key=abs)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_seq_distance_and_newer(a: int, b: int) -> None:
    d = seq_distance(a, b)
    assert (b + d) % 65536 == a
    assert -32768 <= d <= 32767
    assert seq_newer(a, b) == (d > 0)
    if a != b and abs(d) != 32768:
        assert seq_newer(a, b) != seq_newer(b, a)


def test_seq_helpers_known_values() -> None:
    assert seq_distance(0, 65535) == 1
    assert seq_distance(65535, 0) == -1
    assert seq_distance(5, 65530) == 11
    assert seq_newer(2, 65500)
    assert not seq_newer(65500, 2)
    assert not seq_newer(7, 7)
    assert seq_distance(32768, 0) == -32768 and not seq_newer(32768, 0)
    assert ref_distance(5, 65530) == 11
    assert ts_distance(0, 2**32 - 160) == 160
    assert ts_distance(2**32 - 160, 0) == -160


@given(
    version=st.integers(0, 3),
    padding=st.booleans(),
    extension=st.booleans(),
    csrcs=st.integers(0, 15),
    marker=st.booleans(),
    payload_type=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    body=st.binary(max_size=400),
)
def test_plain_header_agrees_with_parse_rtp(
    version: int,
    padding: bool,
    extension: bool,
    csrcs: int,
    marker: bool,
    payload_type: int,
    seq: int,
    ts: int,
    ssrc: int,
    body: bytes,
) -> None:
    b0 = version << 6 | padding << 5 | extension << 4 | csrcs
    b1 = marker << 7 | payload_type
    data = struct.pack("!BBHII", b0, b1, seq, ts, ssrc) + body
    header = plain_header(data)
    if version != 2 or padding or extension or csrcs or not body:
        assert header is None
        return
    assert header == (b1, seq, ts, ssrc)
    packet = parse_rtp(data)
    assert (packet.marker << 7 | packet.payload_type, packet.sequence_number) == (b1, seq)
    assert (packet.timestamp, packet.ssrc, packet.payload) == (ts, ssrc, data[RTP_HEADER_SIZE:])


@pytest.mark.parametrize("name", ["rtp_ulaw", "rtp_slin16", "dtmf_rtp_ulaw", "roundtrip_rtp_ulaw"])
def test_plain_header_reads_every_recorded_asterisk_packet(name: str) -> None:
    recs = list(records(f"{name}_from_asterisk.bin"))
    assert recs
    for _, data in recs:
        packet = parse_rtp(data)
        header = plain_header(data)
        assert header is not None, "Asterisk sends bare 12-byte headers: the fast path's case"
        assert header == (
            packet.marker << 7 | packet.payload_type,
            packet.sequence_number,
            packet.timestamp,
            packet.ssrc,
        )
        assert data[RTP_HEADER_SIZE:] == packet.payload
