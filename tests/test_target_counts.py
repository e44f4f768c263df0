"""Stream counts per call and per client, shared by worker processes through one file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mediastream.target_counts import LocalTargetCounts, SharedTargetCounts


def table(tmp_path: Path) -> str:
    path = str(tmp_path / "counts")
    SharedTargetCounts.create(path)
    return path


def test_the_limit_holds_across_workers(tmp_path: Path) -> None:
    path = table(tmp_path)
    w0, w1 = SharedTargetCounts(path, 0), SharedTargetCounts(path, 1)
    assert w0.acquire("call:a", 3) is None
    assert w1.acquire("call:a", 3) is None
    assert w1.acquire("call:a", 3) is None
    assert w0.acquire("call:a", 3) == 3  # refused, naming the count
    assert w0.acquire("call:b", 3) is None  # another call is not affected
    w1.release("call:a")
    assert w0.acquire("call:a", 3) is None


def test_a_dead_workers_streams_stop_counting(tmp_path: Path) -> None:
    path = table(tmp_path)
    w0, w1 = SharedTargetCounts(path, 0), SharedTargetCounts(path, 1)
    for _ in range(2):
        assert w0.acquire("client:k", 2) is None
    assert w1.acquire("client:k", 2) == 2
    SharedTargetCounts.clear_worker(path, 0)  # the supervisor saw worker 0 die
    assert w1.acquire("client:k", 2) is None


def test_a_full_bucket_counts_locally_rather_than_refuse(tmp_path: Path) -> None:
    path = table(tmp_path)
    w0 = SharedTargetCounts(path, 0)
    # Fill every slot of one bucket by hand: 8 live keys that hash to it are rare.
    w0._find = lambda key, claim: None  # type: ignore[method-assign]
    assert w0.acquire("call:x", 1) is None
    assert w0.acquire("call:x", 1) == 1
    w0.release("call:x")
    assert w0.acquire("call:x", 1) is None


def _worker(path: str, index: int, rounds: int) -> None:
    counts = SharedTargetCounts(path, index)
    for _ in range(rounds):
        if counts.acquire("call:busy", 1_000_000) is None:
            counts.release("call:busy")
        assert counts.acquire("call:mine", 1_000_000) is None


def test_concurrent_processes_lose_no_update(tmp_path: Path) -> None:
    path = table(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(path, i, 300)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    # Each process still holds its 300 streams of "call:mine" (a column each, never
    # cleared by another), and "call:busy" went back to zero.
    probe = SharedTargetCounts(path, 3)
    assert probe.acquire("call:mine", 900) == 900
    assert probe.acquire("call:busy", 1) is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=40))
def test_shared_counts_agree_with_local_counts(ops: list[tuple[str, bool]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = table(Path(tmp))
        shared, local = SharedTargetCounts(path, 0), LocalTargetCounts()
        held: dict[str, int] = {}
        for key, take in ops:
            if take or not held.get(key):
                assert shared.acquire(key, 3) == local.acquire(key, 3)
                if local._counts[key] > held.get(key, 0):
                    held[key] = local._counts[key]
            else:
                shared.release(key)
                local.release(key)
                held[key] -= 1
        shared.close()
