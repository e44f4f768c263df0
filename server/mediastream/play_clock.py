"""One timer for the pacers of every stream on an event loop.

Over RTP and AudioSocket Asterisk relays what it receives without re-timing, so
the gateway sends each stream's audio at one 20 ms frame per 20 ms. With a loop
timer per stream per frame, N streams cost 50 x N timer handles and loop
wake-ups a second. Here every schedule is laid on a grid of :data:`QUANTUM`
seconds (a divisor of the frame period): a stream's playback starts on the next
grid tick, so all its later frames fall on ticks too, and one timer per tick
that has work sends the frames of every stream due then. Starting playback up to
one quantum later is the whole price. Frames are never bunched; like any loop
timer's, a tick may run up to half a quantum (1 ms) before its time.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from typing import Protocol

__all__ = ["QUANTUM", "PlayClock", "Ticking"]

QUANTUM = 0.002
"""Grid step in seconds: 20 ms is ten of them; uvloop's timers count whole milliseconds."""

_SLACK = 1e-6
"""Tolerance when placing a time on the grid, so float rounding never skips a tick."""


class Ticking(Protocol):
    """Something the clock runs: a stream's pacer."""

    def on_tick(self, now: float) -> float | None:
        """Do what is due by `now` (``time.monotonic()``).

        Returns:
            When to run next, or None to wait until scheduled again.
        """


class PlayClock:
    """Runs scheduled :class:`Ticking` owners on grid ticks of one event loop.

    Args:
        quantum: Grid step in seconds.
    """

    def __init__(self, quantum: float = QUANTUM) -> None:
        self.quantum = quantum
        self._due: dict[int, dict[Ticking, None]] = {}
        self._ticks: list[int] = []
        self._where: dict[Ticking, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_tick: int | None = None
        self._running = False
        self.wakeups = 0
        """Timer callbacks run so far (each serves every owner due on its tick)."""

    def align(self, t: float) -> float:
        """The first grid time at or after `t`: where a playback schedule starts."""
        return self._tick_of(t) * self.quantum

    def _tick_of(self, t: float) -> int:
        return math.ceil(t / self.quantum - _SLACK)

    def __len__(self) -> int:
        """Owners scheduled now."""
        return len(self._where)

    def schedule(self, owner: Ticking, when: float) -> None:
        """Run `owner` on the first tick at or after `when`, unless it already runs sooner.

        Args:
            owner: What to run.
            when: A ``time.monotonic()`` time; a past one means the next tick.
        """
        # A pacer that never saw a clock reading answers -inf ("now"): the next tick.
        tick = self._tick_of(max(when, time.monotonic()))
        current = self._where.get(owner)
        if current is not None:
            if current <= tick:
                return
            self._remove(owner, current)
        self._where[owner] = tick
        owners = self._due.get(tick)
        if owners is None:
            owners = self._due[tick] = {}
            heapq.heappush(self._ticks, tick)
        owners[owner] = None
        if not self._running and (self._timer_tick is None or tick < self._timer_tick):
            self._arm(tick)

    def cancel(self, owner: Ticking) -> None:
        """Do not run `owner` until it is scheduled again."""
        tick = self._where.get(owner)
        if tick is not None:
            self._remove(owner, tick)

    def _remove(self, owner: Ticking, tick: int) -> None:
        del self._where[owner]
        owners = self._due[tick]
        del owners[owner]
        # An emptied tick stays in the heap and is skipped when it comes up.

    def _arm(self, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, tick * self.quantum - time.monotonic())
        self._timer = loop.call_at(when, self._run)
        self._timer_tick = tick

    def _run(self) -> None:
        self._timer = None
        self._timer_tick = None
        self._running = True
        self.wakeups += 1
        ticks = self._ticks
        due = self._due
        where = self._where
        try:
            while ticks and ticks[0] <= self._last_runnable():
                tick = heapq.heappop(ticks)
                owners = due.pop(tick, None)
                if not owners:
                    continue
                # A tick run a little early is run as if on time: a pacer polled
                # before its frame's due time would put that frame off a whole tick.
                now = max(time.monotonic(), tick * self.quantum)
                for owner in owners:
                    del where[owner]
                # Never again on this tick: an owner that keeps asking for a past
                # time cannot hold the loop here.
                earliest = (tick + 1) * self.quantum
                for owner in owners:
                    following = owner.on_tick(now)
                    if following is not None:
                        self.schedule(owner, max(following, earliest))
        finally:
            self._running = False
            while ticks and not due.get(ticks[0]):
                due.pop(heapq.heappop(ticks), None)
            if ticks:
                self._arm(ticks[0])

    def _last_runnable(self) -> int:
        # Loop timers count whole milliseconds, so one may fire a little before its
        # tick: a tick up to half a quantum ahead runs now.
        return math.floor(time.monotonic() / self.quantum + 0.5)
