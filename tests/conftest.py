"""Shared fixtures: a real gateway process on loopback with its embedded Asterisk."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.harness import harness  # noqa: F401 - registers the fixture everywhere

# Property tests check properties, not speed: on a busy machine one example may take
# longer than Hypothesis's 200 ms deadline, or data generation its "too slow" limit,
# and a rerun that is fast reports the test as flaky. Neither is the code's fault.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

DEFAULT_PORTS = {
    50051: "gRPC (grpc_listen)",
    8080: "WebSocket and web page (ws_listen)",
    9464: "metrics (metrics_listen)",
    8088: "Asterisk ARI (the emulator's and Asterisk's default)",
}
"""Well-known ports a gateway or Asterisk run beside the suite (``make run``) holds."""


def hold_default_ports() -> list[socket.socket]:
    """Bind (never listen on) every free port of :data:`DEFAULT_PORTS`, on all addresses.

    While the suite runs, a test that starts anything on a default port fails at
    once with 'address in use', on every machine and every run, just as it would
    beside a running gateway, instead of only when one happens to be running.
    A port something else already holds (``make run``'s gateway) is left to it:
    it guards that port as well. Without SO_REUSEADDR or SO_REUSEPORT, no other
    socket can bind the port on any address; nothing listens, so nothing connects.
    """
    held = []
    for port in DEFAULT_PORTS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            sock.close()  # already taken: by a gateway run beside, which guards it too
        else:
            held.append(sock)
    return held


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_HELD] = hold_default_ports()


def pytest_unconfigure(config: pytest.Config) -> None:
    for sock in config.stash.get(_HELD, []):
        sock.close()


_HELD = pytest.StashKey[list[socket.socket]]()


@dataclass(frozen=True)
class RunningGateway:
    """A `mediastream serve` process and where it listens."""

    process: subprocess.Popen[str]
    grpc: str
    ari_url: str
    demo: dict[str, str]
    metrics: str
    websocket: str
    workers: tuple[str, ...] = ()


def start_gateway(*extra: str, env: dict[str, str] | None = None) -> RunningGateway:
    """Start `mediastream serve` on free ports and wait for its ready line."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mediastream.cli",
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
            "--metrics-listen",
            "127.0.0.1:0",
            "--ws-listen",
            "127.0.0.1:0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(5)
        raise RuntimeError(f"gateway exited with {process.returncode} before it was ready")
    ready: dict[str, Any] = json.loads(line)
    return RunningGateway(
        process,
        ready["grpc"],
        ready["ari_url"],
        ready.get("demo", {}),
        ready["metrics"],
        ready.get("websocket", ""),
        tuple(ready.get("workers", ())),
    )


def stop_gateway(gw: RunningGateway) -> int:
    """SIGTERM the gateway and return its exit code."""
    if gw.process.poll() is None:
        gw.process.send_signal(signal.SIGTERM)
        try:
            gw.process.wait(15)
        except subprocess.TimeoutExpired:
            gw.process.kill()
            gw.process.wait()
    return gw.process.returncode


@pytest.fixture(scope="session")
def gateway() -> Iterator[RunningGateway]:
    gw = start_gateway()
    yield gw
    stop_gateway(gw)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Run async tests on uvloop, as `mediastream serve` runs.

    MEDIASTREAM_TEST_LOOP=asyncio runs them on the default loop instead.
    """
    if os.environ.get("MEDIASTREAM_TEST_LOOP", "uvloop") == "uvloop":
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
    import asyncio

    return {"asyncio": asyncio.new_event_loop}
