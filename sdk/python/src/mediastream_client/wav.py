"""WAV helpers: 16-bit mono PCM files in and out of streams."""

from __future__ import annotations

import array
import math
import wave
from pathlib import Path

from mediastream_client.types import AudioFormat


def read_wav(path: str | Path) -> tuple[AudioFormat, bytes]:
    """Read a 16-bit mono WAV at 8 or 16 kHz.

    Returns:
        The matching stream format (SLIN or SLIN16) and the little-endian samples.

    Raises:
        ValueError: the file is not 16-bit mono at 8000 or 16000 Hz.
    """
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(
                f"{path}: need 16-bit mono PCM, got {w.getsampwidth() * 8}-bit "
                f"with {w.getnchannels()} channels"
            )
        rates = {8000: AudioFormat.SLIN, 16000: AudioFormat.SLIN16}
        if w.getframerate() not in rates:
            raise ValueError(f"{path}: need 8000 or 16000 Hz, got {w.getframerate()}")
        return rates[w.getframerate()], w.readframes(w.getnframes())


def write_wav(path: str | Path, fmt: AudioFormat, pcm: bytes) -> None:
    """Write little-endian 16-bit samples of `fmt` (SLIN or SLIN16) as a mono WAV.

    Raises:
        ValueError: `fmt` is not a linear format.
    """
    if fmt.sample_width != 2:
        raise ValueError("write_wav takes 16-bit linear audio (SLIN or SLIN16)")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(fmt.sample_rate)
        w.writeframes(pcm)


def level_dbfs(pcm: bytes) -> float:
    """RMS level of 16-bit little-endian samples in dB relative to full scale."""
    samples = array.array("h", pcm[: len(pcm) - len(pcm) % 2])
    if not samples:
        return -math.inf
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    return 20 * math.log10(rms / 32768) if rms else -math.inf
