"""G.711 mu-law and A-law, bit-exact with the classic reference code.

* mu-law: the 16-bit Sun / Craig Reese algorithm (bias 0x84, magnitude clipped at
  32635), which is also what Asterisk's ``ulaw.c`` does.
* A-law: Sun ``g711.c`` (13-bit, ``-(x >> 3) - 1`` for negative samples, even bits
  toggled with 0x55), which agrees with ITU-T G.191's ``alaw_compress``.

Linear PCM is always 16-bit signed little-endian. Every function works on a whole
buffer through lookup tables built once at import (``ndarray.take`` on the bytes viewed as
indices), so one 20 ms frame costs a microsecond or two instead of a Python loop per
sample.

mu-law has two codes for zero (``0xFF`` and ``0x7F``); both decode to 0, which
encodes back to ``0xFF``. Every other mu-law code and every A-law code survives
``encode(decode(x))`` unchanged.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

ULAW_SILENCE = 0xFF
"""The mu-law code for a zero sample."""

ALAW_SILENCE = 0xD5
"""The A-law code for the smallest positive sample (A-law has no exact zero)."""

_BIAS = 0x84
_CLIP = 32635


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype("<i2")


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    mant = (a & 0x0F) << 4
    # Segment 0 has no implicit leading one; every other segment does.
    t = np.where(seg == 0, mant + 8, (mant + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype("<i2")


def _segment(magnitude: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    # Number of the G.711 segment: 0 for <= 0xFF, then one per doubling, 8 = out of range.
    ends = np.array([0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF], dtype=np.int32)
    return np.searchsorted(ends, magnitude, side="left").astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    # Index is the uint16 view of the sample, so reinterpret it as int16 first.
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _CLIP) + _BIAS
    seg = _segment(mag)
    code = (seg << 4) | ((mag >> (seg + 3)) & 0x0F)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    # One's-complement magnitude (~x = -x - 1), as g711.c's ``-(x >> 3) - 1`` on the
    # 13-bit value and G.191 do: -1..-16 share a code with 0..15, symmetric around -0.5.
    mag = np.where(pcm >= 0, pcm, ~pcm)
    seg = _segment(mag)
    shift = np.where(seg < 2, 4, seg + 3)
    code = (seg << 4) | ((mag >> shift) & 0x0F)
    return (code ^ mask).astype(np.uint8)


_ULAW_DECODE = _build_ulaw_decode()
_ALAW_DECODE = _build_alaw_decode()
_ULAW_ENCODE = _build_ulaw_encode()
_ALAW_ENCODE = _build_alaw_encode()


def _check_pcm(pcm: bytes) -> None:
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")


def ulaw_decode(data: bytes) -> bytes:
    """Decode mu-law bytes to 16-bit signed little-endian PCM.

    Args:
        data: One mu-law code per byte.

    Returns:
        Two bytes of PCM per input byte.
    """
    return _ULAW_DECODE.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def ulaw_encode(pcm: bytes) -> bytes:
    """Encode 16-bit signed little-endian PCM to mu-law.

    Args:
        pcm: Samples, two bytes each.

    Returns:
        One mu-law byte per sample.

    Raises:
        ValueError: If ``pcm`` has an odd length.
    """
    _check_pcm(pcm)
    return _ULAW_ENCODE.take(np.frombuffer(pcm, dtype="<u2")).tobytes()


def alaw_decode(data: bytes) -> bytes:
    """Decode A-law bytes to 16-bit signed little-endian PCM.

    Args:
        data: One A-law code per byte.

    Returns:
        Two bytes of PCM per input byte.
    """
    return _ALAW_DECODE.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """Encode 16-bit signed little-endian PCM to A-law.

    Args:
        pcm: Samples, two bytes each.

    Returns:
        One A-law byte per sample.

    Raises:
        ValueError: If ``pcm`` has an odd length.
    """
    _check_pcm(pcm)
    return _ALAW_ENCODE.take(np.frombuffer(pcm, dtype="<u2")).tobytes()
