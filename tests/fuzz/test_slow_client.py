"""A client that reads at half speed, beside clients that read at full speed.

The gateway keeps what it produced for a client in a ring of ``replay_ms`` of chunks
(`DownlinkBuffer`). A client that reads slower than real time first fills the transport
between the ring and its application (HTTP/2 flow-control windows, socket buffers); once
that is full the writer's send blocks, the ring overtakes the reader, and the oldest chunks
are skipped: dropped, counted in ``mediastream_frames_total{direction="from_asterisk",
outcome="dropped"}`` (in 20 ms frames) as it happens, and the client goes on with the newest
audio. Nobody else notices.

To get there in seconds the tests shrink the ring to 1 s (the default 5 s only takes longer)
and keep the client's own transport small: a gRPC channel without BDP probing and with a
4 KiB stream window; a WebSocket client with a 2 KiB receive buffer that parses a frame only
when it consumes it. (With gRPC's default channel options the client's transport raises its
window by BDP probing and holds the backlog itself, in the client's memory: the gateway then
holds nothing for it and drops nothing, and the client falls further behind. aiohttp's
client also parses ahead into a queue of its own.)

How far behind a slow reader ends up: the ring, plus what the transport holds drained at
the reader's pace (half of real time). Measured with slin16: ~0.3 s over gRPC with that
window, ~2.5 s over the WebSocket (the gateway's socket send buffer, 16 KiB, doubled by
Linux, and its write buffers). A reader that never skipped would be half of the elapsed
time behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import gc
import itertools
import os
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
import grpc
import pytest

from mediastream import metrics
from mediastream.core.stream import Chunk
from mediastream.emulator import TONE_CALL_ID
from mediastream.shim.server import SEND_BUFFER_BYTES
from mediastream.streams import Stream
from mediastream_client import AudioFormat, MediaStreamClient
from tests.harness import Harness

REPLAY_MS = 1000
SLIN16_BYTES_PER_MS = 32
LATE_S = 2.0
"""The last seconds of the slow read, where how far behind the reader is gets checked."""

SLOW_CHANNEL_OPTIONS = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 4096)]
GRPC_SLOW_FOR_S = 10.0
GRPC_TRANSPORT_BYTES = 24 * 1024
"""What gRPC may hold between the ring and a slow reader (measured ~5 kB with that window)."""

SMALL_RECEIVE_BUFFER = 2048
WEBSOCKET_SLOW_FOR_S = 14.0
WEBSOCKET_TRANSPORT_BYTES = 64 * 1024
"""What the WebSocket path may hold between the ring and a slow reader (measured ~41 kB)."""


def frames_dropped() -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mediastream_frames_total", {"direction": "from_asterisk", "outcome": "dropped"}
    )
    return value or 0.0


def chunks_alive() -> int:
    """Audio chunks alive in this process: the gateway's rings and what its writers hold."""
    return sum(1 for o in gc.get_objects() if isinstance(o, Chunk))


def shrink_the_ring(harness: Harness) -> None:
    gc.collect()  # what earlier tests left is not counted in chunks_alive()
    streams = harness.gateway.streams
    streams.limits = dataclasses.replace(streams.limits, replay_ms=REPLAY_MS)


def new_stream(harness: Harness, call_id: str, known: set[str]) -> Stream:
    """The one stream on `call_id` the gateway holds that is not in `known`."""
    found = [
        s
        for s in harness.gateway.streams.streams.values()
        if s.spec.target.id == call_id and s.id not in known
    ]
    assert len(found) == 1, found
    return found[0]


@dataclasses.dataclass
class Reading:
    """What one client received: sequence numbers, when, and how far behind the newest."""

    chunk_ms: int
    stream: Stream | None = None
    sequence: list[int] = dataclasses.field(default_factory=list)
    arrivals: list[float] = dataclasses.field(default_factory=list)
    behind_ms: list[int] = dataclasses.field(default_factory=list)

    @property
    def produced(self) -> int:
        """Chunks the gateway made for this client so far."""
        assert self.stream is not None
        return self.stream._buffer.produced

    def note(self, sequence_number: int) -> None:
        self.sequence.append(sequence_number)
        self.arrivals.append(time.monotonic())
        # Audio the gateway made after this chunk: all that is buffered on the way.
        self.behind_ms.append((self.produced - 1 - sequence_number) * self.chunk_ms)

    def behind_since(self, t: float) -> list[int]:
        return [b for b, a in zip(self.behind_ms, self.arrivals, strict=True) if a >= t]

    def skipped(self) -> int:
        return sum(b - a - 1 for a, b in itertools.pairwise(self.sequence))

    def summary(self) -> str:
        return (
            f"{len(self.sequence)} chunks, {self.skipped()} skipped, "
            f"at most {max(self.behind_ms)} ms behind"
        )


@contextlib.asynccontextmanager
async def _running(reader: Coroutine[Any, Any, None], opened: asyncio.Event) -> AsyncIterator[None]:
    task = asyncio.create_task(reader)
    waiting = asyncio.create_task(opened.wait())
    try:
        await asyncio.wait({task, waiting}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert opened.is_set(), f"bystander did not start: {task}"
        yield
        assert not task.done(), f"bystander ended: {task}"
    finally:
        for t in (waiting, task):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


@contextlib.asynccontextmanager
async def full_speed_grpc(harness: Harness, call_id: str) -> AsyncIterator[Reading]:
    """A bystander reading `call_id` over gRPC as fast as it comes, during the block."""
    reading = Reading(20)
    known = set(harness.gateway.streams.streams)
    opened = asyncio.Event()

    async def read() -> None:
        async with (
            harness.client() as client,
            client.listen(call_id=call_id, format=AudioFormat.SLIN16) as stream,
        ):
            reading.stream = new_stream(harness, call_id, known)
            opened.set()
            async for chunk in stream.audio():
                reading.note(chunk.sequence_number)

    async with _running(read(), opened):
        yield reading


@contextlib.asynccontextmanager
async def full_speed_websocket(harness: Harness, call_id: str) -> AsyncIterator[Reading]:
    """A bystander reading `call_id` over the WebSocket shim (aiohttp) at full speed."""
    reading = Reading(20)
    known = set(harness.gateway.streams.streams)
    opened = asyncio.Event()
    url = f"http://{harness.gateway.shim.address}/v1.0/calls/{call_id}/media_stream"

    async def read() -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, params={"encapsulation": "rtp", "format": "slin16"}) as ws,
        ):
            reading.stream = new_stream(harness, call_id, known)
            opened.set()
            async for msg in ws:
                assert msg.type is aiohttp.WSMsgType.BINARY, msg
                # VoIPBIN's RTP numbers the packets from 1.
                reading.note(struct.unpack_from("!H", msg.data, 2)[0] - 1)

    async with _running(read(), opened):
        yield reading


class SlowWebSocket:
    """A WebSocket client that takes a frame off its socket only when it consumes it.

    The socket's receive buffer is small and set before connecting, and the stream reader
    stops reading the socket at twice that: what the client has not consumed stays on the
    gateway's side.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @property
    def port(self) -> int:
        port: int = self._writer.get_extra_info("sockname")[1]
        return port

    @classmethod
    async def connect(cls, address: str, path: str) -> SlowWebSocket:
        host, _, port = address.rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RECEIVE_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=SMALL_RECEIVE_BUFFER)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        return cls(reader, writer)

    async def receive(self) -> tuple[int, bytes]:
        """The next data frame (opcode, payload); pings are answered on the way."""
        while True:
            b0, b1 = await self._reader.readexactly(2)
            size = b1 & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self._reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self._reader.readexactly(8))
            payload = await self._reader.readexactly(size)
            opcode = b0 & 0x0F
            if opcode == 0x9:
                self._send(0xA, payload)
                continue
            return opcode, payload

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError):
            self._send(0x8, struct.pack("!H", 1000))
            self._writer.close()
            await self._writer.wait_closed()


def assert_unharmed(reading: Reading, made: int, start: float, end: float, name: str) -> None:
    """Every chunk in order, none missing, as fast as they were made, never far behind.

    Compared with the chunks its own stream made meanwhile (`made`), not with the clock: on
    a loaded machine the emulator itself makes audio slower than real time.
    """
    seq = reading.sequence
    assert seq, f"{name} got nothing"
    assert seq == list(range(seq[0], seq[0] + len(seq))), f"{name}: a gap or reorder"
    got = sum(1 for a in reading.arrivals if start <= a <= end)
    assert got >= made - 10, f"{name}: {got} of {made} chunks"
    behind = sorted(reading.behind_since(start))
    p95 = behind[int(len(behind) * 0.95)]
    assert p95 <= 400, f"{name}: 95th percentile {p95} ms behind"


def assert_skipped_to_the_newest(
    slow: Reading, dropped_frames: float, ahead: int, slow_for_s: float, transport_bytes: int
) -> None:
    """The slow reader skipped forward, stayed within the bound, and each skip was counted.

    Args:
        ahead: Chunks the gateway had made after the last one the reader got, when
            `dropped_frames` was read.
    """
    seq = slow.sequence
    assert all(b > a for a, b in itertools.pairwise(seq)), "sequence went backwards"
    skipped = slow.skipped()
    assert skipped > 0, f"a client reading at half speed lost nothing: {slow.summary()}"
    # Counted as the ring overtakes the reader: also skips the reader has not reached yet.
    frames_per_chunk = slow.chunk_ms // 20
    assert skipped * frames_per_chunk <= dropped_frames <= (skipped + ahead) * frames_per_chunk
    # Bounded: the ring, plus the transport drained at the pace the reader really read
    # (slower than half speed on a loaded machine), however long it reads slowly.
    end = slow.arrivals[0] + slow_for_s
    late = [i for i, a in enumerate(slow.arrivals) if a >= end - LATE_S]
    assert len(late) >= 2, "nothing received at the end"
    span = slow.arrivals[late[-1]] - slow.arrivals[late[0]]
    read_rate = (len(late) - 1) * slow.chunk_ms * SLIN16_BYTES_PER_MS / span  # bytes/s
    bound_ms = REPLAY_MS + 1000 * transport_bytes / read_rate + 300
    worst = max(slow.behind_ms[i] for i in late)
    assert worst <= bound_ms, f"{worst} ms behind, bound {bound_ms:.0f}: {slow.summary()}"


def assert_bounded(alive: list[int], rings: int) -> None:
    """The audio held in the process is the streams' rings, however far behind one reads."""
    steady = alive[2:]
    assert steady and max(steady) - min(steady) <= 10, alive
    assert max(alive) <= rings + 10, alive  # and a chunk in each writer's hands


@pytest.mark.parametrize("chunk_ms", [20, 100])
async def test_a_grpc_client_reading_at_half_speed_gets_the_newest_audio_and_harms_nobody(
    harness: Harness, chunk_ms: int
) -> None:
    shrink_the_ring(harness)
    other_call = harness.emulator.add_call("tone")
    dropped_before = frames_dropped()
    slow = Reading(chunk_ms)
    alive: list[int] = []
    channel = grpc.aio.insecure_channel(harness.grpc, options=SLOW_CHANNEL_OPTIONS)
    try:
        async with (
            full_speed_grpc(harness, TONE_CALL_ID) as same_call,
            full_speed_grpc(harness, other_call) as other,
            MediaStreamClient(harness.grpc, channel=channel) as client,
            client.listen(
                call_id=TONE_CALL_ID, format=AudioFormat.SLIN16, chunk_ms=chunk_ms
            ) as stream,
        ):
            assert stream.info is not None
            slow.stream = harness.gateway.streams.streams[stream.info.stream_id]
            ring = slow.stream._buffer.capacity
            assert ring == REPLAY_MS // chunk_ms
            start = next_sample = time.monotonic()
            before = same_call.produced, other.produced
            async for chunk in stream.audio():
                assert len(chunk.data) == chunk_ms * SLIN16_BYTES_PER_MS
                slow.note(chunk.sequence_number)
                if time.monotonic() >= next_sample:
                    alive.append(chunks_alive())
                    next_sample += 1.0
                if time.monotonic() - start >= GRPC_SLOW_FOR_S:
                    break
                await asyncio.sleep(2 * chunk_ms / 1000)  # half speed
            end = time.monotonic()
            made = same_call.produced - before[0], other.produced - before[1]
            dropped = frames_dropped() - dropped_before
            ahead = slow.produced - 1 - slow.sequence[-1]
            print(
                f"\ngRPC, {chunk_ms} ms chunks, ring {ring}: slow reader {slow.summary()} "
                f"of {slow.produced} made in {end - start:.1f} s; {dropped:.0f} frames counted "
                f"dropped; chunks alive {alive}; bystanders {same_call.summary()} / "
                f"{other.summary()}"
            )
            assert slow.stream.dropped_chunks * chunk_ms // 20 == dropped
            assert_skipped_to_the_newest(
                slow, dropped, ahead, GRPC_SLOW_FOR_S, GRPC_TRANSPORT_BYTES
            )
            assert_bounded(alive, ring + 2 * REPLAY_MS // 20)
            assert_unharmed(same_call, made[0], start, end, "bystander on the same call")
            assert_unharmed(other, made[1], start, end, "bystander on another call")
    finally:
        await channel.close()
    assert await harness.leftovers() == []


async def test_a_websocket_client_reading_at_half_speed_gets_the_newest_audio_and_harms_nobody(
    harness: Harness,
) -> None:
    shrink_the_ring(harness)
    other_call = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    dropped_before = frames_dropped()
    slow = Reading(20)
    alive: list[int] = []
    buffered: list[int] = []
    async with (
        full_speed_grpc(harness, TONE_CALL_ID) as same_call,
        full_speed_websocket(harness, other_call) as other,
    ):
        known = set(harness.gateway.streams.streams)
        ws = await SlowWebSocket.connect(
            harness.gateway.shim.address,
            f"/v1.0/calls/{TONE_CALL_ID}/media_stream?encapsulation=rtp&format=slin16",
        )
        try:
            slow.stream = new_stream(harness, TONE_CALL_ID, known)
            # The gateway's end of the slow client's connection.
            (transport,) = [
                t
                for w in harness.gateway.shim._sockets
                if (t := w._req.transport) is not None  # type: ignore[union-attr]
                and t.get_extra_info("peername")[1] == ws.port
            ]
            kernel = transport.get_extra_info("socket").getsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF
            )
            assert kernel <= 2 * SEND_BUFFER_BYTES
            start = next_sample = time.monotonic()
            before = same_call.produced, other.produced
            while time.monotonic() - start < WEBSOCKET_SLOW_FOR_S:
                opcode, data = await ws.receive()
                assert opcode == 0x2 and len(data) == 12 + 20 * SLIN16_BYTES_PER_MS
                slow.note(struct.unpack_from("!H", data, 2)[0] - 1)
                buffered.append(transport.get_write_buffer_size())
                if time.monotonic() >= next_sample:
                    alive.append(chunks_alive())
                    next_sample += 1.0
                await asyncio.sleep(2 * 20 / 1000)  # half speed
            end = time.monotonic()
            made = same_call.produced - before[0], other.produced - before[1]
            dropped = frames_dropped() - dropped_before
            ahead = slow.produced - 1 - slow.sequence[-1]
            print(
                f"\nWebSocket: slow reader {slow.summary()} of {slow.produced} made in "
                f"{end - start:.1f} s; {dropped:.0f} frames counted dropped; socket send "
                f"buffer {kernel} B, write buffer at most {max(buffered)} B; chunks alive "
                f"{alive}; bystanders {same_call.summary()} / {other.summary()}"
            )
            assert slow.stream.dropped_chunks == dropped
            assert_skipped_to_the_newest(
                slow, dropped, ahead, WEBSOCKET_SLOW_FOR_S, WEBSOCKET_TRANSPORT_BYTES
            )
            # The event loop's buffer: its high-water mark plus what aiohttp writes unchecked.
            assert max(buffered) <= SEND_BUFFER_BYTES + 2 * 700
            assert_bounded(alive, 3 * REPLAY_MS // 20)
            assert_unharmed(same_call, made[0], start, end, "gRPC bystander, same call")
            assert_unharmed(other, made[1], start, end, "WebSocket bystander, other call")
        finally:
            await ws.close()
    assert await harness.leftovers() == []


async def test_a_grpc_client_that_stops_reading_has_its_drops_counted_while_it_stalls(
    harness: Harness,
) -> None:
    """Counted as the ring overtakes the reader, not when (or if) the client reads again."""
    shrink_the_ring(harness)
    channel = grpc.aio.insecure_channel(harness.grpc, options=SLOW_CHANNEL_OPTIONS)
    try:
        async with (
            MediaStreamClient(harness.grpc, channel=channel) as client,
            client.listen(call_id=TONE_CALL_ID, format=AudioFormat.SLIN16) as stream,
        ):
            assert stream.info is not None
            server_side = harness.gateway.streams.streams[stream.info.stream_id]
            audio = aiter(stream.audio())
            for _ in range(10):
                await anext(audio)
            before, made = frames_dropped(), server_side._buffer.produced
            await asyncio.sleep(4.0)  # reads nothing
            dropped = frames_dropped() - before
            made = server_side._buffer.produced - made
            print(f"\nstalled 4 s: {made} chunks made, {dropped:.0f} frames counted dropped")
            # All but the ring and what the transport took (24 KiB: under 40 chunks).
            assert dropped >= made - REPLAY_MS // 20 - 40 > 0
            assert dropped == server_side.dropped_chunks
    finally:
        await channel.close()
    assert await harness.leftovers() == []
