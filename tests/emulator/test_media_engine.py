"""The media engine's building blocks, without sockets."""

from __future__ import annotations

import asyncio
import socket
from itertools import pairwise

import numpy as np

from mediastream.core.formats import AudioFormat
from mediastream.core.rtp import parse_rtp
from mediastream.emulator.media import PLAYTONES_AMPLITUDE, MediaClock, ToneGenerator
from mediastream.emulator.model import Channel, FormatConverter, Frame
from mediastream.emulator.rtp import RtpTech, bind_rtp_socket
from tests.emulator.conftest import level, pcm


class _Observer:
    def channel_dtmf(self, channel: Channel, digit: str, duration_ms: int) -> None: ...

    def channel_remote_hangup(
        self, channel: Channel, cause: int, tech_cause: int | None = None
    ) -> None: ...


async def test_clock_does_not_drift() -> None:
    clock = MediaClock()
    times: list[float] = []
    loop = asyncio.get_running_loop()
    clock.add(lambda: times.append(loop.time()))
    clock.start()
    await asyncio.sleep(1.01)
    await clock.stop()
    assert 48 <= len(times) <= 52
    # Drift-free: tick n lands near start + n * 20 ms, however late earlier ticks were.
    # (Bounds are loose: the machine is shared; a drifting clock fails by far more.)
    offsets = np.array(times) - times[0] - 0.02 * np.arange(len(times))
    assert np.abs(offsets[-5:]).max() < 0.03


async def test_clock_runs_tickers_in_order_and_wakes_waiters() -> None:
    clock = MediaClock()
    calls: list[str] = []
    clock.add(lambda: calls.append("tap"), order=2)
    clock.add(lambda: calls.append("source"), order=0)
    clock.add(lambda: calls.append("mix"), order=1)
    waiter = asyncio.ensure_future(clock.wait_ticks(2))
    await asyncio.sleep(0)
    clock.tick()
    assert not waiter.done()
    clock.tick()
    await asyncio.sleep(0)
    assert waiter.done()
    assert calls == ["source", "mix", "tap"] * 2


def test_tone_is_continuous_at_playtones_level() -> None:
    tone = ToneGenerator([440])
    frames = b"".join(tone.next_frame() for _ in range(10))
    samples = pcm(frames)
    assert len(samples) == 1600
    assert abs(level(samples, 440, 8000) - PLAYTONES_AMPLITUDE) < 50
    assert np.abs(np.diff(samples)).max() < 2 * np.pi * 440 / 8000 * PLAYTONES_AMPLITUDE + 2


def test_converter_passes_same_format_frames_through_untouched() -> None:
    frame = Frame(AudioFormat.ULAW, bytes(range(160)), timing_ms=625)
    assert FormatConverter(AudioFormat.ULAW).convert(frame) is frame
    wide = FormatConverter(AudioFormat.SLIN16).convert(frame)
    assert (wide.format, len(wide.payload), wide.timing_ms) == (AudioFormat.SLIN16, 640, 625)


async def test_rtp_timestamps_follow_asterisk_prediction_and_skew_rules() -> None:
    clock = MediaClock()
    channel = Channel("1.1", "UnicastRTP/x", AudioFormat.ULAW, _Observer())
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(1)
    tech = RtpTech(channel, receiver.getsockname(), clock)
    await tech.open(bind_rtp_socket("127.0.0.1", 21000, 21100))
    frames = [Frame(AudioFormat.ULAW, b"\xff" * 160)] * 4
    frames.append(Frame(AudioFormat.ULAW, b"\xff" * 160, timing_ms=700))
    clock.add(lambda: tech.write_frame(frames.pop(0)))
    # A gap of 140 ms after the third frame, as during a DTMF digit.
    for due in (10.000, 10.020, 10.040, 10.180, 10.200):
        clock.tick(due)
    packets = [parse_rtp(receiver.recv(2000)) for _ in range(5)]
    tech.close()
    receiver.close()
    assert [p.timestamp for p in packets[:4]] == [160, 320, 480, 1600]
    assert [p.marker for p in packets] == [False, False, False, True, False]
    assert packets[4].timestamp == 700 * 8  # a frame from RTP keeps its media time
    assert len({p.ssrc for p in packets}) == 1
    steps = [(b.sequence_number - a.sequence_number) % 65536 for a, b in pairwise(packets)]
    assert steps == [1] * 4
