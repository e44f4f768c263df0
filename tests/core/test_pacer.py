"""Pacer: real-time schedule, marks, clears, flow control; an hour of simulated input."""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediastream.core.formats import AudioFormat
from mediastream.core.pacer import (
    Drained,
    InputFinished,
    MarkPlayed,
    Pacer,
    PacerOutput,
    Xoff,
    Xon,
)
from tests.asterisk_fixtures import case

FB = 160
MS = 0.02


def frame(k: int) -> bytes:
    return k.to_bytes(4, "little") * (FB // 4)


class Source:
    """The byte stream frame(0) + frame(1) + ..., handed out in arbitrary cuts."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.made = 0
        self.offset = 0  # bytes handed out

    def restart(self, k: int) -> None:
        """Continue from frame(k), forgetting what was made but not handed out."""
        self.buf.clear()
        self.made = k
        self.offset = k * FB

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += frame(self.made)
            self.made += 1
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.offset += n
        return out


@dataclass
class Log:
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    events: list[tuple[float, object]] = field(default_factory=list)

    def add(self, t: float, out: PacerOutput) -> None:
        self.frames += [(t, f) for f in out.frames]
        self.events += [(t, e) for e in out.events]


def simulate_hour(pattern: str, seed: int) -> None:
    rng = random.Random(seed)
    total = 180_000  # one hour of 20 ms frames
    pacer = Pacer(FB, silence=AudioFormat.ULAW)
    src = Source()
    log = Log()
    marks: dict[str, int] = {}  # name -> frames that must be played before it fires
    counter = itertools.count()
    pending = b""  # a refused message, to retry
    paused = False  # producer honours XOFF/XON
    t_prod = 0.0
    start = 0.0  # the first push, and so the first frame, is at t = 0
    emitted = 0
    clears = 0
    while emitted < total:
        deadline = pacer.next_deadline()
        if deadline is not None and deadline <= t_prod:
            t = max(deadline, log.frames[-1][0] if log.frames else 0.0)
            out = pacer.poll(t)
            for f in out.frames:
                assert f == frame(emitted), (pattern, emitted)
                # Exactly one frame per 20 ms, on a schedule that never drifts.
                assert abs(t - (start + emitted * MS)) < 1e-6, (pattern, emitted, t)
                emitted += 1
            for e in out.events:
                if isinstance(e, Xoff):
                    paused = True
                elif isinstance(e, Xon):
                    paused = False
                elif isinstance(e, MarkPlayed):
                    want = marks.pop(e.name)
                    assert e.position_ms == want * 20
                    assert emitted >= want  # fired with (or after) its last frame ...
                    assert want == 0 or emitted - len(out.frames) < want  # ... not later
            log.add(t, out)
            continue
        t = t_prod
        if src.offset >= total * FB and not pending:
            t_prod = math.inf
            pacer.end_input()
            continue
        room = total * FB - src.offset
        if pattern == "burst10x":
            # 1 s of audio every 100 ms (10x real time), paused by XOFF.
            if not paused:
                data = pending or src.take(min(8000, room))
                pending = b"" if pacer.push(data, t) else data
            t_prod += 0.1
        elif pattern in ("trickle", "barge-in"):
            # Odd-sized pieces at exactly real-time rate with +-5 ms jitter, 10 frames ahead.
            if pattern == "barge-in" and emitted and rng.random() < 0.002:
                # Interrupt: flush, then new audio at once. The cadence must not break.
                cleared = pacer.clear(t)
                assert cleared.position_ms == emitted * 20
                assert sorted(cleared.dropped_marks) == sorted(marks)
                assert cleared.dropped_frames == src.offset // FB - emitted
                marks.clear()
                clears += 1
                src.restart(emitted)  # the next frame out must be frame(emitted)
            prebuffer = src.offset < (emitted + 10) * FB
            n = min(rng.randint(1, 400), room) if not prebuffer else 10 * FB
            assert pacer.push(src.take(n), t)
            t_prod = (src.offset - 10 * FB) / 8000 + rng.uniform(0.0, 0.005)
        else:  # "giant": 64000-byte messages back to back until refused, then every 100 ms
            data = pending or src.take(min(64000, room))
            ok = pacer.push(data, t)
            pending = b"" if ok else data
            t_prod += 0.001 if ok else 0.1
        if rng.random() < 0.05:
            name = f"m{next(counter)}"
            marks[name] = -(-(src.offset - len(pending)) // FB)
            pacer.mark(name)
    assert emitted == total
    assert log.frames[-1][0] == pytest.approx((total - 1) * MS, abs=1e-6)
    assert not marks or all(v >= total for v in marks.values())
    assert pacer.stats.frames == total and pacer.stats.resyncs == 0
    assert pacer.stats.clears == clears
    if pattern == "barge-in":
        assert clears > 20


@pytest.mark.parametrize("pattern", ["burst10x", "trickle", "giant", "barge-in"])
def test_one_frame_per_20ms_for_an_hour(pattern: str) -> None:
    simulate_hour(pattern, seed=len(pattern))


def test_mark_timing_matches_recorded_asterisk() -> None:
    ws = case("websocket_json_control.json")["websocket"]
    t_mark_sent = next(w["t"] for w in ws if w.get("data", "").find("mark-1") > 0)
    t_mark_done = next(w["t"] for w in ws if "MEDIA_MARK_PROCESSED" in w.get("data", ""))
    pacer = Pacer(640)
    assert pacer.push(bytes(32000), 0.0)  # 50 frames in one message
    pacer.mark("mark-1")
    fired = None
    t = 0.0
    while fired is None:
        for e in pacer.poll(t).events:
            if isinstance(e, MarkPlayed):
                fired = (t, e)
        t = round(t + MS, 9)
    assert fired[1] == MarkPlayed("mark-1", 1000)
    # Asterisk reports it on the tick after the 50th frame: within one frame of ours.
    assert abs((t_mark_done - t_mark_sent) - fired[0]) <= MS + 0.01


def test_xoff_xon_and_refusal_match_recorded_asterisk() -> None:
    ws = case("websocket_json_control.json")["websocket"]
    t_xoff = next(w["t"] for w in ws if "MEDIA_XOFF" in w.get("data", ""))
    t_xon = next(w["t"] for w in ws if "MEDIA_XON" in w.get("data", ""))
    pacer = Pacer(640)
    results = [pacer.push(bytes(64000), 0.0) for _ in range(11)]
    assert results == [True] * 10 + [False]  # the 11th is dropped whole
    assert pacer.depth == 1000 and pacer.stats.refused == 1
    events: list[tuple[float, object]] = []
    t = 0.0
    while not any(isinstance(e, Xon) for _, e in events):
        events += [(t, e) for e in pacer.poll(t).events]
        t = round(t + MS, 9)
    (xoff_t, xoff), (xon_t, xon) = [(t, e) for t, e in events if isinstance(e, Xoff | Xon)]
    assert xoff == Xoff(0, 900) and xoff_t == 0.0  # raised by the message that reached 900
    assert xon.depth == 799 and xon.position_ms == 201 * 20
    assert abs((xon_t - xoff_t) - (t_xon - t_xoff)) < 0.05  # recorded: 4.03 s


def test_flush_drops_marks_and_releases_xoff() -> None:
    pacer = Pacer(640)
    for _ in range(10):
        pacer.push(bytes(64000), 0.0)
    pacer.mark("mark-2")
    out = pacer.poll(0.0)
    assert len(out.frames) == 1 and isinstance(out.events[0], Xoff)
    cleared = pacer.clear(0.01)
    assert cleared.position_ms == 20
    assert cleared.dropped_marks == ("mark-2",)
    assert cleared.dropped_frames == 999 and cleared.dropped_bytes == 999 * 640
    assert pacer.poll(0.02).events == [Xon(20, 0)]  # XON at the next tick, as recorded
    assert pacer.next_deadline() is None
    for t in (0.04, 1.0, 5.0):
        assert not pacer.poll(t)  # mark-2 is never reported


def test_push_cuts_frames_and_keeps_remainder() -> None:
    pacer = Pacer(FB)
    assert pacer.push(b"a" * 100, 0.0)
    assert (pacer.depth, pacer.pending_bytes) == (0, 100)
    assert pacer.next_deadline() is None
    assert pacer.push(b"b" * 300, 0.0)
    assert (pacer.depth, pacer.pending_bytes) == (2, 80)
    out = pacer.poll(0.02)
    assert out.frames == [b"a" * 100 + b"b" * 60, b"b" * 160]


@pytest.mark.parametrize(
    ("silence", "pad"),
    [(AudioFormat.ULAW, b"\xff"), (AudioFormat.ALAW, b"\xd5"), (None, b"\x00"), (b"S" * FB, b"S")],
)
def test_end_input_pads_with_the_right_silence(
    silence: AudioFormat | bytes | None, pad: bytes
) -> None:
    pacer = Pacer(FB, silence=silence)
    pacer.push(b"x" * 200, 1.0)
    pacer.mark("tail")
    out = pacer.poll(1.0)
    assert out.frames == [b"x" * 160] and not any(isinstance(e, MarkPlayed) for e in out.events)
    pacer.end_input()
    out = pacer.poll(1.02)
    assert out.frames == [b"x" * 40 + pad * 120]
    assert out.events == [MarkPlayed("tail", 40), Drained(40), InputFinished(40)]


def test_mark_after_remainder_fires_with_the_frame_that_completes_it() -> None:
    pacer = Pacer(FB)
    pacer.push(b"a" * 100, 0.0)
    pacer.mark("a")
    assert not pacer.poll(0.0)
    pacer.push(b"b" * 60, 0.5)
    out = pacer.poll(0.5)
    assert out.frames == [b"a" * 100 + b"b" * 60]
    assert out.events == [MarkPlayed("a", 20), Drained(20)]


def test_mark_with_nothing_queued_fires_at_once() -> None:
    pacer = Pacer(FB)
    pacer.mark("first")
    assert pacer.next_deadline() is not None
    assert pacer.poll(0.0).events == [MarkPlayed("first", 0)]
    pacer.push(bytes(320), 0.0)
    assert len(pacer.poll(0.02).frames) == 2
    pacer.mark("later")
    assert pacer.poll(0.021).events == [MarkPlayed("later", 40)]


def test_late_poll_catches_up_then_resynchronises() -> None:
    pacer = Pacer(FB)
    pacer.push(bytes(FB * 30), 0.0)
    assert len(pacer.poll(0.0).frames) == 1
    assert len(pacer.poll(0.1).frames) == 5  # 0.02 .. 0.10: catch up
    assert pacer.next_deadline() == pytest.approx(0.12)
    out = pacer.poll(0.3)  # 10 frames overdue: too many, resynchronise
    assert len(out.frames) == 1 and pacer.stats.resyncs == 1
    assert pacer.next_deadline() == pytest.approx(0.32)
    assert len(pacer.poll(0.33).frames) == 1


def test_schedule_restart_after_drain() -> None:
    pacer = Pacer(FB)
    pacer.push(bytes(FB), 0.0)
    assert pacer.poll(0.0).events == [Drained(20)]
    pacer.push(bytes(FB), 0.005)  # arrived mid-frame: continue seamlessly, not faster
    assert pacer.next_deadline() == pytest.approx(0.02)
    assert not pacer.poll(0.019).frames
    assert len(pacer.poll(0.02).frames) == 1
    pacer.push(bytes(FB), 5.0)  # long idle: start at once
    assert pacer.next_deadline() == 5.0
    assert pacer.position_ms == 40


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        Pacer(0)
    with pytest.raises(ValueError):
        Pacer(FB, low_water=900, high_water=800)
    with pytest.raises(ValueError, match="silence frame"):
        Pacer(FB, silence=b"\x00")


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 2000)),
        st.tuples(st.just("mark"), st.integers(0, 0)),
        st.tuples(st.just("clear"), st.integers(0, 0)),
        st.tuples(st.just("end"), st.integers(0, 0)),
        st.tuples(st.just("wait"), st.integers(0, 400)),  # ms before the next poll
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(1, 6))
def test_against_a_model(ops: list[tuple[str, int]], catchup: int) -> None:
    pacer = Pacer(FB, max_frames=30, high_water=20, low_water=10, max_catchup=catchup)
    src = Source()
    model: deque[bytes] = deque()  # frames the pacer must emit, in order
    remainder = b""
    marks: dict[str, int] = {}  # name -> absolute frame count that fires it
    enqueued = emitted = 0
    t = 0.0
    first_push: float | None = None
    xoff = False
    for i, (op, n) in enumerate(ops):
        if op == "push":
            data = src.take(n)
            accepted = pacer.push(data, t)
            assert accepted == (len(model) < 30)
            if accepted:
                first_push = t if first_push is None else first_push
                whole = remainder + data
                cut = len(whole) - len(whole) % FB
                model.extend(whole[j : j + FB] for j in range(0, cut, FB))
                enqueued += cut // FB
                remainder = whole[cut:]
        elif op == "mark":
            marks[f"k{i}"] = enqueued + (1 if remainder else 0)
            pacer.mark(f"k{i}")
        elif op == "clear":
            cleared = pacer.clear(t)
            assert cleared.position_ms == emitted * 20
            assert set(cleared.dropped_marks) == set(marks)
            assert cleared.dropped_frames == len(model)
            model.clear()
            marks.clear()
            remainder = b""
            enqueued = emitted
        elif op == "end":
            pacer.end_input()
            if remainder:
                model.append(remainder + bytes(FB - len(remainder)))
                enqueued += 1
                remainder = b""
        else:
            t = round(t + n / 1000, 6)
        out = pacer.poll(t)
        for f in out.frames:
            assert f == model.popleft()
            emitted += 1
        for e in out.events:
            if isinstance(e, MarkPlayed):
                assert e.position_ms == marks.pop(e.name) * 20 <= emitted * 20
            elif isinstance(e, Xoff):
                assert not xoff
                xoff = True
            elif isinstance(e, Xon):
                assert xoff and e.depth < 10
                xoff = False
        assert all(v > emitted for v in marks.values())  # due marks all fired
        assert pacer.position_ms == emitted * 20
        assert pacer.depth == len(model)
        # Never faster than real time: slots are >= 20 ms apart, the first at the first push.
        if first_push is not None:
            assert emitted <= math.floor((t - first_push) / MS + 1e-6) + 1
