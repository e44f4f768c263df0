"""Linear PCM helpers: byte order and format conversion between Asterisk's formats.

All linear audio at this API is 16-bit signed **little-endian** (what AudioSocket and
chan_websocket carry). RTP slin is big-endian on the wire: run it through
:func:`swap16` at the RTP edge.
"""

from __future__ import annotations

import array
import functools
import sys
from collections.abc import Callable

import numpy as np
import soxr

from mediastream.core.formats import FRAME_MS, AudioFormat
from mediastream.core.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

__all__ = ["Transcoder", "silence", "swap16"]

_BIG_ENDIAN_HOST = sys.byteorder == "big"
_NATIVE_LE = np.dtype("<i2")


def swap16(data: bytes) -> bytes:
    """Swap the two bytes of every 16-bit sample (little-endian <-> big-endian).

    Args:
        data: 16-bit samples in either byte order.

    Returns:
        The same samples in the other byte order.

    Raises:
        ValueError: If ``data`` has an odd length.
    """
    if len(data) % 2:
        raise ValueError(f"16-bit samples need an even length, got {len(data)} bytes")
    # array.byteswap is a tight C loop with less set-up cost than numpy for 20 ms frames.
    samples = array.array("H", data)
    samples.byteswap()
    return samples.tobytes()


def silence(fmt: AudioFormat, ms: int = FRAME_MS) -> bytes:
    """Return ``ms`` milliseconds of silence in ``fmt``.

    Silence is ``0xFF`` bytes for mu-law, ``0xD5`` for A-law and zero bytes for slin.

    Args:
        fmt: The encoding.
        ms: Duration; any non-negative number of milliseconds.

    Returns:
        The silent audio.
    """
    n = fmt.sample_rate * ms // 1000 * fmt.sample_width
    if fmt is AudioFormat.ULAW:
        return b"\xff" * n
    if fmt is AudioFormat.ALAW:
        return b"\xd5" * n
    return bytes(n)


def _identity(data: bytes) -> bytes:
    return data


def _check_linear(data: bytes) -> bytes:
    if len(data) % 2:
        raise ValueError(f"16-bit PCM must have an even length, got {len(data)} bytes")
    return data


_DECODERS: dict[AudioFormat, Callable[[bytes], bytes]] = {
    AudioFormat.ULAW: ulaw_decode,
    AudioFormat.ALAW: alaw_decode,
    AudioFormat.SLIN: _check_linear,
    AudioFormat.SLIN16: _check_linear,
}

_ENCODERS: dict[AudioFormat, Callable[[bytes], bytes]] = {
    AudioFormat.ULAW: ulaw_encode,
    AudioFormat.ALAW: alaw_encode,
    AudioFormat.SLIN: _identity,
    AudioFormat.SLIN16: _identity,
}


@functools.lru_cache(maxsize=16)
def _priming_samples(in_rate: int, out_rate: int, quality: str) -> int:
    """Output samples of silence needed so a 10/20 ms stream never waits for soxr.

    soxr filters in large blocks: at HQ it returns nothing for the first ~100 ms of
    input and then a whole block at once. Running a throwaway stream with the
    chunk sizes we expect gives the worst lag between what is due and what soxr
    has produced; that much silence in front of the output hides every burst.
    """
    worst = 0
    for chunk_ms in (10, FRAME_MS):
        stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)
        chunk = np.zeros(in_rate * chunk_ms // 1000, dtype=np.int16)
        due = produced = 0
        for _ in range(3000 // chunk_ms):
            produced += len(stream.resample_chunk(chunk))
            due += out_rate * chunk_ms // 1000
            worst = max(worst, due - produced)
    return worst


class Transcoder:
    """Stateful converter between two :class:`AudioFormat` s, one chunk at a time.

    Each :meth:`convert` call returns exactly the duration it was given: N ms in, N ms
    out (for a rate change, output samples so far = floor(input samples so far x
    ratio)). Resampling between 8 and 16 kHz uses one ``soxr.ResampleStream`` for the
    life of the object, so consecutive chunks join without clicks.

    soxr works in blocks and returns output in bursts (nothing for the first ~100 ms
    at ``"HQ"``). To keep the N-in/N-out contract the output goes through a FIFO that
    starts with :attr:`latency_ms` of silence: the first frames out are silent and
    the audio is delayed by that much for good. If an unusual chunk pattern still
    drains the FIFO, the shortfall is filled with silence (which raises the
    latency by the same amount) and counted in :attr:`underruns`.

    Attributes:
        src: Input format.
        dst: Output format.
        underruns: Times the FIFO ran short and silence was inserted mid-stream.
    """

    def __init__(self, src: AudioFormat, dst: AudioFormat, *, quality: str = "HQ") -> None:
        """Create a converter.

        Args:
            src: Format of the bytes given to :meth:`convert`.
            dst: Format of the bytes it returns.
            quality: soxr quality recipe (``"HQ"``, ``"MQ"``, ``"LQ"``, ``"VHQ"``, or
                ``"QQ"`` for cubic interpolation with almost no delay and no
                anti-aliasing). ``"LQ"`` halves the delay but rolls off above ~3 kHz.
        """
        self.src = src
        self.dst = dst
        self.underruns = 0
        self._decode = _DECODERS[src]
        self._encode = _ENCODERS[dst]
        self._in_rate = src.sample_rate
        self._out_rate = dst.sample_rate
        self._quality = quality
        self._stream: soxr.ResampleStream | None = None
        self._prime = 0
        if self._in_rate != self._out_rate:
            self._prime = _priming_samples(self._in_rate, self._out_rate, quality)
        self.reset()

    @property
    def identity(self) -> bool:
        """Whether :meth:`convert` returns its input unchanged (``src == dst``)."""
        return self.src is self.dst

    @property
    def latency_ms(self) -> float:
        """Delay added by resampling, in milliseconds (0 without a rate change)."""
        return self._prime * 1000 / self._out_rate

    def reset(self) -> None:
        """Start a new stream: forget resampler history and re-prime the FIFO.

        Use it after a discontinuity (e.g. a flush) so old audio does not leak into
        the next output.
        """
        self._in_samples = 0
        self._out_samples = 0
        self._fifo = bytearray()
        if self._in_rate != self._out_rate:
            self._stream = soxr.ResampleStream(
                self._in_rate, self._out_rate, 1, dtype="int16", quality=self._quality
            )
            self._fifo += bytes(2 * self._prime)

    def convert(self, data: bytes) -> bytes:
        """Convert the next chunk of the stream.

        Args:
            data: Audio in :attr:`src`; linear formats little-endian, whole samples.

        Returns:
            The same duration of audio in :attr:`dst`.

        Raises:
            ValueError: If a linear ``data`` has an odd length.
        """
        if self.src is self.dst:
            if self.src.is_linear:
                _check_linear(data)
            return data
        pcm = self._decode(data)
        if self._stream is not None:
            pcm = self._resample(pcm)
        return self._encode(pcm)

    def _resample(self, pcm: bytes) -> bytes:
        assert self._stream is not None
        samples = np.frombuffer(pcm, dtype=_NATIVE_LE)
        if _BIG_ENDIAN_HOST:  # pragma: no cover - soxr wants native int16
            samples = samples.astype(np.int16)
        out = self._stream.resample_chunk(samples)
        fifo = self._fifo
        # Appending the array's buffer directly saves a copy; a memoryview, because
        # `bytearray += ndarray` would dispatch to numpy's element-wise add.
        fifo += memoryview(out if not _BIG_ENDIAN_HOST else out.astype("<i2"))
        self._in_samples += len(samples)
        due = self._in_samples * self._out_rate // self._in_rate
        want = 2 * (due - self._out_samples)
        self._out_samples = due
        short = want - len(fifo)
        if short > 0:
            self.underruns += 1
            fifo[0:0] = bytes(short)
        with memoryview(fifo) as view:
            result = bytes(view[:want])
        del fifo[:want]
        return result
