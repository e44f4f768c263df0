"""Issue 25: every short stream delivers audio, on every transport, against real Asterisk.

On 23.4.1 about 1 AudioSocket stream in 150 delivered nothing: Asterisk's
``audiosocket_read`` blocks, with the channel locked, until the gateway sends a
whole message, and Stasis reads the channel once more right after joining it to
the bridge. Hundreds of short streams, many at once, make that race show; RTP
and the WebSocket channel run the same loop.

Needs a release built by ``scripts/asterisk/build.sh`` (skipped otherwise). This
module starts its own Asterisk per release (private directories, free ports), so
it does not depend on the shared real-Asterisk harness.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from mediastream.app import Gateway
from mediastream.config import Settings
from mediastream_client import AudioChunk, AudioFormat, Direction, MediaStreamClient, Transport

pytestmark = pytest.mark.real_asterisk

RELEASES = ("23.4.1", "22.10.1", "20.20.1")
CACHE = Path(
    os.environ.get("MEDIASTREAM_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mediastream"
)
STREAMS = 300
"""Streams per transport and release: 200 on calls (in, out, both), 100 on conferences."""
AT_ONCE = 25
"""Streams open at the same moment; concurrency makes the race more frequent."""
HOLD_S = 0.5
"""How long each stream is read after it started."""
MIN_CHUNKS = 5
"""Chunks (20 ms) a stream must deliver in HOLD_S: a tenth of real time, generous for a
loaded machine, and far above the zero an empty stream delivers."""
APP = "calls"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"asterisk:asterisk").decode()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RealAsterisk:
    ari_url: str
    conf: Path
    binary: Path

    def stop(self) -> None:
        subprocess.run(
            [str(self.binary), "-C", str(self.conf), "-rx", "core stop now"],
            capture_output=True,
            timeout=30,
        )


def _configure(root: Path, prefix: Path, http_port: int, rtp_start: int) -> Path:
    etc = root / "etc"
    for d in ("etc", "run", "log", "lib", "spool", "db"):
        (root / d).mkdir(parents=True, exist_ok=True)
    files = {
        "asterisk.conf": "\n".join(
            [
                "[directories]",
                f"astetcdir => {etc}",
                f"astmoddir => {prefix}/lib/asterisk/modules",
                f"astvarlibdir => {root}/lib",
                f"astdbdir => {root}/db",
                f"astkeydir => {root}/lib",
                f"astdatadir => {root}/lib",
                f"astagidir => {root}/lib/agi",
                f"astspooldir => {root}/spool",
                f"astrundir => {root}/run",
                f"astlogdir => {root}/log",
                f"astsbindir => {prefix}/sbin",
                "[options]",
                # A Stasis-held call then gives frames in direction `out` too.
                "transmit_silence = yes",
            ]
        ),
        "modules.conf": "[modules]\nautoload = yes\n",
        "http.conf": f"[general]\nenabled = yes\nbindaddr = 127.0.0.1\nbindport = {http_port}\n",
        "ari.conf": "[general]\nenabled = yes\n[asterisk]\ntype = user\nread_only = no\n"
        "password = asterisk\n",
        "rtp.conf": f"[general]\nrtpstart = {rtp_start}\nrtpend = {rtp_start + 1998}\n",
        "logger.conf": "[general]\n[logfiles]\nmessages.log => notice,warning,error\n",
        "extensions.conf": "[default]\nexten => tone,1,Answer()\n same => n,Playtones(440)\n"
        " same => n,Wait(600)\n",
    }
    for name, text in files.items():
        (etc / name).write_text(text + "\n")
    return etc / "asterisk.conf"


@pytest.fixture(scope="module", params=RELEASES)
def real_asterisk(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealAsterisk]:
    release: str = request.param
    prefix = CACHE / "asterisk" / release
    binary = prefix / "sbin" / "asterisk"
    if not (prefix / ".built").exists():
        pytest.skip(f"Asterisk {release} is not built (scripts/asterisk/build.sh {release})")
    # A short path: Asterisk's control socket path must fit in sockaddr_un.
    root = Path(tmp_path_factory.mktemp(f"ast{release.replace('.', '')}"))
    http_port = _free_port()
    # An even port in a range of its own per run (RTP needs even ports).
    rtp_start = 20000 + (os.getpid() * 2000 + http_port) % 40000 // 2 * 2
    conf = _configure(root, prefix, http_port, rtp_start)
    proc = subprocess.Popen(
        [str(binary), "-C", str(conf), "-f"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ast = RealAsterisk(f"http://127.0.0.1:{http_port}/ari", conf, binary)
    try:
        deadline = time.monotonic() + 60  # loading every module takes seconds on a busy machine
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", http_port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"Asterisk {release} exited at start-up")
                time.sleep(0.2)
        else:
            pytest.fail(f"Asterisk {release} did not open ARI within 60 s")
        yield ast
    finally:
        ast.stop()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Targets:
    calls: list[str]
    conferences: list[str]


@pytest.fixture
async def targets(real_asterisk: RealAsterisk) -> AsyncIterator[Targets]:
    """Tone calls held in a Stasis app, and conferences (mixing bridges) each with one."""
    ari = real_asterisk.ari_url
    async with aiohttp.ClientSession(headers=AUTH) as http:
        ws_url = ari.replace("http", "ws", 1)
        for _ in range(100):  # ARI's HTTP server may be up before res_ari is loaded
            try:
                events = await http.ws_connect(f"{ws_url}/events?app={APP}")
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
        else:
            pytest.fail("ARI events did not come up")

        async def drain() -> None:
            async for _ in events:
                pass

        drainer = asyncio.create_task(drain())
        found = Targets([], [])
        try:
            for i in range(2 * (AT_ONCE // 4 + 1)):
                call = str(uuid.uuid4())
                params = {"endpoint": "Local/tone@default", "app": APP, "channelId": call}
                async with http.post(f"{ari}/channels", params=params) as r:
                    assert r.status == 200, await r.text()
                if i % 2:
                    bridge = str(uuid.uuid4())
                    params = {"type": "mixing", "bridgeId": bridge, "name": f"conf-{bridge}"}
                    async with http.post(f"{ari}/bridges", params=params) as r:
                        assert r.status == 200, await r.text()
                    for _ in range(50):  # until the call's ;1 half is in Stasis
                        async with http.post(
                            f"{ari}/bridges/{bridge}/addChannel", params={"channel": call}
                        ) as r:
                            if r.status == 204:
                                break
                        await asyncio.sleep(0.1)
                    found.conferences.append(bridge)
                else:
                    found.calls.append(call)
            await asyncio.sleep(1.0)  # the tone starts ~0.5 s after Answer()
            yield found
        finally:
            for call in found.calls:
                async with http.delete(f"{ari}/channels/{call}"):
                    pass
            for bridge in found.conferences:
                async with http.delete(f"{ari}/bridges/{bridge}"):
                    pass
            drainer.cancel()
            await events.close()


@pytest.fixture
async def gateway(real_asterisk: RealAsterisk) -> AsyncIterator[str]:
    settings = Settings(
        ari_url=real_asterisk.ari_url,
        ari_app=f"gw{uuid.uuid4().hex[:8]}",
        grpc_listen="127.0.0.1:0",
        ws_listen="127.0.0.1:0",
        metrics_listen="",
        max_streams_per_target=AT_ONCE,
        drain_timeout_s=0.5,
    )
    settings.validate()
    gw = Gateway(settings)
    endpoints = await gw.start()
    try:
        yield endpoints.grpc
    finally:
        await gw.stop(grace=0.5)


async def _one(
    client: MediaStreamClient, i: int, transport: Transport, targets: Targets
) -> tuple[int, str, int]:
    """Open stream `i`, read it for HOLD_S, and say how many chunks it delivered."""
    if i % 3 == 2:
        call_id, conference_id = None, targets.conferences[i % len(targets.conferences)]
        direction, what = Direction.BOTH, "conference"
    else:
        calls_before = i - i // 3  # the call streams before this one
        direction = (Direction.IN, Direction.OUT, Direction.BOTH)[calls_before % 3]
        call_id, conference_id = targets.calls[i % len(targets.calls)], None
        what = f"call/{direction.value}"
    chunks = 0
    async with client.listen(
        call_id=call_id,
        conference_id=conference_id,
        format=AudioFormat.SLIN,
        direction=direction,
        transport=transport,
    ) as stream:
        try:
            async with asyncio.timeout(HOLD_S):
                async for event in stream.events():
                    if isinstance(event, AudioChunk):
                        chunks += 1
        except TimeoutError:
            pass
    return i, what, chunks


@pytest.mark.parametrize(
    "transport", [Transport.AUDIOSOCKET, Transport.RTP, Transport.WEBSOCKET], ids=lambda t: t.value
)
async def test_every_short_stream_delivers_audio(
    gateway: str, targets: Targets, transport: Transport
) -> None:
    slots = asyncio.Semaphore(AT_ONCE)
    async with MediaStreamClient(gateway) as client:

        async def run(i: int) -> tuple[int, str, int]:
            async with slots:
                return await _one(client, i, transport, targets)

        results = await asyncio.gather(*(run(i) for i in range(STREAMS)))
    short = [r for r in results if r[2] < MIN_CHUNKS]
    assert not short, (
        f"{len(short)} of {STREAMS} {transport.value} streams delivered fewer than "
        f"{MIN_CHUNKS} chunks in {HOLD_S} s (stream, target, chunks): {short}"
    )
