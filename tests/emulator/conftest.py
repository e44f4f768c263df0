"""Test helpers: a live emulator on loopback, an ARI client, media peers, audio analysis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest

from mediastream.core import audiosocket
from mediastream.core.g711 import ulaw_decode
from mediastream.emulator import Emulator, EmulatorConfig

APP = "mediastream"
Event = dict[str, Any]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    emu = Emulator(EmulatorConfig(port=0))
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
async def ari(emulator: Emulator) -> AsyncIterator[Ari]:
    client = Ari(emulator.ari_url)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


class Ari:
    """A minimal ARI client: REST plus one events websocket for APP."""

    def __init__(self, url: str, app: str = APP) -> None:
        self.url = url
        self.app = app
        self.session = aiohttp.ClientSession(
            headers={"Authorization": aiohttp.encode_basic_auth("asterisk", "asterisk")}
        )
        self.events: list[tuple[float, Event]] = []
        self._new = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ws_url = self.url.replace("http://", "ws://") + f"/events?app={self.app}"
        self._ws = await self.session.ws_connect(ws_url)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append((time.monotonic(), json.loads(msg.data)))
                self._new.set()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        await self.session.close()

    async def request(self, method: str, path: str, **params: str) -> Response:
        async with self.session.request(method, self.url + path, params=params) as r:
            return Response(r.status, r.reason or "", dict(r.headers), await r.text())

    async def ok(self, method: str, path: str, **params: str) -> Any:
        r = await self.request(method, path, **params)
        assert r.status in (200, 201, 204), (method, path, r.status, r.text)
        return r.json

    async def wait_event(
        self, predicate: Callable[[Event], bool], timeout: float = 3.0, since: int = 0
    ) -> Event:
        deadline = time.monotonic() + timeout
        seen = since
        while True:
            for _, event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("event not received")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    async def stasis_start(self, channel_id: str) -> Event:
        return await self.wait_event(
            lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == channel_id
        )

    async def audiosocket_media(self, peer: AudioSocketPeer, fmt: str) -> Any:
        """An AudioSocket externalMedia channel to `peer`, in Stasis."""
        em = await self.ok(
            "POST",
            "/channels/externalMedia",
            app=self.app,
            external_host=peer.address,
            encapsulation="audiosocket",
            transport="tcp",
            format=fmt,
            data=str(uuid.uuid4()),
        )
        await self.stasis_start(em["id"])
        return em

    async def originate(self, exten: str) -> Event:
        call = await self.ok(
            "POST", "/channels", endpoint=f"Local/{exten}@default", app=self.app, formats="ulaw"
        )
        await self.stasis_start(call["id"])
        return call

    def of(self, channel_id: str) -> list[Event]:
        """Events whose channel (or Dial peer) is ``channel_id``."""
        out = []
        for _, e in self.events:
            subject = e.get("channel") or e.get("peer") or {}
            if subject.get("id") == channel_id:
                out.append(e)
        return out


# --- media peers -------------------------------------------------------------------


class UdpPeer(asyncio.DatagramProtocol):
    """The app side of an RTP externalMedia channel."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls) -> UdpPeer:
        loop = asyncio.get_running_loop()
        peer = cls()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: peer, local_addr=("127.0.0.1", 0)
        )
        peer.transport = transport
        return peer

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append((time.monotonic(), data, addr))

    @property
    def address(self) -> str:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class AudioSocketPeer:
    """The app side of an AudioSocket channel: a TCP server that records messages."""

    server: asyncio.Server | None = None
    messages: list[tuple[float, audiosocket.Message]] = field(default_factory=list)
    writer: asyncio.StreamWriter | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(cls) -> AudioSocketPeer:
        peer = cls()
        peer.server = await asyncio.start_server(peer._handle, "127.0.0.1", 0)
        return peer

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        # One message first, as a host must send (docs/api.md): until then the emulator,
        # like Asterisk when its read after the bridge join races, writes nothing.
        writer.write(audiosocket.encode_audio(bytes(320)))
        self.connected.set()
        decoder = audiosocket.AudioSocketDecoder()
        while True:
            data = await reader.read(65536)
            if not data:
                break
            now = time.monotonic()
            self.messages.extend((now, m) for m in decoder.feed(data))
        self.closed.set()

    def audio(self) -> list[tuple[float, bytes]]:
        return [(t, m.payload) for t, m in self.messages if m.kind == audiosocket.Kind.AUDIO]

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.server is not None:
            self.server.close()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def rtp_header(data: bytes) -> dict[str, int]:
    b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
    return {
        "version": b0 >> 6,
        "padding": (b0 >> 5) & 1,
        "extension": (b0 >> 4) & 1,
        "csrc_count": b0 & 15,
        "marker": b1 >> 7,
        "payload_type": b1 & 0x7F,
        "seq": seq,
        "timestamp": ts,
        "ssrc": ssrc,
        "payload_len": len(data) - 12,
    }


# --- audio analysis ----------------------------------------------------------------------


def level(samples: np.ndarray, frequency: float, rate: int) -> float:
    """Amplitude of the ``frequency`` component (Hann-windowed single-bin DFT)."""
    x = samples.astype(np.float64)
    if len(x) == 0:
        return 0.0
    w = np.hanning(len(x))
    n = np.arange(len(x))
    z = np.sum(x * w * np.exp(-2j * np.pi * frequency * n / rate))
    return float(2 * abs(z) / np.sum(w))


def pcm(data: bytes, byteorder: str = "<") -> np.ndarray:
    return np.frombuffer(data, dtype=f"{byteorder}i2").astype(np.int32)


def ulaw(data: bytes) -> np.ndarray:
    return pcm(ulaw_decode(data))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


def sine(
    frequency: float, samples: int, rate: int, amplitude: float = 8000, start: int = 0
) -> bytes:
    n = np.arange(start, start + samples)
    wave = amplitude * np.sin(2 * np.pi * frequency * n / rate)
    return np.rint(wave).astype("<i2").tobytes()


def keys_tree(obj: Any) -> Any:
    """The key structure of a JSON value (dict keys recursively, lists by first item)."""
    if isinstance(obj, dict):
        return {k: keys_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [keys_tree(obj[0])] if obj and isinstance(obj[0], dict | list) else "list"
    return type(obj).__name__
