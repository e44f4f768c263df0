"""Worker processes: one gateway per core behind the same ports.

One Python process tops out at one core, and the gRPC message cost alone is
tens of microseconds. `serve --workers N` therefore starts N complete gateway
processes. They share the public gRPC and WebSocket ports (SO_REUSEPORT: the
kernel spreads connections over them) and each has, of its own:

* a Stasis app (``<ari_app>-w<i>``), so that Asterisk sends each worker the
  events of its channels and the start-up sweep of one never touches another's;
* its media sockets (RTP ports, its AudioSocket and WebSocket-channel
  listeners), which it names to Asterisk itself, so a stream's externalMedia
  always reaches the worker holding its client;
* a direct gRPC port, advertised in StreamStarted and the resume token, so a
  resume reaches the worker holding the stream (the SDKs go there);
* a column in a shared table of streams per call (`SharedTargetCounts`), so the
  per-call limit holds across workers.

The supervisor (this module) runs the embedded emulator when no Asterisk is
configured, restarts a worker that dies, merges the workers' metrics on the
metrics port (each sample labelled ``worker``), and passes SIGTERM on so that
every worker drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Iterable
from enum import Enum

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from mediastream import metrics
from mediastream.app import WorkerRole
from mediastream.config import ENV_PREFIX, Settings
from mediastream.emulator import Emulator, EmulatorConfig
from mediastream.target_counts import SharedTargetCounts

log = logging.getLogger(__name__)

WORKER_ENV = "MEDIASTREAM_WORKER"
"""Set by the supervisor only: the JSON `WorkerRole` of a worker process."""

_WILDCARDS = ("0.0.0.0", "::", "[::]", "")


def worker_role_from_env(environ: dict[str, str] | os._Environ[str]) -> WorkerRole | None:
    """The role the supervisor gave this process, if it is a worker."""
    raw = environ.get(WORKER_ENV)
    if not raw:
        return None
    data = json.loads(raw)
    return WorkerRole(
        int(data["index"]),
        str(data["direct_listen"]),
        str(data["counts_path"]),
        embedded_asterisk=bool(data.get("embedded_asterisk", False)),
    )


def _bracketed(host: str) -> str:
    """An IPv6 address in brackets, as in ``host:port``; other hosts as they are."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _probe_bind(host: str, port: int) -> int:
    """Bind `host:port` (port 0: any free port) without SO_REUSEPORT; return the port.

    Raises:
        RuntimeError: a listener holds the port.
    """
    bare = host.strip("[]") or "0.0.0.0"
    with socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET) as s:
        # SO_REUSEADDR: connections of an earlier run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bare, port))
        except OSError as exc:
            raise RuntimeError(f"{host}:{port} is in use: {exc.strerror}") from None
        return int(s.getsockname()[1])


def _hold_port(host: str, port: int) -> socket.socket:
    """Check that nobody holds `host:port` (port 0: pick a free one), then hold it.

    The returned socket is bound with SO_REUSEPORT and never listens, so it takes
    no connection: the workers bind beside it, and no other socket can take the
    port meanwhile. A port picked free and let go was taken by an outgoing
    connection's ephemeral port before the worker started and bound it.
    """
    port = _probe_bind(host, port)
    bare = host.strip("[]") or "0.0.0.0"
    held = socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        held.bind((bare, port))
    except OSError as exc:
        held.close()
        raise RuntimeError(f"{host}:{port} is in use: {exc.strerror}") from None
    return held


def _env_value(value: object) -> str:
    return value.value if isinstance(value, Enum) else str(value)


@dataclasses.dataclass
class _Worker:
    index: int
    settings: Settings
    role: WorkerRole
    process: asyncio.subprocess.Process | None = None
    ready: dict[str, object] = dataclasses.field(default_factory=dict)


class Supervisor:
    """Starts, watches and stops the worker processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._emulator: Emulator | None = None
        self._workers: list[_Worker] = []
        self._dir = tempfile.mkdtemp(prefix="mediastream-")
        self._counts_path = os.path.join(self._dir, "streams-per-target")
        self._metrics_runner: web.AppRunner | None = None
        self._stopping = False
        self._held_ports: list[socket.socket] = []
        self._watchers: set[asyncio.Task[None]] = set()

    async def start(self) -> dict[str, object]:
        """Start every worker; return the ready line's fields."""
        s = self.settings
        ari_url = s.ari_url
        if s.embedded:
            self._emulator = Emulator(
                EmulatorConfig(
                    host="127.0.0.1", port=0, username=s.ari_user, password=s.ari_password
                )
            )
            await self._emulator.start()
            ari_url = self._emulator.ari_url
        SharedTargetCounts.create(self._counts_path)
        host, _, port = s.grpc_listen.rpartition(":")
        ws_host, _, ws_port = s.ws_listen.rpartition(":")
        # The workers bind with SO_REUSEPORT, which would let them join another
        # gateway already on these ports: check that nobody holds them, and hold
        # them until the workers are gone.
        shared_port = self._hold(host, int(port))
        ws_listen = f"{ws_host}:{self._hold(ws_host, int(ws_port))}"
        advertise_host = s.advertise_address.rpartition(":")[0] or _bracketed(
            s.media_host if host in _WILDCARDS else host
        )
        direct_ports = [
            self._hold(host, shared_port + 1 + i if int(port) else 0) for i in range(s.workers)
        ]
        for i, direct_port in enumerate(direct_ports):
            settings = dataclasses.replace(
                s,
                ari_url=ari_url,
                ari_app=f"{s.ari_app}-w{i}",
                grpc_listen=f"{host}:{shared_port}",
                ws_listen=ws_listen,
                advertise_address=f"{advertise_host}:{direct_port}",
                audiosocket_port=s.audiosocket_port + i if s.audiosocket_port else 0,
                metrics_listen="127.0.0.1:0" if s.metrics_listen else "",
                workers=1,
            ).validate()  # a derived value out of range fails here, not in a worker
            role = WorkerRole(
                i, f"{host}:{direct_port}", self._counts_path, embedded_asterisk=s.embedded
            )
            self._workers.append(_Worker(i, settings, role))
        await asyncio.gather(*(self._spawn(w) for w in self._workers))
        metrics_address = await self._start_metrics()
        ready: dict[str, object] = {
            "event": "ready",
            "grpc": f"{host}:{shared_port}",
            "ari_url": ari_url,
            "embedded_asterisk": s.embedded,
            "metrics": metrics_address,
            "websocket": ws_listen,
            "workers": [w.settings.advertise_address for w in self._workers],
        }
        return ready

    async def _spawn(self, worker: _Worker) -> None:
        env = dict(os.environ)
        for f in dataclasses.fields(Settings):
            env[ENV_PREFIX + f.name.upper()] = _env_value(getattr(worker.settings, f.name))
        env[WORKER_ENV] = json.dumps(dataclasses.asdict(worker.role))
        env["PYTHONUNBUFFERED"] = "1"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mediastream.cli",
            "serve",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        # Known from the start, so that a stop signals a worker still starting.
        worker.process = process
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line:
            code = await process.wait()
            raise RuntimeError(f"worker {worker.index} exited with {code} before it was ready")
        try:
            worker.ready = json.loads(line)
        except json.JSONDecodeError:
            process.kill()
            raise RuntimeError(f"worker {worker.index} printed no ready line") from None
        log.info("worker %d ready (pid %d)", worker.index, process.pid)
        task = asyncio.create_task(self._watch(worker, process))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self._stopping:
            return
        SharedTargetCounts.clear_worker(self._counts_path, worker.index)
        # Its streams are gone with it; its Stasis app's leftovers are swept by
        # the replacement at start-up, and its column of the counts is cleared.
        log.error(
            "worker %d (pid %d) exited with %s; restarting it", worker.index, process.pid, code
        )
        delay = 1.0
        while not self._stopping:
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn(worker)
                return
            except RuntimeError as exc:
                # E.g. Asterisk unreachable at the moment: a worker refuses to start
                # without it. Keep trying; capacity must come back with Asterisk.
                delay = min(delay * 2, 30.0)
                log.error(
                    "worker %d did not start (%s); retrying in %.0f s", worker.index, exc, delay
                )

    async def _start_metrics(self) -> str:
        s = self.settings
        if not s.metrics_listen:
            return ""
        workers = self._workers

        async def render() -> bytes:
            texts = await asyncio.gather(*(_fetch_metrics(w, s.metrics_token) for w in workers))
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Merged([(w.index, t) for w, t in zip(workers, texts, strict=True)]))
            return generate_latest(registry)

        self._metrics_runner, address = await metrics.serve(
            s.metrics_listen, s.metrics_token, render, self.readiness
        )
        return address

    async def readiness(self) -> str:
        """Ready while any worker is (the shared ports reach whichever the kernel picks)."""
        if self._stopping:
            return "draining"
        answers = await asyncio.gather(*(_fetch_readiness(w) for w in self._workers))
        if any(a == "" for a in answers):
            return ""
        return "; ".join(sorted(set(answers))) or "no worker"

    async def run_until_signal(self) -> None:
        """Serve until SIGINT or SIGTERM, then drain every worker and stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("signal received: draining %d workers", len(self._workers))
        await self.stop()

    def _hold(self, host: str, port: int) -> int:
        held = _hold_port(host, port)
        self._held_ports.append(held)
        return int(held.getsockname()[1])

    async def stop(self) -> None:
        """SIGTERM every worker, wait for their drains, stop the rest."""
        self._stopping = True
        processes = [
            w.process
            for w in self._workers
            if w.process is not None and w.process.returncode is None
        ]
        for p in processes:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = self.settings.drain_timeout_s + 15
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), deadline)
        except TimeoutError:
            for p in processes:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            await asyncio.gather(*(p.wait() for p in processes))
        for task in list(self._watchers):
            task.cancel()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self._emulator is not None:
            await self._emulator.stop()
        for held in self._held_ports:
            held.close()
        with contextlib.suppress(OSError):
            os.unlink(self._counts_path)
            os.rmdir(self._dir)


async def _fetch_readiness(worker: _Worker) -> str:
    """A worker's ``/readyz`` on its own metrics port: "" when ready, else why not."""
    address = worker.ready.get("metrics")
    if not address:
        return "worker not started"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://{address}/readyz", timeout=aiohttp.ClientTimeout(total=2)
            ) as reply,
        ):
            text = (await reply.text()).strip()
            return "" if reply.status == 200 else text.removeprefix("not ready: ")
    except (aiohttp.ClientError, TimeoutError):
        return "worker not answering"


async def _fetch_metrics(worker: _Worker, token: str) -> str:
    address = worker.ready.get("metrics")
    if not address:
        return ""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://{address}/metrics", headers=headers, timeout=aiohttp.ClientTimeout(total=5)
            ) as reply,
        ):
            return await reply.text()
    except (aiohttp.ClientError, TimeoutError):
        log.warning("worker %d did not answer its metrics scrape", worker.index)
        return ""


class _Merged:
    """The workers' metrics as one exposition, each sample labelled with its worker."""

    def __init__(self, texts: list[tuple[int, str]]) -> None:
        self._texts = texts

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for index, text in self._texts:
            for family in text_string_to_metric_families(text):
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    labels = {**sample.labels, "worker": str(index)}
                    into.samples.append(sample._replace(labels=labels))
        return merged.values()
