"""In-band DTMF: the dual tones of each digit, as 16-bit linear samples.

ARI can only send DTMF to a channel in the gateway's own Stasis app, and a
call reached by snoop is not; so digits a client sends are played as tones
into the call, in order with its audio (ITU-T Q.23 frequencies).
"""

from __future__ import annotations

import numpy as np

_ROWS = (697.0, 770.0, 852.0, 941.0)
_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
FREQUENCIES: dict[str, tuple[float, float]] = {
    key: (_ROWS[r], _COLS[c]) for r, row in enumerate(_KEYPAD) for c, key in enumerate(row)
}
"""Row and column frequency of every DTMF digit."""

DIGITS = frozenset(FREQUENCIES)
"""The sixteen DTMF digits."""

AMPLITUDE = 0.35 * 32767
"""Each of the two tones at about -9 dBFS, so their sum never clips."""


def dtmf_tones(digits: str, sample_rate: int, duration_ms: int = 100, gap_ms: int = 60) -> bytes:
    """Little-endian 16-bit samples of `digits`, each followed by silence.

    Args:
        digits: Characters from DIGITS.
        sample_rate: Samples per second.
        duration_ms: How long each tone lasts.
        gap_ms: Silence after each tone.

    Raises:
        ValueError: a character is not a DTMF digit.
    """
    n, gap = sample_rate * duration_ms // 1000, sample_rate * gap_ms // 1000
    t = np.arange(n) / sample_rate
    parts: list[np.ndarray] = []
    for digit in digits:
        if digit not in FREQUENCIES:
            raise ValueError(f"{digit!r} is not a DTMF digit")
        low, high = FREQUENCIES[digit]
        parts.append(AMPLITUDE * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)))
        parts.append(np.zeros(gap))
    if not parts:
        return b""
    return np.concatenate(parts).astype("<i2").tobytes()
