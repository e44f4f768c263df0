"""G.711 against a straightforward scalar transcription of the Sun reference g711.c."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediastream.core.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from tests.asterisk_fixtures import records

SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _search(val: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def ref_linear2alaw(pcm: int) -> int:
    # Sun g711.c, 13-bit version, transcribed line by line.
    pcm = pcm >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _search(pcm, SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1) & 0xF if seg < 2 else (pcm >> seg) & 0xF
    return aval ^ mask


def ref_alaw2linear(a: int) -> int:
    a ^= 0x55
    t = (a & 0xF) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return t if a & 0x80 else -t


EXP_LUT = [0] + [i.bit_length() - 1 for i in range(1, 256)]


def ref_linear2ulaw(pcm: int) -> int:
    # Craig Reese's linear2ulaw (as in Asterisk's ulaw.c): sign-magnitude, clip, bias.
    sign = (pcm >> 8) & 0x80
    if sign:
        pcm = -pcm
    pcm = min(pcm, 32635) + 0x84
    exponent = EXP_LUT[(pcm >> 7) & 0xFF]
    mantissa = (pcm >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ref_ulaw2linear(u: int) -> int:
    u = ~u & 0xFF
    t = ((u & 0xF) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return 0x84 - t if u & 0x80 else t - 0x84


def samples(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


ALL_PCM = struct.pack("<65536h", *range(-32768, 32768))


def test_ulaw_decode_matches_reference_for_all_codes() -> None:
    assert samples(ulaw_decode(bytes(range(256)))) == [ref_ulaw2linear(u) for u in range(256)]


def test_alaw_decode_matches_reference_for_all_codes() -> None:
    assert samples(alaw_decode(bytes(range(256)))) == [ref_alaw2linear(a) for a in range(256)]


def test_ulaw_encode_matches_reference_for_every_sample() -> None:
    expected = bytes(ref_linear2ulaw(x) for x in range(-32768, 32768))
    assert ulaw_encode(ALL_PCM) == expected


def test_alaw_encode_matches_reference_for_every_sample() -> None:
    expected = bytes(ref_linear2alaw(x) for x in range(-32768, 32768))
    assert alaw_encode(ALL_PCM) == expected


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xFF, 0), (0x7F, 0), (0x00, -32124), (0x80, 32124), (0xFE, 8), (0x7E, -8), (0xEF, 132)],
)
def test_ulaw_known_values(code: int, value: int) -> None:
    assert samples(ulaw_decode(bytes([code]))) == [value]


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0x80, 5504)],
)
def test_alaw_known_values(code: int, value: int) -> None:
    assert samples(alaw_decode(bytes([code]))) == [value]


@pytest.mark.parametrize(
    ("pcm", "code"),
    [(0, 0xFF), (-1, 0x7F), (32767, 0x80), (-32768, 0x00), (32635, 0x80), (100, 0xF2)],
)
def test_ulaw_encode_known_values(pcm: int, code: int) -> None:
    assert ulaw_encode(struct.pack("<h", pcm)) == bytes([code])


@pytest.mark.parametrize(
    ("pcm", "code"),
    [
        (0, 0xD5),
        (15, 0xD5),
        (16, 0xD4),
        (-1, 0x55),
        (-16, 0x55),
        (-17, 0x54),
        (32767, 0xAA),
        (-32768, 0x2A),
    ],
)
def test_alaw_encode_known_values(pcm: int, code: int) -> None:
    assert alaw_encode(struct.pack("<h", pcm)) == bytes([code])


def test_ulaw_round_trip_all_codes_but_negative_zero() -> None:
    codes = bytes(range(256))
    back = ulaw_encode(ulaw_decode(codes))
    # mu-law has two zeros: 0x7F (-0) decodes to 0, which encodes as 0xFF (+0).
    assert back == codes.replace(b"\x7f", b"\xff")
    assert [i for i in range(256) if back[i] != i] == [0x7F]


def test_alaw_round_trip_all_codes() -> None:
    codes = bytes(range(256))
    assert alaw_encode(alaw_decode(codes)) == codes


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=400))
def test_quantisation_error_is_within_half_a_step(values: list[int]) -> None:
    pcm = struct.pack(f"<{len(values)}h", *values)
    for enc, dec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        back = samples(dec(enc(pcm)))
        for x, y in zip(values, back, strict=True):
            # Half a quantisation step is at most |x|/16 (16 in the linear segments);
            # that also covers clipping at the extremes (32767 -> 32124 / 32256).
            assert abs(x - y) <= max(16, abs(x) // 16), (enc.__name__, x, y)
            if abs(x) >= 16:
                assert (x > 0) == (y > 0), (enc.__name__, x, y)


def test_empty_and_odd_input() -> None:
    assert ulaw_decode(b"") == b""
    assert alaw_encode(b"") == b""
    with pytest.raises(ValueError, match="even length"):
        ulaw_encode(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="even length"):
        alaw_encode(b"\x00")


def test_outputs_are_little_endian_bytes() -> None:
    assert ulaw_decode(b"\x80") == (32124).to_bytes(2, "little", signed=True)
    assert alaw_decode(b"\x2a") == (-32256).to_bytes(2, "little", signed=True)


def test_recorded_ulaw_audiosocket_is_a_440hz_tone() -> None:
    # audiosocket_ulaw: kind 0x10 with 160 ulaw bytes; README: 440 Hz at ~7227.
    payloads = [d[3:] for _, d in records("audiosocket_ulaw_from_asterisk.bin") if d[0] == 0x10]
    x = np.frombuffer(ulaw_decode(b"".join(payloads[10:30])), "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak_hz = np.fft.rfftfreq(len(x), 1 / 8000)[int(np.argmax(spectrum))]
    assert abs(peak_hz - 440) < 5
    t = np.arange(len(x)) / 8000
    level = 2 * np.hypot(x @ np.cos(2 * np.pi * 440 * t), x @ np.sin(2 * np.pi * 440 * t)) / len(x)
    assert 7000 < level < 7500
