"""Summarise a py-spy profile (``--format raw``: collapsed stacks) of the gateway.

Run: ``uv run python bench/profile_summary.py out/profile-gateway-rtp-100-100.txt [--top 25]``.

Prints, per thread, the share of samples in each function (self and
inclusive, by function name without line numbers) and in a few areas of the
relay path.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

_LINE = re.compile(r" \((?P<file>[^()]*?):\d+\)$")

# Areas of the path, tried in order against the whole stack (first match wins).
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("prometheus metrics", ("prometheus_client/",)),
    ("logging", ("logging/__init__",)),
    ("downlink: RTP in -> chunk", ("datagram_received",)),
    ("uplink: pacer task (_play)", ("Stream._play",)),
    ("uplink: gRPC read (_read_input)", ("_read_input",)),
    ("downlink: gRPC write (StreamMedia)", ("StreamMedia",)),
    ("gRPC core/cython (callbacks, poller)", ("grpc/", "_cython", "cygrpc")),
    ("asyncio loop itself", ("asyncio/",)),
]


def func(frame: str) -> str:
    """``name (file:line)`` -> ``name (file)``."""
    return _LINE.sub(lambda m: f" ({m['file']})", frame.strip())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    self_t: dict[str, Counter[str]] = defaultdict(Counter)
    incl: dict[str, Counter[str]] = defaultdict(Counter)
    areas: dict[str, Counter[str]] = defaultdict(Counter)
    total: Counter[str] = Counter()
    for raw in args.profile.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread") else "?"
        frames = frames[1:] if frames[0].startswith("thread") else frames
        total[thread] += n
        if frames:
            self_t[thread][func(frames[-1])] += n
        for f in {func(f) for f in frames}:
            incl[thread][f] += n
        for name, keys in AREAS:
            if any(k in stack for k in keys):
                areas[thread][name] += n
                break
        else:
            areas[thread]["other"] += n
    for thread, n in total.most_common():
        print(f"\n== thread {thread}: {n} samples")
        print("  areas (first match, in path order):")
        for name, c in areas[thread].most_common():
            print(f"    {100 * c / n:5.1f}%  {name}")
        print(f"  top {args.top} self:")
        for name, c in self_t[thread].most_common(args.top):
            print(f"    {100 * c / n:5.1f}%  {name}")
        print(f"  top {args.top} inclusive:")
        for name, c in incl[thread].most_common(args.top):
            print(f"    {100 * c / n:5.1f}%  {name}")


if __name__ == "__main__":
    main()
