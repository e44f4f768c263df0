"""Audio helpers: chunks to and from numpy arrays (numpy is optional)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mediastream_client.types import AudioFormat

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("these helpers need numpy: pip install numpy") from exc
    return numpy


def _ulaw_table() -> npt.NDArray[np.int16]:
    np = _numpy()
    codes = np.arange(256, dtype=np.int32) ^ 0xFF
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign, -magnitude, magnitude).astype(np.int16)  # type: ignore[no-any-return]


def to_numpy(data: bytes, fmt: AudioFormat) -> npt.NDArray[np.int16]:
    """Samples of a chunk (bare samples, as with the default encapsulation) as int16.

    mu-law is decoded with the G.711 table; linear formats are little-endian.
    """
    np = _numpy()
    if fmt is AudioFormat.ULAW:
        return _ulaw_table()[np.frombuffer(data, dtype=np.uint8)]  # type: ignore[no-any-return]
    return np.frombuffer(data, dtype="<i2").astype(np.int16)  # type: ignore[no-any-return]


def from_numpy(samples: npt.ArrayLike) -> bytes:
    """int16 (or float in -1..1) samples as little-endian 16-bit bytes for SLIN/SLIN16."""
    np = _numpy()
    array = np.asarray(samples)
    if array.dtype.kind == "f":
        array = np.clip(array, -1.0, 1.0) * 32767
    return bytes(array.astype("<i2").tobytes())
