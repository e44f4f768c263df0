"""An asyncio event loop on a virtual clock: timer logic tested without the machine's load.

The loop never sleeps: when it would wait for its next timer it moves its clock
there at once, plus whatever lateness the test asks for (a loaded machine's late
timer, uvloop's early one, both drawn from a seeded generator, so a run repeats
exactly). ``time.monotonic`` of the code under test is pointed at the same clock
with :func:`patch_monotonic`.
"""

from __future__ import annotations

import asyncio
import random
import selectors
import types
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

__all__ = ["VirtualClock", "patch_monotonic", "run"]


class VirtualClock:
    """Seconds since an arbitrary start, moved only by the loop that owns it.

    Args:
        start: The clock's first reading.
        early: Timers fire up to this many seconds early (uvloop counts whole
            milliseconds, so its timers may fire up to 1 ms before their time).
        late: Timers fire up to this many seconds late (a machine busy elsewhere).
        seed: Seed of the generator that draws each wake-up's lateness.
    """

    def __init__(
        self, start: float = 1000.0, *, early: float = 0.0, late: float = 0.0, seed: int = 0
    ) -> None:
        self.now = start
        self.early = early
        self.late = late
        self._random = random.Random(seed)

    def monotonic(self) -> float:
        """The current virtual time."""
        return self.now

    def lateness(self) -> float:
        """How late (negative: early) the next wake-up is."""
        if not self.early and not self.late:
            return 0.0
        return self._random.uniform(-self.early, self.late)


class _Selector(selectors.DefaultSelector):
    """Polls real file descriptors without blocking; a wait moves the virtual clock."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout is None or timeout <= 0:
            # Nothing scheduled and nothing to read (timeout None) cannot be
            # waited out on a virtual clock; the loop is stuck. Fail loudly.
            if not ready and timeout is None:
                raise RuntimeError("virtual-time loop: nothing scheduled, nothing to wait for")
            return ready
        self._clock.now += max(0.0, timeout + self._clock.lateness())
        return []


class _Loop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(_Selector(clock))
        self._virtual = clock
        # A timer is due when its time is within the resolution of now: with the
        # clock's `early` allowance this is how a timer fires ahead of its time.
        self._clock_resolution = max(clock.early, 1e-9)

    def time(self) -> float:
        return self._virtual.now


def run(coro: Coroutine[Any, Any, Any], clock: VirtualClock) -> Any:
    """Run `coro` to completion on a fresh loop driven by `clock`."""
    loop = _Loop(clock)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def patch_monotonic(
    monkeypatch: pytest.MonkeyPatch, module: types.ModuleType, clock: VirtualClock
) -> None:
    """Point `module`'s ``time.monotonic()`` (and only that module's) at `clock`."""
    fake: Callable[[], float] = clock.monotonic
    monkeypatch.setattr(module, "time", types.SimpleNamespace(monotonic=fake))
