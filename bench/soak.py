"""Bounded soak of the gateway: N streams with churn, memory and descriptors watched.

Run: ``uv run python bench/soak.py`` (10 minutes, 200 streams), ``--minutes M --streams N``,
or ``--quick`` (60 s, 50 streams). It stops by itself: after the soak, the load stops, every
stream must end, the gateway is sent SIGTERM and must exit.

A ``mediastream serve`` process with its embedded Asterisk emulator runs on loopback. The
driver (this process, a separate one) keeps N stream slots busy; each slot opens a stream,
holds it for 2-20 s and ends it, over and over: listen-only and two-way streams (the two-way
ones send 100 ms of audio every 100 ms into the echo call), on the demo calls and the
conference, over every transport towards Asterisk (RTP, AudioSocket, WebSocket channel); one
end in four is abrupt (the RPC is cancelled mid-stream), the rest half-close (two-way) or
cancel after reading (listen). The gateway's resident memory (VmRSS) and open file
descriptors (``/proc/PID/fd``) are printed at the start, every ``--interval`` seconds and at
the end, with the slope over the soak (least squares over the samples after the first
interval, so the ramp-up is not counted as a leak), and the figures are written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from mediastream_client import AudioFormat, MediaStreamClient, RPCError, Transport

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out"  # gitignored

CLIENTS_PER_CHANNEL = 50
"""Streams multiplexed over one HTTP/2 connection, as a real service would."""

OPEN_RATE = 40.0
"""Stream slots started per second during the ramp-up."""


@dataclass
class Sample:
    """One reading of the gateway process."""

    t: float
    rss_kib: int
    fds: int
    streams: int
    cpu_s: float
    note: str = ""


@dataclass
class Tally:
    """What the load did."""

    opened: int = 0
    ended_clean: int = 0
    ended_abrupt: int = 0
    chunks: int = 0
    sent: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    open_s: list[float] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)

    def error(self, key: str, detail: str) -> None:
        self.errors[key] += 1
        self.examples.setdefault(key, detail[:200])


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (with --workers: the supervisor and its workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    return [pid, *(p for c in children for p in tree(c))]


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` and its descendants, in KiB."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid` and its descendants, in seconds."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    """Open file descriptors of `pid` and its descendants."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{p}/fd"))
    return total


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t seconds, value) points, per minute; None with < 2 points."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    if den == 0:
        return None
    return 60.0 * sum((t - mt) * (v - mv) for t, v in points) / den


def start_gateway(streams: int, workers: int = 1) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """``mediastream serve`` on free loopback ports, limits raised for the soak."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mediastream.cli",
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--ws-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
            "--max-streams",
            str(streams + 50),
            "--max-streams-per-target",
            str(streams),
            "--drain-timeout-s",
            "2",
            "--workers",
            str(workers),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise RuntimeError(f"gateway exited with {process.returncode} before it was ready")
    ready: dict[str, Any] = json.loads(line)
    return process, ready


def stop_gateway(process: subprocess.Popen[str]) -> int:
    """SIGTERM, then SIGKILL after 20 s; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


async def active_streams(metrics_address: str) -> int:
    """Streams the gateway holds (every worker's), from its metrics."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{metrics_address}/metrics", timeout=aiohttp.ClientTimeout(5)) as r,
    ):
        text = await r.text()
    return round(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("mediastream_streams_active{")
        )
    )


class Soak:
    """The load: `streams` slots that open, hold and end streams until the deadline."""

    def __init__(self, grpc_address: str, demo: dict[str, str], streams: int, seed: int) -> None:
        self.grpc_address = grpc_address
        self.demo = demo
        self.streams = streams
        self.tally = Tally()
        self.random = random.Random(seed)
        self.live = 0

    def _target(self, two_way: bool) -> dict[str, str]:
        if two_way:
            return {"call_id": self.demo["echo_call"]}
        name = self.random.choice(["tone_call", "dtmf_call", "echo_call", "conference"])
        key = "conference_id" if name == "conference" else "call_id"
        return {key: self.demo[name]}

    async def _one(self, client: MediaStreamClient, slot: int, deadline: float) -> None:
        rnd = self.random
        two_way = rnd.random() < 0.4
        transport = list(Transport)[slot % len(Transport)]
        fmt = rnd.choice([AudioFormat.ULAW, AudioFormat.SLIN])
        hold = min(rnd.uniform(2.0, 20.0), max(0.5, deadline - time.monotonic()))
        abrupt = rnd.random() < 0.25
        kwargs: dict[str, Any] = {
            **self._target(two_way),
            "format": fmt,
            "chunk_ms": 100,
            "transport": transport,
        }
        self.tally.opened += 1
        self.live += 1
        asked = time.monotonic()
        started = False
        try:
            if two_way:
                async with client.stream(**kwargs) as duplex:
                    started = True
                    self.tally.open_s.append(time.monotonic() - asked)
                    # 100 ms of silence in the stream's format.
                    chunk = (b"\x00\x00" if fmt is AudioFormat.SLIN else b"\xff") * 800

                    async def read() -> None:
                        async for _ in duplex.audio():
                            self.tally.chunks += 1

                    reader = asyncio.create_task(read())
                    end = time.monotonic() + hold
                    while time.monotonic() < end:
                        await duplex.send(chunk)
                        self.tally.sent += 1
                        await asyncio.sleep(0.1)
                    if abrupt:
                        reader.cancel()
                    else:
                        await duplex.done_sending()
                        async with asyncio.timeout(10):
                            with contextlib.suppress(asyncio.CancelledError):
                                await reader
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
            else:
                async with client.listen(**kwargs) as listen:
                    started = True
                    self.tally.open_s.append(time.monotonic() - asked)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(hold):
                            async for _ in listen.audio():
                                self.tally.chunks += 1
            if abrupt:
                self.tally.ended_abrupt += 1
            else:
                self.tally.ended_clean += 1
        except RPCError as exc:
            phase = "stream" if started else "open"
            self.tally.error(f"{exc.code.name}/{exc.reason or '-'} ({phase})", str(exc))
        except grpc.aio.AioRpcError as exc:
            self.tally.error(exc.code().name, str(exc.details()))
        except TimeoutError:
            self.tally.error("DRIVER_TIMEOUT", "two-way stream did not stop within 10 s")
        finally:
            self.live -= 1

    async def _slot(self, client: MediaStreamClient, slot: int, deadline: float) -> None:
        await asyncio.sleep(slot / OPEN_RATE)
        while time.monotonic() < deadline:
            await self._one(client, slot, deadline)

    async def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        n_clients = (self.streams + CLIENTS_PER_CHANNEL - 1) // CLIENTS_PER_CHANNEL
        clients = [MediaStreamClient(self.grpc_address) for _ in range(n_clients)]
        for c in clients:
            await c.__aenter__()
        try:
            # The slots stop by themselves at the deadline; the timeout only guards a hang.
            async with asyncio.timeout(seconds + 45):
                await asyncio.gather(
                    *(
                        self._slot(clients[i // CLIENTS_PER_CHANNEL], i, deadline)
                        for i in range(self.streams)
                    )
                )
        finally:
            for c in clients:
                await c.__aexit__(None, None, None)


def fmt_sample(s: Sample, samples: list[Sample]) -> str:
    start = samples[0]
    prev = samples[-2] if len(samples) > 1 else s
    cores = (s.cpu_s - prev.cpu_s) / (s.t - prev.t) if s.t > prev.t else 0.0
    rss = s.rss_kib / 1024
    return (
        f"t={s.t:7.1f}s  rss={rss:8.1f} MiB ({rss - start.rss_kib / 1024:+7.1f})"
        f"  fds={s.fds:5d} ({s.fds - start.fds:+5d})  streams={s.streams:4d}"
        f"  cpu={cores:4.2f} cores  {s.note}"
    )


async def main_async(args: argparse.Namespace) -> int:
    seconds = args.minutes * 60.0
    process, ready = start_gateway(args.streams, args.workers)
    pid = process.pid
    samples: list[Sample] = []
    t0 = time.monotonic()
    started = time.time()

    async def sample(note: str = "") -> Sample:
        s = Sample(
            round(time.monotonic() - t0, 1),
            rss_kib(pid),
            open_fds(pid),
            await active_streams(ready["metrics"]),
            round(cpu_seconds(pid), 2),
            note,
        )
        samples.append(s)
        print(fmt_sample(s, samples), flush=True)
        return s

    print(
        f"soak: {args.streams} streams with churn for {seconds:.0f} s against gateway pid {pid} "
        f"(gRPC {ready['grpc']}, embedded emulator)",
        flush=True,
    )
    soak = Soak(ready["grpc"], ready["demo"], args.streams, args.seed)
    code = 1
    try:
        await sample("start (idle)")
        load = asyncio.create_task(soak.run(seconds))
        # Ctrl-C or SIGTERM ends the load early; the drain and the figures still follow.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, load.cancel)
        next_at = args.interval
        while not load.done():
            await asyncio.wait({load}, timeout=max(0.0, t0 + next_at - time.monotonic()))
            if not load.done():
                await sample(f"live {soak.live}, opened {soak.tally.opened}")
                next_at += args.interval
        interrupted = load.cancelled()
        if not interrupted:
            load.result()
        await sample("load interrupted" if interrupted else "load stopped")
        # Every stream must end and release what it held.
        for _ in range(100):
            if await active_streams(ready["metrics"]) == 0:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        end = await sample("drained")
        # Idle keep-alive connections (ARI's HTTP pool, 15 s) close by themselves: what
        # is still open after that is what the churn left behind.
        await asyncio.sleep(args.settle)
        end = await sample(f"settled ({args.settle:.0f} s idle)")
        code = 0 if end.streams == 0 else 1
    finally:
        exit_code = stop_gateway(process)
    steady = [s for s in samples if s.note.startswith("live")]
    steady_points = steady[1:] if len(steady) >= 3 else steady
    rss_slope = slope_per_minute([(s.t, s.rss_kib / 1024) for s in steady_points])
    fd_slope = slope_per_minute([(s.t, float(s.fds)) for s in steady_points])
    start, end_s = samples[0], samples[-1]
    t = soak.tally
    print()
    print(f"streams opened {t.opened}, ended clean {t.ended_clean}, abrupt {t.ended_abrupt}")
    print(f"chunks received {t.chunks}, sent {t.sent}; errors {dict(t.errors) or 'none'}")
    for key, example in t.examples.items():
        print(f"  e.g. {key}: {example}")
    if t.open_s:
        opens = sorted(t.open_s)
        p50, p99 = opens[len(opens) // 2], opens[min(len(opens) - 1, int(len(opens) * 0.99))]
        print(f"time to started: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    if rss_slope is not None and fd_slope is not None:
        print(
            f"slope under load ({len(steady_points)} samples after ramp-up): "
            f"rss {rss_slope:+.2f} MiB/min, fds {fd_slope:+.2f}/min"
        )
    print(
        f"idle before vs after: rss {start.rss_kib / 1024:.1f} -> {end_s.rss_kib / 1024:.1f} MiB, "
        f"fds {start.fds} -> {end_s.fds}; streams left {end_s.streams}; "
        f"gateway exit code {exit_code}"
    )
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "minutes": args.minutes,
        "streams": args.streams,
        "samples": [asdict(s) for s in samples],
        "rss_slope_mib_per_min": rss_slope,
        "fd_slope_per_min": fd_slope,
        "tally": {**asdict(t), "errors": dict(t.errors), "open_s": None},
        "open_s_p50": sorted(t.open_s)[len(t.open_s) // 2] if t.open_s else None,
        "gateway_exit_code": exit_code,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"written {args.json}")
    return code if exit_code == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    parser.add_argument("--streams", type=int, default=200, help="concurrent streams (default 200)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--quick", action="store_true", help="60 s, 50 streams, samples every 15 s")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the churn")
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    parser.add_argument(
        "--settle", type=float, default=20.0, help="idle seconds before the last sample"
    )
    parser.add_argument("--json", default=str(OUT / "soak.json"), help="where to write figures")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.interval = 1.0, 15.0
        if args.streams == 200:
            args.streams = 50
    if args.minutes <= 0 or args.streams < 1 or args.interval <= 0:
        parser.error("--minutes, --streams and --interval must be positive")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
