"""The media engine: one 20 ms clock, tone generation and linear mixing.

Everything that happens "every 20 ms" in Asterisk (Playtones, softmix, snoop,
chan_websocket's re-pacing) is a ticker on the single :class:`MediaClock`, so all
of them stay in step and none drifts: tick ``n`` is due at ``start + n * 20 ms``
on the monotonic clock, however late the previous one ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from mediastream.core.formats import FRAME_MS

__all__ = [
    "PLAYTONES_AMPLITUDE",
    "TICK_SECONDS",
    "MediaClock",
    "ToneGenerator",
    "mix",
    "pcm_array",
]

log = logging.getLogger(__name__)

TICK_SECONDS = FRAME_MS / 1000
"""The clock period: one frame."""

PLAYTONES_AMPLITUDE = 7200
"""Peak amplitude of Asterisk's Playtones (measured ~7200 in the recordings)."""

# Falling this far behind (a stalled event loop) restarts the schedule instead of
# bursting out every missed tick at once.
_MAX_LAG_SECONDS = 0.2


Ticker = Callable[[], None]


class MediaClock:
    """A drift-free 20 ms tick shared by every periodic media task.

    Tickers run in ascending ``order`` (sources first, then mixers, then taps), so
    a frame generated on a tick can be mixed and tapped on the same tick.
    """

    def __init__(self, period: float = TICK_SECONDS) -> None:
        """Create a stopped clock with the given period in seconds."""
        self.period = period
        self.ticks = 0
        self._tickers: dict[int, tuple[int, Ticker]] = {}
        self._sorted: list[Ticker] = []
        self._next_handle = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._tick_time: float | None = None

    def now(self) -> float:
        """Monotonic time; during a tick, the time the tick was *due*.

        Frames produced on a tick are stamped with the schedule rather than with
        the event loop's wake-up jitter, as Asterisk's timerfd-driven frames are.
        """
        if self._tick_time is not None:
            return self._tick_time
        return asyncio.get_running_loop().time()

    def add(self, ticker: Ticker, order: int = 0) -> int:
        """Call ``ticker()`` on every tick; returns a handle for :meth:`remove`."""
        self._next_handle += 1
        self._tickers[self._next_handle] = (order, ticker)
        self._resort()
        return self._next_handle

    def remove(self, handle: int) -> None:
        """Stop calling a ticker (unknown handles are ignored)."""
        if self._tickers.pop(handle, None) is not None:
            self._resort()

    def _resort(self) -> None:
        ordered = sorted(self._tickers.items(), key=lambda item: (item[1][0], item[0]))
        self._sorted = [ticker for _, (_, ticker) in ordered]

    async def wait_ticks(self, n: int) -> None:
        """Return on the ``n``-th tick from now (at once for ``n <= 0``)."""
        if n <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self.ticks + n, future))
        await future

    def start(self) -> None:
        """Start ticking on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="media-clock")

    async def stop(self) -> None:
        """Stop ticking."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, future in self._waiters:
            future.cancel()
        self._waiters.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while True:
            n += 1
            due = start + n * self.period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > _MAX_LAG_SECONDS:
                start, n = loop.time(), 0
                due = start
            self.tick(due)

    def tick(self, due: float | None = None) -> None:
        """Run one tick now (the clock task calls this; tests may too).

        Args:
            due: When the tick was scheduled (what :meth:`now` reports meanwhile).
        """
        self.ticks += 1
        self._tick_time = due
        try:
            for ticker in list(self._sorted):
                try:
                    ticker()
                except Exception:
                    log.exception("media ticker failed")
        finally:
            self._tick_time = None
        if self._waiters:
            ready = [w for w in self._waiters if w[0] <= self.ticks]
            self._waiters = [w for w in self._waiters if w[0] > self.ticks]
            for _, future in ready:
                if not future.done():
                    future.set_result(None)


class ToneGenerator:
    """Asterisk's Playtones for a steady tone: a sum of sines, continuous across frames."""

    def __init__(
        self,
        frequencies: Iterable[float],
        sample_rate: int = 8000,
        amplitude: int = PLAYTONES_AMPLITUDE,
    ) -> None:
        """Create a generator.

        Args:
            frequencies: Frequencies in Hz, each at full ``amplitude`` (like ``440+480``).
            sample_rate: Output rate.
            amplitude: Peak amplitude of each component.
        """
        self.frequencies = tuple(frequencies)
        self.sample_rate = sample_rate
        self.amplitude = amplitude
        self._position = 0

    def next_frame(self, samples: int | None = None) -> bytes:
        """The next ``samples`` (default 20 ms) of 16-bit little-endian PCM."""
        n = samples if samples is not None else self.sample_rate * FRAME_MS // 1000
        t = (np.arange(n, dtype=np.float64) + self._position) / self.sample_rate
        self._position += n
        wave = np.zeros(n, dtype=np.float64)
        for f in self.frequencies:
            wave += self.amplitude * np.sin(2 * math.pi * f * t)
        return np.clip(np.rint(wave), -32768, 32767).astype("<i2").tobytes()


def pcm_array(pcm: bytes, samples: int) -> npt.NDArray[np.int32]:
    """16-bit LE PCM as int32 samples, cut or zero-padded to exactly ``samples``."""
    data = np.frombuffer(pcm[: 2 * samples], dtype="<i2").astype(np.int32)
    if len(data) < samples:
        data = np.concatenate([data, np.zeros(samples - len(data), dtype=np.int32)])
    return data


def mix(parts: Iterable[npt.NDArray[Any]]) -> npt.NDArray[np.int32]:
    """Sum int32 sample arrays of equal length (no attenuation, as softmix does)."""
    total: npt.NDArray[np.int32] | None = None
    for part in parts:
        total = part.astype(np.int32) if total is None else total + part
    if total is None:
        return np.zeros(0, dtype=np.int32)
    return total


def clip_to_pcm(samples: npt.NDArray[Any]) -> bytes:
    """Clip int32 samples to 16 bits and return little-endian PCM."""
    pcm: bytes = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
    return pcm
