"""Baseline for the whole-path benchmark: the least a Python asyncio relay can do.

It serves ``StreamMedia`` over grpc.aio and moves the same 20 ms ulaw frames
between the same kinds of sockets as the gateway (RTP/UDP towards the
load generator's Asterisk, one gRPC stream per client), with nothing else: no
transcoding, no replay buffer, no metrics, no events, and pacing by one
``loop.call_at`` per frame. Its CPU per frame is the floor the gateway's cost
is compared with.

Run by ``bench/run.py``; by hand: ``uv run python bench/baseline_relay.py --ari-url URL``.
It prints one JSON ready line ``{"event": "ready", "grpc": "host:port"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import signal
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc

FRAME = 160  # 20 ms of ulaw
PERIOD = 0.020
_RTP = struct.Struct("!BBHII")


class Leg(asyncio.DatagramProtocol):
    """One externalMedia RTP channel: chunks frames in, paces frames out."""

    def __init__(self, chunk_bytes: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.chunk_bytes = chunk_bytes
        self.pending = bytearray()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.ready = asyncio.Event()
        self.out: collections.deque[bytes] = collections.deque()
        self.handle: asyncio.TimerHandle | None = None
        self.next_at = 0.0
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.ssrc = random.getrandbits(32)
        self.input_done = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.pending += memoryview(data)[12:]
        if len(self.pending) >= self.chunk_bytes:
            self.chunks.append(bytes(self.pending))
            self.pending.clear()
            self.ready.set()

    def play(self, data: bytes) -> None:
        for i in range(0, len(data), FRAME):
            self.out.append(data[i : i + FRAME])
        if self.handle is None:
            # Never faster than real time: one frame period after the last one.
            self.next_at = max(self.loop.time(), self.next_at)
            self._tick()

    def _tick(self) -> None:
        self.handle = None
        if not self.out or self.transport is None or self.remote is None:
            return
        frame = self.out.popleft()
        self.transport.sendto(_RTP.pack(0x80, 0, self.seq, self.ts, self.ssrc) + frame, self.remote)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + FRAME) & 0xFFFFFFFF
        self.next_at += PERIOD
        if self.out:
            self.handle = self.loop.call_at(self.next_at, self._tick)
        elif self.input_done:
            self.ready.set()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        if self.transport is not None:
            self.transport.close()


class Relay(pb_grpc.MediaStreamServiceServicer):  # type: ignore[misc]  # untyped generated base
    """StreamMedia and nothing else."""

    def __init__(self, session: aiohttp.ClientSession, ari_url: str) -> None:
        self.session = session
        self.ari = ari_url.rstrip("/")

    async def _ari(self, method: str, path: str, **params: str) -> Any:
        async with self.session.request(method, self.ari + path, params=params) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise RuntimeError(f"ARI {method} {path}: {resp.status} {text}")
            return json.loads(text) if text else None

    async def StreamMedia(
        self, request_iterator: AsyncIterator[pb.StreamMediaRequest], context: Any
    ) -> AsyncIterator[pb.StreamMediaResponse]:
        first = await anext(aiter(request_iterator))
        config = first.config
        chunk_ms = config.chunk_ms or 20
        loop = asyncio.get_running_loop()
        _, leg = await loop.create_datagram_endpoint(
            lambda: Leg(FRAME * (chunk_ms // 20)), local_addr=("127.0.0.1", 0)
        )
        host, port = leg.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
        bridge, snoop, ext = (str(uuid.uuid4()) for _ in range(3))
        made: list[str] = []
        reader: asyncio.Task[None] | None = None
        try:
            await self._ari("POST", "/bridges", type="mixing", bridgeId=bridge)
            made.append(f"/bridges/{bridge}")
            await self._ari(
                "POST", f"/channels/{config.call_id}/snoop",
                spy="both", whisper="both", app="baseline", snoopId=snoop,
            )  # fmt: skip
            made.append(f"/channels/{snoop}")
            channel = await self._ari(
                "POST", "/channels/externalMedia",
                app="baseline", format="ulaw", channelId=ext, encapsulation="rtp",
                transport="udp", external_host=f"{host}:{port}",
            )  # fmt: skip
            made.append(f"/channels/{ext}")
            v = channel["channelvars"]
            leg.remote = (v["UNICASTRTP_LOCAL_ADDRESS"], int(v["UNICASTRTP_LOCAL_PORT"]))
            await self._ari("POST", f"/bridges/{bridge}/addChannel", channel=f"{snoop},{ext}")
            yield pb.StreamMediaResponse(
                started=pb.StreamStarted(
                    stream_id=ext, format=pb.AUDIO_FORMAT_ULAW, sample_rate_hz=8000,
                    frame_bytes=FRAME, chunk_ms=chunk_ms,
                )
            )  # fmt: skip
            reader = asyncio.create_task(self._read(request_iterator, leg))
            seq = 0
            samples = 8 * chunk_ms
            while True:
                while leg.chunks:
                    data = leg.chunks.popleft()
                    audio = pb.AudioChunk(data=data, sequence_number=seq, timestamp=seq * samples)
                    yield pb.StreamMediaResponse(audio=audio)
                    seq += 1
                if leg.input_done and not leg.out:
                    break
                leg.ready.clear()
                await leg.ready.wait()
            yield pb.StreamMediaResponse(
                stopped=pb.StreamStopped(reason=pb.STOP_REASON_CLIENT_DONE, detail="input played")
            )
        finally:
            if reader is not None:
                reader.cancel()
            leg.close()
            for path in reversed(made):
                with contextlib.suppress(RuntimeError, aiohttp.ClientError):
                    await self._ari("DELETE", path)

    @staticmethod
    async def _read(requests: AsyncIterator[pb.StreamMediaRequest], leg: Leg) -> None:
        async for request in requests:
            if request.HasField("audio"):
                leg.play(request.audio.data)
        leg.input_done = True
        leg.ready.set()


async def serve(ari_url: str, listen: str) -> None:
    auth = aiohttp.BasicAuth("asterisk", "asterisk")
    async with aiohttp.ClientSession(auth=auth) as session:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_MediaStreamServiceServicer_to_server(Relay(session, ari_url), server)
        port = server.add_insecure_port(listen)
        await server.start()
        print(json.dumps({"event": "ready", "grpc": f"127.0.0.1:{port}"}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop(1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ari-url", required=True)
    p.add_argument("--grpc-listen", default="127.0.0.1:0")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop (must be installed)")
    args = p.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(serve(args.ari_url, args.grpc_listen))
    else:
        asyncio.run(serve(args.ari_url, args.grpc_listen))


if __name__ == "__main__":
    main()
