"""Measurements on received audio, shared by tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def pcm16(data: bytes) -> npt.NDArray[np.float64]:
    """Little-endian 16-bit samples as floats."""
    return np.frombuffer(data, "<i2").astype(np.float64)


def dominant_hz(samples: npt.NDArray[np.float64], rate: int) -> float:
    """Frequency of the strongest spectral peak."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0.0
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def tone_level(samples: npt.NDArray[np.float64], rate: int, hz: float) -> float:
    """Amplitude of the `hz` component (Goertzel-style projection), in sample units."""
    t = np.arange(len(samples)) / rate
    c = np.dot(samples, np.cos(2 * np.pi * hz * t))
    s = np.dot(samples, np.sin(2 * np.pi * hz * t))
    return float(2 * np.hypot(c, s) / len(samples))


def steady_tone_level(
    samples: npt.NDArray[np.float64], rate: int, hz: float, window_s: float = 0.1
) -> float:
    """The `hz` component's amplitude as most of the recording has it: the median over windows.

    :func:`tone_level` projects the whole recording on one sine, so a frame lost or late
    on a loaded machine (a gap, or a jump in phase) cancels part of the rest: a steady
    2800 came out at 2090. Measured window by window, a few bad windows do not move the
    median.
    """
    size = int(window_s * rate)
    levels = [
        tone_level(samples[i : i + size], rate, hz) for i in range(0, len(samples) - size + 1, size)
    ]
    return float(np.median(levels)) if levels else 0.0


def sine(hz: float, seconds: float, rate: int, amplitude: float = 8000.0) -> bytes:
    """A little-endian 16-bit sine."""
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()
