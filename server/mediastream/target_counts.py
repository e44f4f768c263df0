"""How many streams each call or conference has, across worker processes.

With one process a dict does. Worker processes share a port, so the kernel
spreads connections, and with them the streams of one call, over the workers:
the per-call limit (5 streams, as VoIPBIN) must then be counted in one place
they all see. `SharedTargetCounts` is a small hash table in a file-backed
mmap, locked with flock: a stream open or close takes one lock and touches
one 1,152-byte bucket, which is nothing next to the ARI round trips of an open.

Each worker counts in a column of its own, so a worker that dies (or is
restarted) clears its column and can never leave a call's count stuck.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
from collections import Counter
from typing import Protocol

MAX_WORKERS = 64
_KEY = 16  # bytes of blake2b digest naming a target
_COUNT = struct.Struct("<H")  # a worker's count of one key: up to 65,535
_COUNTS = struct.Struct(f"<{MAX_WORKERS}H")
_SLOT = _KEY + _COUNTS.size  # key + a count per worker
_SLOTS_PER_BUCKET = 8
_BUCKETS = 4096
SIZE = _BUCKETS * _SLOTS_PER_BUCKET * _SLOT
"""Bytes of the shared table file (4.7 MB)."""
_ZERO = bytes(_COUNTS.size)


class TargetCounts(Protocol):
    """Counts of streams per target, with the limit checked and taken at once."""

    def acquire(self, key: str, limit: int) -> int | None:
        """Count one more stream under `key` unless it already has `limit`.

        Args:
            key: What is counted: ``call:<id>``, ``conference:<id>``, ``client:<who>``.
            limit: The most streams `key` may have.

        Returns:
            None when counted; else how many streams `key` has.
        """
        ...

    def release(self, key: str) -> None:
        """Count one stream less under `key`."""
        ...


class LocalTargetCounts:
    """Counts for one process."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def acquire(self, key: str, limit: int) -> int | None:
        """See `TargetCounts.acquire`."""
        have = self._counts[key]
        if have >= limit:
            return have
        self._counts[key] = have + 1
        return None

    def release(self, key: str) -> None:
        """See `TargetCounts.release`."""
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=_KEY).digest()


class SharedTargetCounts:
    """Counts shared by the workers of one gateway through a file.

    Args:
        path: The table file (created by the supervisor with `create`).
        worker: This worker's index, its column in the table.
    """

    def __init__(self, path: str, worker: int) -> None:
        if not 0 <= worker < MAX_WORKERS:
            raise ValueError(f"worker index must be below {MAX_WORKERS}")
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, SIZE)
        self._worker = worker
        self._local = LocalTargetCounts()
        with self._locked():
            self._clear_column()

    @staticmethod
    def create(path: str) -> None:
        """Make an empty table file (by the supervisor, before its workers start)."""
        with open(path, "wb") as f:
            f.truncate(SIZE)

    @classmethod
    def clear_worker(cls, path: str, worker: int) -> None:
        """Forget every stream a worker counted (it died: its streams are gone)."""
        cls(path, worker).close()

    def close(self) -> None:
        """Clear this worker's counts and unmap the table."""
        with self._locked():
            self._clear_column()
        self._map.close()
        os.close(self._fd)

    def acquire(self, key: str, limit: int) -> int | None:
        """See `TargetCounts.acquire`."""
        digest = _digest(key)
        with self._locked():
            slot = self._find(digest, claim=True)
            if slot is None:
                # Nine live targets in one bucket of 4096: count locally rather
                # than refuse a stream the limit would allow.
                return self._local.acquire(key, limit)
            have: int = sum(_COUNTS.unpack_from(self._map, slot + _KEY))
            if have >= limit:
                return have
            at = slot + _KEY + self._worker * _COUNT.size
            _COUNT.pack_into(self._map, at, _COUNT.unpack_from(self._map, at)[0] + 1)
            self._map[slot : slot + _KEY] = digest
            return None

    def release(self, key: str) -> None:
        """See `TargetCounts.release`."""
        with self._locked():
            slot = self._find(_digest(key), claim=False)
            at = None if slot is None else slot + _KEY + self._worker * _COUNT.size
            mine = 0 if at is None else _COUNT.unpack_from(self._map, at)[0]
            if at is None or mine == 0:
                self._local.release(key)
                return
            _COUNT.pack_into(self._map, at, mine - 1)

    def _find(self, key: bytes, *, claim: bool) -> int | None:
        """The slot holding `key`, else (with `claim`) a free one of its bucket."""
        bucket = int.from_bytes(key[:4], "little") % _BUCKETS
        start = bucket * _SLOTS_PER_BUCKET * _SLOT
        free = None
        for slot in range(start, start + _SLOTS_PER_BUCKET * _SLOT, _SLOT):
            if self._map[slot : slot + _KEY] == key:
                return slot
            if free is None and self._map[slot + _KEY : slot + _SLOT] == _ZERO:
                free = slot  # no live stream counted here: reusable
        return free if claim else None

    def _clear_column(self) -> None:
        for at in range(_KEY + self._worker * _COUNT.size, SIZE, _SLOT):
            _COUNT.pack_into(self._map, at, 0)

    def _locked(self) -> _Flock:
        return _Flock(self._fd)


class _Flock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
