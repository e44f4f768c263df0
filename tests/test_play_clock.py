"""The shared play clock: grid alignment, batching, ordering, cancelling, no spinning.

Every test runs on a virtual clock (tests/virtual_time.py): the loop's timers and
the clock's ``time.monotonic()`` read the same simulated time, so what a test
asserts about when things ran holds exactly, whatever else the machine is doing.
Timers that fire early (uvloop, by up to 1 ms) or late (a busy machine) are
simulated from a seeded generator.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time

import pytest

from mediastream import play_clock
from mediastream.core.pacer import Pacer
from mediastream.play_clock import QUANTUM, PlayClock
from tests.virtual_time import VirtualClock, patch_monotonic, run

UVLOOP_EARLY = QUANTUM / 2
"""How early a loop timer may fire: uvloop counts whole milliseconds."""


class Owner:
    """Records when it ran; asks to run again after `period` until `runs` runs."""

    def __init__(
        self,
        name: str,
        log: list[tuple[str, float, int]],
        clock: PlayClock,
        *,
        period: float,
        runs: int,
    ):
        self.name = name
        self.log = log
        self.clock = clock
        self.period = period
        self.runs = runs
        self.next_due = 0.0

    def on_tick(self, now: float) -> float | None:
        self.log.append((self.name, now, self.clock.wakeups))
        self.runs -= 1
        if self.runs <= 0:
            return None
        self.next_due += self.period
        return self.next_due


def virtual(
    monkeypatch: pytest.MonkeyPatch, *, early: float = 0.0, late: float = 0.0, seed: int = 0
) -> VirtualClock:
    """A virtual clock the play clock module reads as ``time.monotonic()``."""
    clock = VirtualClock(early=early, late=late, seed=seed)
    patch_monotonic(monkeypatch, play_clock, clock)
    return clock


def test_align_is_the_next_grid_time() -> None:
    clock = PlayClock(0.002)
    assert clock.align(10.0) == pytest.approx(10.0)
    assert clock.align(10.0005) == pytest.approx(10.002)
    assert clock.align(10.0019999) == pytest.approx(10.002)
    # A time on the grid up to float error stays where it is.
    assert clock.align(0.002 * 5001 + 1e-12) == pytest.approx(0.002 * 5001)


def run_owners(vclock: VirtualClock) -> tuple[PlayClock, list[Owner], list[tuple[str, float, int]]]:
    """20 owners with a 20 ms period, 10 runs each, two on every other tick."""
    log: list[tuple[str, float, int]] = []

    async def main() -> tuple[PlayClock, list[Owner]]:
        clock = PlayClock()
        start = clock.align(vclock.now + 0.01)
        owners = [Owner(f"s{i}", log, clock, period=0.02, runs=10) for i in range(20)]
        for i, owner in enumerate(owners):
            # Ten phases two quanta apart: two owners on every tick used.
            owner.next_due = start + (i % 10) * 2 * QUANTUM
            clock.schedule(owner, owner.next_due)
        await asyncio.sleep(1.0)  # virtual: far longer than the 0.2 s the runs take
        return clock, owners

    clock, owners = run(main(), vclock)
    return clock, owners, log


def due_times(owner: Owner, log: list[tuple[str, float, int]]) -> list[tuple[float, float, int]]:
    """(due, ran, wake-up) of each of `owner`'s runs."""
    runs = [(t, w) for name, t, w in log if name == owner.name]
    first = owner.next_due - (len(runs) - 1) * owner.period
    return [(first + k * owner.period, t, w) for k, (t, w) in enumerate(runs)]


@pytest.mark.parametrize("early", [0.0, UVLOOP_EARLY])
def test_owners_run_exactly_on_their_ticks_and_share_wakeups(
    monkeypatch: pytest.MonkeyPatch, early: float
) -> None:
    # Timers on time, or up to 1 ms early as uvloop's are: either way every run
    # is exactly on its due time (a tick run early is run as if on time).
    clock, owners, log = run_owners(virtual(monkeypatch, early=early, seed=3))
    assert len(log) == 20 * 10 and len(clock) == 0
    ticks: dict[int, set[int]] = {}
    for owner in owners:
        runs = due_times(owner, log)
        assert len(runs) == 10
        for due, ran, wake in runs:
            assert ran == pytest.approx(due, abs=1e-9)
            ticks.setdefault(round(due / QUANTUM), set()).add(wake)
        # Never bunched: frame k+1 exactly one period after frame k.
        gaps = [b - a for (_, a, _), (_, b, _) in itertools.pairwise(runs)]
        assert gaps == pytest.approx([0.02] * 9, abs=1e-9)
    # Owners due on the same tick were served by one wake-up, one per tick used
    # (ten phases 4 ms apart with a 20 ms period: a tick every 4 ms, 55 in all).
    assert all(len(wakes) == 1 for wakes in ticks.values())
    assert clock.wakeups == len(ticks) == 55


@pytest.mark.parametrize("seed", range(5))
def test_owners_on_late_timers_never_run_early_and_catch_up(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    # Timers up to 1 ms early (uvloop) and up to 45 ms late (a busy machine: more
    # than two periods, so owners fall behind by several frames).
    vclock = virtual(monkeypatch, early=UVLOOP_EARLY, late=0.045, seed=seed)
    clock, owners, log = run_owners(vclock)
    assert len(log) == 20 * 10 and len(clock) == 0
    # When each wake-up ran: the earliest time any owner was given in it.
    woke: dict[int, float] = {}
    for _, ran, wake in log:
        woke[wake] = min(ran, woke.get(wake, ran))
    lateness = []
    for owner in owners:
        runs = due_times(owner, log)
        assert len(runs) == 10  # none lost
        for due, ran, _ in runs:
            # Never early: a tick run ahead of its time is run as if on time.
            assert ran >= due - 1e-9
            lateness.append(ran - due)
        assert [r for _, r, _ in runs] == sorted(r for _, r, _ in runs)
        # Never starved: a wake-up that finds a frame of this owner overdue runs
        # the owner (all its overdue frames, or one and the rest on the next tick).
        for wake, at in woke.items():
            behind = [due for due, _, w in runs if w >= wake and due <= at - QUANTUM]
            assert not behind or any(w == wake for _, _, w in runs), (owner.name, wake)
    # The simulated load did make runs late (the test tests something)...
    assert max(lateness) > 0.02
    # ...and late wake-ups serve several ticks at once: fewer wake-ups than ticks.
    assert clock.wakeups < 55


def test_ticks_run_in_time_order(monkeypatch: pytest.MonkeyPatch) -> None:
    vclock = virtual(monkeypatch)
    log: list[tuple[str, float, int]] = []

    async def main() -> None:
        clock = PlayClock()
        base = vclock.now + 0.005
        late = Owner("late", log, clock, period=1, runs=1)
        early = Owner("early", log, clock, period=1, runs=1)
        clock.schedule(late, base + 0.02)
        clock.schedule(early, base)
        await asyncio.sleep(0.05)

    run(main(), vclock)
    assert [name for name, _, _ in log] == ["early", "late"]


def test_schedule_keeps_the_sooner_time_and_cancel_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vclock = virtual(monkeypatch)
    log: list[tuple[str, float, int]] = []

    async def main() -> None:
        clock = PlayClock()
        owner = Owner("a", log, clock, period=1, runs=1)
        now = vclock.now
        clock.schedule(owner, now + 0.05)
        clock.schedule(owner, now + 0.01)  # sooner: moves
        clock.schedule(owner, now + 0.03)  # later: ignored
        await asyncio.sleep(0.02)
        assert len(log) == 1 and log[0][1] == pytest.approx(clock.align(now + 0.01))
        other = Owner("b", log, clock, period=1, runs=1)
        clock.schedule(other, vclock.now + 0.01)
        clock.cancel(other)
        clock.cancel(other)  # twice is harmless
        await asyncio.sleep(0.03)

    run(main(), vclock)
    assert [name for name, _, _ in log] == ["a"]


def test_an_owner_asking_for_the_past_runs_once_per_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    vclock = virtual(monkeypatch, early=UVLOOP_EARLY)
    log: list[tuple[str, float, int]] = []

    async def main() -> PlayClock:
        clock = PlayClock()

        class Greedy(Owner):
            def on_tick(self, now: float) -> float | None:
                super().on_tick(now)
                return 0.0 if self.runs > 0 else None  # always "overdue"

        owner = Greedy("g", log, clock, period=0, runs=1000)
        clock.schedule(owner, vclock.now)
        await asyncio.sleep(0.05)
        clock.cancel(owner)
        return clock

    clock = run(main(), vclock)
    # One run per 2 ms tick, one wake-up for each: it never held the loop (the
    # sleep above ended) nor ran twice on a tick.
    assert 0.05 / QUANTUM - 1 <= len(log) <= 0.05 / QUANTUM + 1
    assert clock.wakeups == len(log)
    assert all(b - a >= QUANTUM - 1e-9 for (_, a, _), (_, b, _) in itertools.pairwise(log))


@pytest.mark.parametrize("early", [0.0, UVLOOP_EARLY])
def test_a_pacer_on_the_clock_sends_one_frame_per_tick_it_asks_for(
    monkeypatch: pytest.MonkeyPatch, early: float
) -> None:
    vclock = virtual(monkeypatch, early=early, seed=7)
    pacer = Pacer(160, max_catchup=1000)
    polls: list[int] = []

    async def main() -> None:
        clock = PlayClock()

        class Player:
            def on_tick(self, now: float) -> float | None:
                polls.append(len(pacer.poll(now).frames))
                return pacer.next_deadline()

        pacer.push(bytes(160 * 25), clock.align(vclock.now))
        clock.schedule(Player(), pacer.next_deadline() or 0.0)
        await asyncio.sleep(25 * 0.02 + 0.05)

    run(main(), vclock)
    assert sum(polls) == 25
    # Every poll the clock made found its frame due: a timer firing a little
    # early must not put a frame off to the next tick (2 ms late).
    assert polls.count(0) <= 1  # the last poll may only report the drain


def test_a_time_before_any_clock_reading_means_the_next_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Pacer's next_deadline() is -inf until it has been given a time: a stream
    # that ends its input without ever sending audio asks for exactly that.
    vclock = virtual(monkeypatch)
    log: list[tuple[str, float, int]] = []

    async def main() -> None:
        clock = PlayClock()
        clock.schedule(Owner("a", log, clock, period=1, runs=1), -math.inf)
        await asyncio.sleep(0.02)

    run(main(), vclock)
    assert [name for name, _, _ in log] == ["a"]
    assert log[0][1] <= vclock.now


async def test_on_the_real_loop_an_owner_runs_never_early() -> None:
    # The one test on the real (uv)loop and clock, for what holds at any load:
    # an owner is never run before its time, and runs (however late).
    clock = PlayClock()
    log: list[tuple[str, float, int]] = []
    owner = Owner("a", log, clock, period=0.02, runs=3)
    owner.next_due = clock.align(time.monotonic() + 0.01)
    first = owner.next_due
    clock.schedule(owner, first)
    async with asyncio.timeout(30):  # generous: a busy machine delays timers, never drops them
        while len(log) < 3:
            await asyncio.sleep(0.01)
    assert [t >= first + k * 0.02 - 1e-9 for k, (_, t, _) in enumerate(log)] == [True] * 3
