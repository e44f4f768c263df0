"""swap16, silence and the stateful Transcoder (G.711 <-> slin, 8 kHz <-> 16 kHz)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediastream.core.formats import AudioFormat
from mediastream.core.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from mediastream.core.pcm import Transcoder, silence, swap16

F = AudioFormat


def tone(hz: float, seconds: float, rate: int, amplitude: float = 8000.0) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def level(x: npt.NDArray[np.float64], rate: int, hz: float) -> float:
    t = np.arange(len(x)) / rate
    return float(
        2 * np.hypot(x @ np.cos(2 * np.pi * hz * t), x @ np.sin(2 * np.pi * hz * t)) / len(x)
    )


def as_float(data: bytes) -> npt.NDArray[np.float64]:
    return np.frombuffer(data, "<i2").astype(np.float64)


def run(tc: Transcoder, data: bytes, chunk: int) -> list[bytes]:
    return [tc.convert(data[i : i + chunk]) for i in range(0, len(data), chunk)]


def test_swap16_known_value() -> None:
    assert swap16(b"\x01\x02\x03\x04") == b"\x02\x01\x04\x03"
    assert swap16(b"") == b""
    assert swap16((1000).to_bytes(2, "little") * 3) == (1000).to_bytes(2, "big") * 3


@given(st.binary(max_size=2000).map(lambda b: b[: len(b) & ~1]))
def test_swap16_is_an_involution_and_matches_numpy(data: bytes) -> None:
    assert swap16(swap16(data)) == data
    assert swap16(data) == np.frombuffer(data, "<u2").astype(">u2").tobytes()


def test_swap16_rejects_odd_length() -> None:
    with pytest.raises(ValueError, match="even length"):
        swap16(b"\x00\x01\x02")


def test_silence_per_format() -> None:
    assert silence(F.ULAW) == b"\xff" * 160
    assert silence(F.ALAW) == b"\xd5" * 160
    assert silence(F.SLIN) == bytes(320)
    assert silence(F.SLIN16, 40) == bytes(1280)
    # The G.711 silence codes really decode to (near) zero.
    assert set(np.frombuffer(ulaw_decode(silence(F.ULAW)), "<i2")) == {0}
    assert set(np.frombuffer(alaw_decode(silence(F.ALAW)), "<i2")) == {8}


@pytest.mark.parametrize("fmt", list(F))
def test_identity_returns_input(fmt: AudioFormat) -> None:
    tc = Transcoder(fmt, fmt)
    data = bytes(range(256)) + bytes(64)
    assert tc.identity
    assert tc.convert(data) is data
    assert tc.latency_ms == 0


def test_same_rate_conversions_are_the_codecs() -> None:
    pcm = tone(1000, 0.1, 8000)
    assert Transcoder(F.SLIN, F.ULAW).convert(pcm) == ulaw_encode(pcm)
    assert Transcoder(F.SLIN, F.ALAW).convert(pcm) == alaw_encode(pcm)
    u = ulaw_encode(pcm)
    assert Transcoder(F.ULAW, F.SLIN).convert(u) == ulaw_decode(u)
    assert Transcoder(F.ULAW, F.ALAW).convert(u) == alaw_encode(ulaw_decode(u))
    a = alaw_encode(pcm)
    assert Transcoder(F.ALAW, F.ULAW).convert(a) == ulaw_encode(alaw_decode(a))


def test_linear_input_must_be_whole_samples() -> None:
    with pytest.raises(ValueError, match="even length"):
        Transcoder(F.SLIN, F.ULAW).convert(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="even length"):
        Transcoder(F.SLIN16, F.SLIN16).convert(b"\x00")


@pytest.mark.parametrize(
    ("src", "dst"),
    [(F.SLIN, F.SLIN16), (F.SLIN16, F.SLIN), (F.ULAW, F.SLIN16), (F.SLIN16, F.ALAW)],
)
def test_every_20ms_frame_in_gives_one_20ms_frame_out(src: AudioFormat, dst: AudioFormat) -> None:
    tc = Transcoder(src, dst)
    frames = [tc.convert(bytes(src.frame_bytes)) for _ in range(200)]
    assert {len(f) for f in frames} == {dst.frame_bytes}
    assert tc.underruns == 0
    assert 0 < tc.latency_ms < 200


def test_upsampling_is_continuous_and_delayed_by_latency() -> None:
    tc = Transcoder(F.SLIN, F.SLIN16)
    out = b"".join(run(tc, tone(1000, 2.0, 8000), 320))
    y = as_float(out)
    assert len(y) == 32000
    delay = round(tc.latency_ms * 16)  # samples at 16 kHz
    assert np.all(y[: delay - 40] == 0)  # the priming silence (minus the filter's pre-ring)
    ideal = as_float(tone(1000, 2.0, 16000))
    steady = slice(delay + 800, 30000)
    err = y[steady] - ideal[steady.start - delay : steady.stop - delay]
    # Continuous across frame joins: the output is the ideal sine, shifted by the latency.
    assert np.sqrt(np.mean(err**2)) < 40  # vs an rms of 5657
    assert abs(level(y[steady], 16000, 1000) - 8000) < 80


def test_downsampling_removes_what_would_alias() -> None:
    def out_level(hz: float) -> float:
        tc = Transcoder(F.SLIN16, F.SLIN)
        y = as_float(b"".join(run(tc, tone(hz, 1.5, 16000), 640)))
        return level(y[4000:], 8000, hz if hz < 4000 else 8000 - hz)

    assert abs(out_level(3000) - 8000) < 200  # telephone band passes
    assert out_level(5000) < 8  # would fold to 3 kHz: > 60 dB down
    assert out_level(6500) < 8


def test_ulaw_to_slin16_carries_the_recorded_tone() -> None:
    tc = Transcoder(F.ULAW, F.SLIN16)
    pcm = tone(440, 1.0, 8000, 7000)
    out = b"".join(run(tc, ulaw_encode(pcm), 160))
    y = as_float(out)[3200:]
    assert abs(level(y, 16000, 440) - 7000) < 120


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 700), min_size=1, max_size=30))
def test_any_chunking_keeps_output_length_exact(sizes: list[int]) -> None:
    up, down = Transcoder(F.SLIN, F.SLIN16), Transcoder(F.SLIN16, F.SLIN)
    total_up = total_down = samples = 0
    for n in sizes:
        chunk = bytes(2 * n)
        samples += n
        total_up += len(up.convert(chunk))
        total_down += len(down.convert(chunk))
        assert total_up == 2 * (2 * samples)  # bytes of 16 kHz
        assert total_down == 2 * (samples // 2)


def test_reset_restarts_priming() -> None:
    tc = Transcoder(F.SLIN, F.SLIN16)
    loud = tone(1000, 0.2, 8000)
    run(tc, loud, 320)
    tc.reset()
    first = tc.convert(bytes(320))
    assert first == bytes(640)  # old audio does not leak after a reset
