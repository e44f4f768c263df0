"""swap16, silence and the stateful Transcoder (G.711 <-> slin, 8 kHz <-> 16 kHz).

The resampling tests measure the streaming path the gateway uses (20 ms frames) and
pin the filter's contract: flat 0-3.4 kHz passband, >= 45 dB image and alias
rejection, <= 2 ms group delay equal to ``latency_ms``, saturation instead of wrap, and
output that does not depend on how the stream is chunked.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediastream.core.formats import AudioFormat
from mediastream.core.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from mediastream.core.pcm import Transcoder, silence, swap16

F = AudioFormat


def tone(hz: float, seconds: float, rate: int, amplitude: float = 8000.0) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def level(x: npt.NDArray[np.float64], rate: int, hz: float) -> float:
    """Amplitude of the ``hz`` component of ``x``.

    Hann-weighted so a strong tone elsewhere does not leak into a weak one.
    """
    w = np.hanning(len(x))
    t = np.arange(len(x)) / rate
    return float(2 * abs(np.sum(w * x * np.exp(-2j * np.pi * hz * t))) / w.sum())


def db(ratio: float) -> float:
    return 20 * float(np.log10(max(ratio, 1e-12)))


def as_float(data: bytes) -> npt.NDArray[np.float64]:
    return np.frombuffer(data, "<i2").astype(np.float64)


def run(tc: Transcoder, data: bytes, chunk: int) -> list[bytes]:
    return [tc.convert(data[i : i + chunk]) for i in range(0, len(data), chunk)]


def stream(src: AudioFormat, dst: AudioFormat, data: bytes) -> npt.NDArray[np.float64]:
    """Convert ``data`` the way the gateway does, one 20 ms frame per call."""
    return as_float(b"".join(run(Transcoder(src, dst), data, src.frame_bytes)))


def chirp(rate: int, seconds: float = 0.5) -> npt.NDArray[np.float64]:
    """A 300-3400 Hz linear sweep with Hann fade in/out, amplitude 8000."""
    t = np.arange(round(seconds * rate)) / rate
    phase = 2 * np.pi * (300 * t + (3400 - 300) / (2 * seconds) * t**2)
    return 8000 * np.sin(phase) * np.hanning(len(t))


def pcm16(x: npt.NDArray[np.float64]) -> bytes:
    return np.round(x).astype("<i2").tobytes()


RATE_CHANGES = [(F.SLIN, F.SLIN16), (F.SLIN16, F.SLIN)]


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
    assert 0 < tc.latency_ms <= 2


def test_latency_is_the_filters_group_delay() -> None:
    assert Transcoder(F.SLIN, F.SLIN16).latency_ms == 23 / 16  # 23 samples at 16 kHz
    assert Transcoder(F.ULAW, F.SLIN16).latency_ms == 23 / 16
    assert Transcoder(F.SLIN16, F.SLIN).latency_ms == 11 / 8  # 11 samples at 8 kHz
    assert Transcoder(F.SLIN16, F.ALAW).latency_ms == 11 / 8
    assert Transcoder(F.SLIN, F.ULAW).latency_ms == 0


def test_quality_argument_is_still_accepted() -> None:
    # The emulator (and older callers) still pass soxr recipe names.
    pcm = tone(1000, 0.1, 8000)
    assert Transcoder(F.SLIN, F.SLIN16, quality="QQ").convert(pcm) == Transcoder(
        F.SLIN, F.SLIN16
    ).convert(pcm)


@pytest.mark.parametrize(("src", "dst"), RATE_CHANGES)
def test_passband_is_flat_to_half_a_db(src: AudioFormat, dst: AudioFormat) -> None:
    gains = []
    for hz in [50, 100, 200, 300, 500, 800, 1000, 1500, 2000, 2500, 3000, 3200, 3300, 3400]:
        y = stream(src, dst, tone(hz, 0.5, src.sample_rate))
        gains.append(db(level(y[200:], dst.sample_rate, hz) / 8000))
    assert max(abs(g) for g in gains) <= 0.5, gains


@pytest.mark.parametrize("hz", [300, 500, 1000, 2000, 3000, 3400])
def test_upsampling_images_are_45_db_down(hz: float) -> None:
    # Zero-stuffing 8 -> 16 kHz mirrors a tone at f to 8000 - f; the filter must remove it.
    y = stream(F.SLIN, F.SLIN16, tone(hz, 0.5, 8000))[400:]
    wanted = level(y, 16000, hz)
    image = level(y, 16000, 8000 - hz)
    assert db(image / wanted) <= -45


@pytest.mark.parametrize("hz", [5000, 5500, 6000, 6500, 7000, 7500])
def test_downsampling_aliases_are_45_db_down(hz: float) -> None:
    # At 8 kHz a 5-7.5 kHz tone would fold onto 8000 - f, i.e. 0.5-3 kHz.
    y = stream(F.SLIN16, F.SLIN, tone(hz, 0.5, 16000))[200:]
    assert db(level(y, 8000, 8000 - hz) / 8000) <= -45


@pytest.mark.parametrize(("src", "dst"), RATE_CHANGES)
def test_chirp_delay_equals_latency_ms(src: AudioFormat, dst: AudioFormat) -> None:
    y = stream(src, dst, pcm16(chirp(src.sample_rate)))
    ref = chirp(dst.sample_rate)
    n = 2 * len(ref)
    xcorr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(ref, n)), n)[: len(ref)]
    lag = int(np.argmax(xcorr))
    # Linear phase: the peak is symmetric, i.e. the delay is a whole number of samples.
    a, b, c = xcorr[lag - 1 : lag + 2]
    assert abs((a - c) / (2 * (a - 2 * b + c))) < 0.05
    delay_ms = lag * 1000 / dst.sample_rate
    assert delay_ms <= 2
    assert delay_ms == Transcoder(src, dst).latency_ms


def test_upsampling_is_continuous_and_starts_at_once() -> None:
    tc = Transcoder(F.SLIN, F.SLIN16)
    frames = run(tc, tone(1000, 2.0, 8000), 320)
    delay = round(tc.latency_ms * 16)  # samples at 16 kHz
    # No priming silence: the first frame already carries the tone, after the delay.
    assert np.abs(as_float(frames[0])[delay + 16 :]).max() > 7000
    y = as_float(b"".join(frames))
    assert len(y) == 32000
    ideal = as_float(tone(1000, 2.0, 16000))
    steady = slice(delay + 40, 32000)
    err = y[steady] - ideal[steady.start - delay : steady.stop - delay]
    # Continuous across frame joins: the output is the ideal sine, shifted by the delay.
    assert np.sqrt(np.mean(err**2)) < 10  # vs an rms of 5657
    assert abs(level(y[steady], 16000, 1000) - 8000) < 20


@pytest.mark.parametrize(("src", "dst"), RATE_CHANGES)
def test_dc_passes_exactly(src: AudioFormat, dst: AudioFormat) -> None:
    # Each polyphase branch sums to exactly 1: a constant comes out unchanged, bit for bit.
    y = stream(src, dst, np.full(src.samples_per_frame * 5, -1234, "<i2").tobytes())
    assert set(y[48:]) == {-1234}  # after the filter span (47 taps at 16 kHz)


@pytest.mark.parametrize(("src", "dst"), RATE_CHANGES)
def test_clipping_saturates_instead_of_wrapping(src: AudioFormat, dst: AudioFormat) -> None:
    # A full-scale 500 Hz square wave: the filter's Gibbs overshoot exceeds int16.
    n = src.sample_rate // 4
    period = src.sample_rate // 500
    square = np.where(np.arange(n) % period < period // 2, 32767, -32768)
    y = stream(src, dst, square.astype("<i2").tobytes())
    # The same signal at half scale never clips; doubled, it is what the output
    # should be before saturation (to within the half-scale run's rounding).
    half = stream(src, dst, (square // 2).astype("<i2").tobytes())
    unclipped = 2 * half
    assert unclipped.max() > 33000 and unclipped.min() < -33500  # it does overshoot
    assert y.max() == 32767 and y.min() == -32768
    assert np.all(np.abs(y - np.clip(unclipped, -32768, 32767)) <= 2)


@pytest.mark.parametrize(("src", "dst"), RATE_CHANGES)
def test_20ms_frames_give_the_same_bytes_as_one_piece(src: AudioFormat, dst: AudioFormat) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(-32768, 32768, src.sample_rate, dtype=np.int16).astype("<i2").tobytes()
    framed = b"".join(run(Transcoder(src, dst), data, src.frame_bytes))
    assert framed == Transcoder(src, dst).convert(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([*RATE_CHANGES, (F.ULAW, F.SLIN16), (F.ALAW, F.SLIN16), (F.SLIN16, F.ULAW)]),
    st.lists(st.integers(0, 400), min_size=1, max_size=12),
    st.integers(0, 2**32 - 1),
)
def test_any_split_gives_the_same_bytes_as_one_piece(
    formats: tuple[AudioFormat, AudioFormat], sizes: list[int], seed: int
) -> None:
    src, dst = formats
    rng = np.random.default_rng(seed)
    # Loud noise, so clipping is exercised too.
    data = rng.integers(-32768, 32768, sum(sizes), dtype=np.int16).astype("<i2").tobytes()
    if not src.is_linear:
        data = data[: sum(sizes)]  # one byte per G.711 sample
    tc = Transcoder(src, dst)
    parts, start = [], 0
    for n in sizes:
        end = start + n * src.sample_width
        parts.append(tc.convert(data[start:end]))
        start = end
    assert b"".join(parts) == Transcoder(src, dst).convert(data)


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


def test_g711_legs_equal_decoding_then_resampling() -> None:
    # Decoding / encoding is folded into the resampler's lookups; it must not change a bit.
    pcm8 = tone(440, 0.4, 8000, 7000)
    pcm16 = tone(440, 0.4, 16000, 30000)
    u, a = ulaw_encode(pcm8), alaw_encode(pcm8)
    assert (
        stream(F.ULAW, F.SLIN16, u).tobytes() == stream(F.SLIN, F.SLIN16, ulaw_decode(u)).tobytes()
    )
    assert b"".join(run(Transcoder(F.SLIN16, F.ULAW), pcm16, 640)) == ulaw_encode(
        b"".join(run(Transcoder(F.SLIN16, F.SLIN), pcm16, 640))
    )
    assert b"".join(run(Transcoder(F.SLIN16, F.ALAW), pcm16, 640)) == alaw_encode(
        b"".join(run(Transcoder(F.SLIN16, F.SLIN), pcm16, 640))
    )
    # A-law has no zero code: its history starts as A-law silence (+8), so compare
    # once the first frame has flushed it.
    from_alaw = b"".join(run(Transcoder(F.ALAW, F.SLIN16), a, 160))
    via_slin = b"".join(run(Transcoder(F.SLIN, F.SLIN16), alaw_decode(a), 320))
    assert from_alaw[640:] == via_slin[640:]


def test_ulaw_to_slin16_carries_the_recorded_tone() -> None:
    tc = Transcoder(F.ULAW, F.SLIN16)
    pcm = tone(440, 1.0, 8000, 7000)
    out = b"".join(run(tc, ulaw_encode(pcm), 160))
    y = as_float(out)[3200:]
    assert abs(level(y, 16000, 440) - 7000) < 120


@pytest.mark.parametrize(("src", "dst"), RATE_CHANGES)
def test_reset_forgets_the_history(src: AudioFormat, dst: AudioFormat) -> None:
    tc = Transcoder(src, dst)
    run(tc, tone(1000, 0.2, src.sample_rate), src.frame_bytes)
    tc.reset()
    assert tc.convert(bytes(src.frame_bytes)) == bytes(dst.frame_bytes)  # no old audio
    tc.reset()
    loud = tone(700, 0.1, src.sample_rate)
    assert b"".join(run(tc, loud, src.frame_bytes)) == Transcoder(src, dst).convert(loud)
