"""Micro-benchmark of the sans-I/O media core: cost of each step per 20 ms frame.

Run: ``uv run python bench/core_bench.py [--json PATH] [--scale X]``.

Each figure is the best of 5 ``timeit`` repeats divided by the loop count,
i.e. the steady-state cost of handling one 20 ms frame, in microseconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mediastream.core import audiosocket, g711, wschannel
from mediastream.core.formats import AudioFormat
from mediastream.core.jitterbuffer import JitterBuffer
from mediastream.core.pacer import Pacer
from mediastream.core.pcm import Transcoder, swap16
from mediastream.core.rtp import PT_ULAW, RtpSequencer, parse_rtp

TARGET_US = 5.0


def _tone(rate: int, samples: int) -> bytes:
    t = np.arange(samples) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def cases() -> list[tuple[str, Callable[[], object]]]:
    """(name, one-frame step) pairs; every step handles exactly one 20 ms frame."""
    slin = _tone(8000, 160)
    slin16 = _tone(16000, 320)
    ulaw = g711.ulaw_encode(slin)
    alaw = g711.alaw_encode(slin)
    slin16_be = swap16(slin16)

    up = Transcoder(AudioFormat.SLIN, AudioFormat.SLIN16)
    down = Transcoder(AudioFormat.SLIN16, AudioFormat.SLIN)
    ulaw_up = Transcoder(AudioFormat.ULAW, AudioFormat.SLIN16)
    ulaw_down = Transcoder(AudioFormat.SLIN16, AudioFormat.ULAW)

    seq = RtpSequencer(PT_ULAW, 0x11223344, 1000, 5000)
    rtp_ulaw = seq.next(ulaw, 160)
    packet = parse_rtp(rtp_ulaw)

    as_msg = audiosocket.encode_audio(slin)
    as_dec = audiosocket.AudioSocketDecoder()

    status_json = (
        '{"event":"STATUS","channel_id":"1795515138.1765","queue_length":50,"xon_level":800,'
        '"xoff_level":900,"queue_full":false,"bulk_media":false,"media_paused":false}'
    )
    status_plain = (
        "STATUS channel_id:1795515134.1759 queue_length:0 xon_level:800 xoff_level:900 "
        "queue_full:false bulk_media:false media_paused:false"
    )
    status_event = wschannel.parse_event(status_json)
    mark_cmd = wschannel.ControlCommand("MARK_MEDIA", "mark-1")

    jb = JitterBuffer(50, 160, prefetch=1, fmt=AudioFormat.ULAW)
    jb_seq = RtpSequencer(PT_ULAW, 1, 0, 0)

    def jitter_push_pop() -> object:
        jb.push(parse_rtp(jb_seq.next(ulaw, 160)))
        return jb.pop()

    pacer = Pacer(640)
    clock = [0.0]

    def pacer_push_poll() -> object:
        t = clock[0] = clock[0] + 0.02
        pacer.push(slin16, t)
        return pacer.poll(t)

    return [
        ("ulaw decode (160 B -> 320 B)", lambda: g711.ulaw_decode(ulaw)),
        ("ulaw encode (320 B -> 160 B)", lambda: g711.ulaw_encode(slin)),
        ("alaw decode (160 B -> 320 B)", lambda: g711.alaw_decode(alaw)),
        ("alaw encode (320 B -> 160 B)", lambda: g711.alaw_encode(slin)),
        ("swap16 (640 B slin16)", lambda: swap16(slin16_be)),
        ("resample 8k->16k (slin -> slin16)", lambda: up.convert(slin)),
        ("resample 16k->8k (slin16 -> slin)", lambda: down.convert(slin16)),
        ("transcode ulaw -> slin16", lambda: ulaw_up.convert(ulaw)),
        ("transcode slin16 -> ulaw", lambda: ulaw_down.convert(slin16)),
        ("rtp parse (172 B)", lambda: parse_rtp(rtp_ulaw)),
        ("rtp serialize (RtpPacket)", packet.serialize),
        ("rtp sequencer next", lambda: seq.next(ulaw, 160)),
        ("audiosocket encode_audio (320 B)", lambda: audiosocket.encode_audio(slin)),
        ("audiosocket decode (1 msg/feed)", lambda: as_dec.feed(as_msg)),
        ("wschannel parse_event (JSON STATUS)", lambda: wschannel.parse_event(status_json)),
        ("wschannel parse_event (plain STATUS)", lambda: wschannel.parse_event(status_plain)),
        (
            "wschannel format_event (JSON STATUS)",
            lambda: wschannel.format_event(status_event, json_format=True),
        ),
        (
            "wschannel format_command (JSON MARK)",
            lambda: wschannel.format_command(mark_cmd, json_format=True),
        ),
        ("jitter buffer push+pop (incl. parse)", jitter_push_pop),
        ("pacer push+poll (640 B)", pacer_push_poll),
    ]


def measure(fn: Callable[[], object], scale: float) -> float:
    """Best per-call time in microseconds."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()  # calls that take >= 0.2 s
    number = max(1, int(number * scale))
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the loop counts (0.1: a quick run)"
    )
    args = parser.parse_args(argv)

    results: dict[str, float] = {}
    width = max(len(name) for name, _ in cases())
    print(f"{'step (per 20 ms frame)':<{width}}  {'us':>8}")
    for name, fn in cases():
        us = measure(fn, args.scale)
        results[name] = round(us, 3)
        flag = "" if us < TARGET_US else f"  (over {TARGET_US:g} us target)"
        print(f"{name:<{width}}  {us:8.2f}{flag}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "unit": "microseconds per 20 ms frame",
                    "target_us": TARGET_US,
                    "python": sys.version.split()[0],
                    "numpy": np.__version__,
                    "machine": platform.machine(),
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
