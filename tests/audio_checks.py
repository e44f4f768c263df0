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


def sine(hz: float, seconds: float, rate: int, amplitude: float = 8000.0) -> bytes:
    """A little-endian 16-bit sine."""
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()
