"""The shared play clock: grid alignment, batching, ordering, cancelling, no spinning."""

from __future__ import annotations

import asyncio
import itertools
import math
import time

import pytest

from mediastream.core.pacer import Pacer
from mediastream.play_clock import QUANTUM, PlayClock


class Owner:
    """Records when it ran; asks to run again after `period` until `runs` runs."""

    def __init__(self, name: str, log: list[tuple[str, float]], *, period: float, runs: int):
        self.name = name
        self.log = log
        self.period = period
        self.runs = runs
        self.next_due = 0.0

    def on_tick(self, now: float) -> float | None:
        self.log.append((self.name, now))
        self.runs -= 1
        if self.runs <= 0:
            return None
        self.next_due += self.period
        return self.next_due


def test_align_is_the_next_grid_time() -> None:
    clock = PlayClock(0.002)
    assert clock.align(10.0) == pytest.approx(10.0)
    assert clock.align(10.0005) == pytest.approx(10.002)
    assert clock.align(10.0019999) == pytest.approx(10.002)
    # A time on the grid up to float error stays where it is.
    assert clock.align(0.002 * 5001 + 1e-12) == pytest.approx(0.002 * 5001)


async def test_owners_run_on_their_ticks_never_early_and_share_wakeups() -> None:
    clock = PlayClock()
    log: list[tuple[str, float]] = []
    start = clock.align(time.monotonic() + 0.01)
    owners = [Owner(f"s{i}", log, period=0.02, runs=10) for i in range(20)]
    for i, owner in enumerate(owners):
        # Ten phases two quanta apart: two owners on every tick used.
        owner.next_due = start + (i % 10) * 2 * QUANTUM
        clock.schedule(owner, owner.next_due)
    await asyncio.sleep(0.3)
    assert len(log) == 20 * 10
    for owner in owners:
        times = [t for name, t in log if name == owner.name]
        first = start + (int(owner.name[1:]) % 10) * 2 * QUANTUM
        for k, t in enumerate(times):
            # Loop timers count whole milliseconds: at most half a quantum early.
            assert t >= first + k * 0.02 - QUANTUM / 2 - 1e-4
        # Frame k is never later than the frame before it plus the period by much,
        # and never bunched with it.
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) > 0.02 - QUANTUM
    # Owners due on the same tick were served by one wake-up.
    assert clock.wakeups <= 10 * 10 + 10
    assert len(clock) == 0


async def test_ticks_run_in_time_order() -> None:
    clock = PlayClock()
    log: list[tuple[str, float]] = []
    base = time.monotonic() + 0.005
    late = Owner("late", log, period=1, runs=1)
    early = Owner("early", log, period=1, runs=1)
    clock.schedule(late, base + 0.02)
    clock.schedule(early, base)
    await asyncio.sleep(0.05)
    assert [name for name, _ in log] == ["early", "late"]


async def test_schedule_keeps_the_sooner_time_and_cancel_stops_it() -> None:
    clock = PlayClock()
    log: list[tuple[str, float]] = []
    owner = Owner("a", log, period=1, runs=1)
    now = time.monotonic()
    clock.schedule(owner, now + 0.05)
    clock.schedule(owner, now + 0.01)  # sooner: moves
    clock.schedule(owner, now + 0.03)  # later: ignored
    await asyncio.sleep(0.02)
    assert len(log) == 1 and log[0][1] < now + 0.03
    other = Owner("b", log, period=1, runs=1)
    clock.schedule(other, time.monotonic() + 0.01)
    clock.cancel(other)
    clock.cancel(other)  # twice is harmless
    await asyncio.sleep(0.03)
    assert [name for name, _ in log] == ["a"]


async def test_an_owner_asking_for_the_past_runs_once_per_tick() -> None:
    clock = PlayClock()
    log: list[tuple[str, float]] = []

    class Greedy(Owner):
        def on_tick(self, now: float) -> float | None:
            super().on_tick(now)
            return 0.0 if self.runs > 0 else None  # always "overdue"

    owner = Greedy("g", log, period=0, runs=1000)
    loop = asyncio.get_running_loop()
    clock.schedule(owner, time.monotonic())
    t0 = loop.time()
    await asyncio.sleep(0.05)
    # One run per 2 ms tick at most, and the loop stayed free to run this task.
    assert loop.time() - t0 < 0.2
    assert 5 <= len(log) <= 0.05 / QUANTUM + 5
    clock.cancel(owner)


async def test_a_pacer_on_the_clock_sends_one_frame_per_tick_it_asks_for() -> None:
    clock = PlayClock()
    pacer = Pacer(160, max_catchup=1000)
    polls: list[int] = []

    class Player:
        def on_tick(self, now: float) -> float | None:
            polls.append(len(pacer.poll(now).frames))
            return pacer.next_deadline()

    player = Player()
    pacer.push(bytes(160 * 25), clock.align(time.monotonic()))
    clock.schedule(player, pacer.next_deadline() or 0.0)
    await asyncio.sleep(25 * 0.02 + 0.05)
    assert sum(polls) == 25
    # Every poll the clock made found its frame due: a timer firing a little
    # early must not put a frame off to the next tick (2 ms late).
    assert polls.count(0) <= 1  # the last poll may only report the drain


async def test_a_time_before_any_clock_reading_means_the_next_tick() -> None:
    # A Pacer's next_deadline() is -inf until it has been given a time: a stream
    # that ends its input without ever sending audio asks for exactly that.
    clock = PlayClock()
    log: list[tuple[str, float]] = []
    owner = Owner("a", log, period=1, runs=1)
    clock.schedule(owner, -math.inf)
    await asyncio.sleep(0.02)
    assert [name for name, _ in log] == ["a"]
