"""Jitter buffer: ordering, bounds, loss concealment, wrap, and the recorded DTMF gaps."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediastream.core.formats import AudioFormat
from mediastream.core.g711 import ulaw_decode, ulaw_encode
from mediastream.core.jitterbuffer import JitterBuffer
from mediastream.core.rtp import RtpPacket, parse_rtp, seq_distance
from tests.asterisk_fixtures import records


def pkt(
    seq: int, *, ts: int | None = None, payload: bytes | None = None, ssrc: int = 1
) -> RtpPacket:
    seq &= 0xFFFF
    body = payload if payload is not None else seq.to_bytes(2, "big") * 80
    return RtpPacket(0, seq, (seq * 160 if ts is None else ts) & 0xFFFFFFFF, ssrc, body)


def drain(jb: JitterBuffer, ticks: int) -> list[bytes | None]:
    return [jb.pop() for _ in range(ticks)]


def test_in_order_stream_plays_after_prefetch() -> None:
    jb = JitterBuffer(10, 160, prefetch=3)
    out: list[bytes | None] = []
    for s in range(20):
        jb.push(pkt(s))
        out.append(jb.pop())
    assert out[:2] == [None, None]
    assert out[2:] == [pkt(s).payload for s in range(18)]
    assert jb.stats.played == 18 and jb.stats.lost == 0 and len(jb) == 2


def test_reorder_within_prefetch_is_repaired() -> None:
    jb = JitterBuffer(8, 160, prefetch=3)
    for s in (2, 0, 1, 4, 3, 5):
        jb.push(pkt(s))
    assert [f.sequence_number for f in (jb.pop_frame() for _ in range(6)) if f] == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]
    assert jb.stats.reordered == 3  # 0, 1 and 3 came after a higher number


def test_duplicates_and_late_packets_are_dropped_and_counted() -> None:
    jb = JitterBuffer(8, 160, prefetch=1)
    jb.push(pkt(10))
    jb.push(pkt(10))  # duplicate while buffered
    assert jb.pop() == pkt(10).payload
    jb.push(pkt(10))  # duplicate of a played packet
    jb.push(pkt(12))
    assert jb.pop_frame().concealed  # type: ignore[union-attr]  # 11 is lost
    jb.push(pkt(11))  # too late now
    assert jb.pop() == pkt(12).payload
    s = jb.stats
    assert (s.received, s.duplicates, s.late, s.lost, s.concealed, s.played) == (5, 2, 1, 1, 1, 2)


def test_concealment_repeats_attenuated_then_silence_ulaw() -> None:
    loud = ulaw_encode((np.full(160, 8000, dtype="<i2")).tobytes())
    jb = JitterBuffer(10, 160, prefetch=1, fmt=AudioFormat.ULAW)
    jb.push(pkt(0, payload=loud))
    jb.push(pkt(4, payload=loud))
    frames = [jb.pop_frame() for _ in range(5)]
    assert [f.concealed for f in frames if f] == [False, True, True, True, False]
    levels = [int(np.abs(np.frombuffer(ulaw_decode(f.payload), "<i2")).max()) for f in frames if f]
    assert levels[0] > 7800 and 3800 < levels[1] < 4200 and 1900 < levels[2] < 2100
    assert frames[3] is not None and frames[3].payload == b"\xff" * 160  # then silence
    assert jb.stats.concealed == 3


def test_concealment_linear_is_big_endian() -> None:
    frame = (np.arange(320) * 10).astype(">i2").tobytes()
    jb = JitterBuffer(4, 640, prefetch=1, fmt=AudioFormat.SLIN16)
    jb.push(pkt(0, payload=frame))
    jb.push(pkt(2, payload=frame))
    assert jb.pop() == frame
    half = jb.pop()
    assert half == (np.arange(320) * 5).astype(">i2").tobytes()


def test_concealment_without_format_is_the_silence_frame() -> None:
    jb = JitterBuffer(4, 3, prefetch=1, silence=b"zzz")
    jb.push(pkt(0, payload=b"abc"))
    jb.push(pkt(2, payload=b"abc"))
    assert drain(jb, 3) == [b"abc", b"zzz", b"abc"]


def test_underrun_returns_none_and_rebuffers() -> None:
    jb = JitterBuffer(10, 160, prefetch=2)
    jb.push(pkt(0))
    jb.push(pkt(1))
    assert drain(jb, 3) == [pkt(0).payload, pkt(1).payload, None]
    assert jb.stats.underruns == 1 and not jb.playing
    jb.push(pkt(2))
    assert jb.pop() is None  # waiting for prefetch again
    assert jb.pop() == pkt(2).payload  # ... or for prefetch ticks
    assert jb.pop() is None
    jb.push(pkt(5))  # 3 and 4 went missing while starved: skipped, not concealed
    assert drain(jb, 2) == [None, pkt(5).payload]
    assert jb.stats.lost == 2 and jb.stats.concealed == 0 and jb.stats.underruns == 2
    jb.push(pkt(7))  # while playing, a hole before a buffered packet is concealed
    assert drain(jb, 2) == [bytes(160), pkt(7).payload]
    assert jb.stats.lost == 3 and jb.stats.concealed == 1


def test_far_ahead_packet_slides_window_and_bounds_depth() -> None:
    jb = JitterBuffer(5, 160, prefetch=5)
    for s in range(4):
        jb.push(pkt(s))
    jb.push(pkt(7))  # window [0, 5) -> [3, 8): 0, 1, 2 dropped
    assert len(jb) == 2 and jb.stats.overflow == 3
    frames = [jb.pop_frame() for _ in range(9)]
    assert frames[:4] == [None] * 4  # prefetch=5 ticks of waiting
    assert [f.sequence_number for f in frames if f] == [3, 4, 5, 6, 7]
    assert [f.concealed for f in frames if f] == [False, True, True, True, False]
    jb.push(pkt(5000))  # far away: the stream jumped; follow it at once
    assert jb.stats.resyncs == 1
    assert drain(jb, 2) == [pkt(5000).payload, None]
    assert jb.stats.lost == 3  # 4, 5, 6


def test_new_ssrc_resyncs() -> None:
    jb = JitterBuffer(5, 160, prefetch=1)
    jb.push(pkt(100, ssrc=1))
    jb.push(pkt(9, ssrc=2))
    assert jb.stats.resyncs == 1 and jb.stats.overflow == 1
    assert jb.pop() == pkt(9).payload


def test_sender_restart_far_behind_is_followed_after_a_run_of_late_packets() -> None:
    jb = JitterBuffer(4, 160, prefetch=1)
    jb.push(pkt(30000))
    assert jb.pop() == pkt(30000).payload
    for s in (9, 3, 7, 5):  # scattered stragglers never trigger a restart
        jb.push(pkt(s))
    for s in range(17):
        jb.push(pkt(s))
    assert jb.stats.late == 4 + 16 and jb.stats.resyncs == 1  # the 17th starts the new stream
    assert jb.pop() == pkt(16).payload


def test_sequence_and_timestamp_wrap() -> None:
    jb = JitterBuffer(8, 160, prefetch=2, fmt=AudioFormat.ULAW, fill_gaps=True)
    seqs = [65533, 65535, 65534, 0, 1, 3, 2]
    for s in seqs:
        jb.push(pkt(s, ts=2**32 - 3 * 160 + (s - 65533) % 65536 * 160))
    out = [jb.pop_frame() for _ in range(len(seqs))]
    assert [f.sequence_number for f in out if f] == [65533, 65534, 65535, 0, 1, 2, 3]
    assert [f.timestamp for f in out if f] == [
        2**32 - 480,
        2**32 - 320,
        2**32 - 160,
        0,
        160,
        320,
        480,
    ]
    assert jb.stats.gap_frames == 0 and jb.stats.lost == 0


def test_recorded_dtmf_gaps_filled_with_silence() -> None:
    packets = [parse_rtp(d) for _, d in records("dtmf_rtp_ulaw_from_asterisk.bin")]
    for fill, expected in ((False, len(packets)), (True, len(packets) + 3 * 6)):
        jb = JitterBuffer(20, 160, prefetch=1, fmt=AudioFormat.ULAW, fill_gaps=fill)
        out = []
        for p in packets:
            jb.push(p)
            while (f := jb.pop_frame()) is not None:
                out.append(f)
        assert len(out) == expected
        assert [f.payload for f in out if not f.gap] == [p.payload for p in packets]
        assert all(f.payload == b"\xff" * 160 for f in out if f.gap)
        assert jb.stats.lost == 0
    gap_runs = [i for i, f in enumerate(out) if f.gap]
    assert len(gap_runs) == 18
    # Each 140 ms pause (ts +1120 = 7 frames) is one real frame plus 6 of silence, and
    # the packet after it is the one Asterisk marked.
    marked = [i for i, f in enumerate(out) if f.marker]
    assert all(out[i - 1].gap and not out[i - 7].gap for i in marked)


@st.composite
def network(draw: st.DrawFn) -> tuple[int, list[tuple[str, int]]]:
    start = draw(st.integers(0, 0xFFFF))
    n = draw(st.integers(1, 120))
    seqs = [s for s in range(n) if not draw(st.booleans()) or draw(st.integers(0, 9)) > 1]
    seqs += draw(st.lists(st.sampled_from(seqs), max_size=10)) if seqs else []  # duplicates
    order = draw(st.permutations(seqs))
    # Local reordering only, like a real network: sort by index + bounded random delay.
    delays = draw(st.lists(st.integers(0, 6), min_size=len(order), max_size=len(order)))
    arrivals = sorted(range(len(order)), key=lambda i: i + delays[i])
    ops: list[tuple[str, int]] = []
    for i in arrivals:
        ops.append(("push", order[i]))
        if draw(st.integers(0, 3)) == 0:
            ops.append(("pop", 0))
    ops += [("pop", 0)] * (n + 20)
    return start, ops


@settings(max_examples=300, deadline=None)
@given(network(), st.integers(1, 16), st.integers(1, 4))
def test_never_over_capacity_never_out_of_order(
    net: tuple[int, list[tuple[str, int]]], capacity: int, prefetch: int
) -> None:
    start, ops = net
    prefetch = min(prefetch, capacity)
    jb = JitterBuffer(capacity, 160, prefetch=prefetch)
    emitted: list[tuple[int, int]] = []  # (resync epoch, seq)
    payloads: list[bytes] = []
    for op, s in ops:
        if op == "push":
            jb.push(pkt(start + s))
        else:
            f = jb.pop_frame()
            if f is not None:
                emitted.append((jb.stats.resyncs, f.sequence_number))
                if not f.concealed:
                    payloads.append(f.payload)
        assert len(jb) <= capacity
    # Strictly increasing across the wrap (a resync legitimately starts over).
    for (ea, a), (eb, b) in itertools.pairwise(emitted):
        assert ea != eb or seq_distance(b, a) >= 1
    # Every real payload played is a packet that was sent, in order, never twice.
    played = [int.from_bytes(p[:2], "big") for p in payloads]
    assert len(set(played)) == len(played)
    s = jb.stats
    assert s.received == sum(op == "push" for op, _ in ops)
    assert s.received == s.played + s.duplicates + s.late + s.overflow + len(jb)
    assert s.played == len(payloads)
    assert len(jb) == 0  # the trailing pops drained it


@pytest.mark.parametrize(
    "bad", [{"capacity": 0}, {"prefetch": 0}, {"prefetch": 11}, {"frame_bytes": 0}]
)
def test_invalid_sizes(bad: dict[str, int]) -> None:
    kw = {"capacity": 10, "frame_bytes": 160, "prefetch": 2, **bad}
    with pytest.raises(ValueError):
        JitterBuffer(kw["capacity"], kw["frame_bytes"], prefetch=kw["prefetch"])


# --- packet-driven playout (pop_ready) ---------------------------------------------


def _packet(seq: int, payload: bytes = b"") -> RtpPacket:
    return RtpPacket(
        payload_type=0,
        sequence_number=seq & 0xFFFF,
        timestamp=seq * 160,
        ssrc=7,
        payload=payload or bytes([seq & 0xFF]) * 160,
    )


def test_pop_ready_in_order_stream_comes_out_at_once() -> None:
    jb = JitterBuffer(16, 160, prefetch=1, fmt=AudioFormat.ULAW)
    for seq in range(65530, 65540):  # across the 16-bit wrap
        jb.push(_packet(seq))
        frames = jb.pop_ready()
        assert [f.sequence_number for f in frames] == [seq & 0xFFFF]


def test_pop_ready_waits_for_a_reordered_packet_then_conceals_a_lost_one() -> None:
    jb = JitterBuffer(16, 160, prefetch=1, fmt=AudioFormat.ULAW)
    jb.push(_packet(1))
    assert [f.sequence_number for f in jb.pop_ready()] == [1]
    jb.push(_packet(3))
    assert jb.pop_ready() == []  # 2 may still come
    jb.push(_packet(2))
    assert [f.sequence_number for f in jb.pop_ready()] == [2, 3]
    jb.push(_packet(5))
    jb.push(_packet(6))  # two later packets: 4 is lost
    frames = jb.pop_ready()
    assert [(f.sequence_number, f.concealed) for f in frames] == [(4, True), (5, False), (6, False)]
    jb.push(_packet(4))  # too late now
    assert jb.pop_ready() == []
    assert (jb.stats.lost, jb.stats.concealed, jb.stats.late, jb.stats.reordered) == (1, 1, 1, 1)


@given(
    st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=200),
    st.sets(st.integers(min_value=0, max_value=199)),
    st.randoms(),
)
def test_pop_ready_never_emits_out_of_order_or_twice(
    jitter: list[int], drop: set[int], rnd: random.Random
) -> None:
    order = list(range(len(jitter)))
    # Each packet is delayed by up to 3 slots: a bounded reordering.
    order.sort(key=lambda i: i + jitter[i] + rnd.random())
    jb = JitterBuffer(16, 160, prefetch=1, fmt=AudioFormat.ULAW)
    out: list[int] = []
    for i in order:
        if i in drop:
            continue
        jb.push(_packet(i))
        for f in jb.pop_ready():
            out.append(f.sequence_number)
        if i % 2 == 0:  # duplicates are dropped
            jb.push(_packet(i))
            out.extend(f.sequence_number for f in jb.pop_ready())
    assert out == sorted(set(out))
    assert len(jb) <= 16


@st.composite
def arrivals(draw: st.DrawFn) -> list[RtpPacket]:
    """What a network makes of an RTP stream: losses, duplicates, reordering, restarts."""
    start = draw(st.integers(0, 0xFFFF))
    n = draw(st.integers(1, 150))
    seqs = [s for s in range(n) if draw(st.integers(0, 9)) > 0]
    seqs += draw(st.lists(st.sampled_from(seqs), max_size=8)) if seqs else []
    delays = draw(st.lists(st.integers(0, 4), min_size=len(seqs), max_size=len(seqs)))
    order = sorted(range(len(seqs)), key=lambda i: (seqs[i] + delays[i], i))
    out: list[RtpPacket] = []
    ssrc = 1
    for i in order:
        seq = seqs[i]
        if draw(st.integers(0, 60)) == 0:
            ssrc += 1  # the sender starts a new stream
        if draw(st.integers(0, 80)) == 0:
            seq += draw(st.integers(100, 40000))  # a jump ahead
        out.append(pkt(start + seq, ssrc=ssrc))
    return out


@settings(max_examples=400, deadline=None)
@given(arrivals())
def test_play_next_fast_path_is_push_then_pop_ready(packets: list[RtpPacket]) -> None:
    slow = JitterBuffer(16, 160, prefetch=1, fmt=AudioFormat.ULAW)
    fast = JitterBuffer(16, 160, prefetch=1, fmt=AudioFormat.ULAW)
    slow_out: list[tuple[bytes, bool]] = []
    fast_out: list[tuple[bytes, bool]] = []
    taken = 0
    for p in packets:
        slow.push(p)
        slow_out.extend((f.payload, f.concealed) for f in slow.pop_ready())
        if fast.play_next(p.ssrc, p.sequence_number, p.timestamp, p.payload):
            taken += 1
            fast_out.append((p.payload, False))
        else:
            fast.push(p)
            fast_out.extend((f.payload, f.concealed) for f in fast.pop_ready())
    assert fast_out == slow_out
    assert fast.stats == slow.stats
    assert len(fast) == len(slow)
    # After the first packet, an in-order run takes the fast path every time.
    if packets and all(
        b.sequence_number == (a.sequence_number + 1) & 0xFFFF and a.ssrc == b.ssrc
        for a, b in itertools.pairwise(packets)
    ):
        assert taken == len(packets) - 1


def test_play_next_refuses_what_needs_the_buffer() -> None:
    jb = JitterBuffer(16, 160, prefetch=1, fmt=AudioFormat.ULAW)
    assert not jb.play_next(1, 10, 1600, b"x" * 160)  # nothing started yet
    jb.push(pkt(10))
    assert [f.sequence_number for f in jb.pop_ready()] == [10]
    assert not jb.play_next(2, 11, 1760, pkt(11).payload)  # another SSRC
    assert not jb.play_next(1, 12, 1920, pkt(12).payload)  # a gap: must wait
    assert jb.play_next(1, 11, 1760, pkt(11).payload)
    jb.push(pkt(13))  # 12 missing: 13 waits in the buffer
    assert jb.pop_ready() == []
    assert not jb.play_next(1, 12, 1920, pkt(12).payload)  # something is buffered
    assert jb.stats.played == 2
