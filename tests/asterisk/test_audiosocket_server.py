"""The gateway's AudioSocket listener, with real TCP connections on loopback."""

from __future__ import annotations

import asyncio
import uuid

from mediastream.asterisk.audiosocket import AudioSocketServer
from mediastream.core import audiosocket


class Sink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.digits: list[str] = []
        self.closed = asyncio.get_running_loop().create_future()

    def on_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def on_dtmf(self, digit: str) -> None:
        self.digits.append(digit)

    def on_transport_closed(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)


async def connect(server: AudioSocketServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.external_host.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def test_routes_by_uuid_and_delivers_audio_and_dtmf() -> None:
    server = AudioSocketServer()
    await server.start("127.0.0.1")
    try:
        key, sink = uuid.uuid4(), Sink()
        connected = server.expect(key, sink)
        reader, writer = await connect(server)
        stream = (
            audiosocket.encode_uuid(key)
            + audiosocket.encode_audio(b"\x01\x00" * 160)
            + audiosocket.encode_dtmf("5")
            + audiosocket.encode_audio(b"\x02\x00" * 160)
        )
        # Split mid-header: routing must not depend on how TCP cuts the stream.
        writer.write(stream[:20])
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(stream[20:])
        transport = await asyncio.wait_for(connected, 2)
        transport.send_frame(b"\x03\x00" * 160)
        assert await reader.readexactly(323) == audiosocket.encode_audio(b"\x03\x00" * 160)
        writer.close()
        assert "closed" in await asyncio.wait_for(sink.closed, 2)
        assert sink.frames == [b"\x01\x00" * 160, b"\x02\x00" * 160]
        assert sink.digits == ["5"]
    finally:
        await server.close()


async def test_unknown_uuid_is_closed_and_counted() -> None:
    server = AudioSocketServer()
    await server.start("127.0.0.1")
    try:
        reader, writer = await connect(server)
        writer.write(audiosocket.encode_uuid(uuid.uuid4()))
        assert await asyncio.wait_for(reader.read(), 2) == b""
        assert server.unknown_connections == 1
    finally:
        await server.close()


async def test_malformed_first_message_is_closed_and_counted() -> None:
    server = AudioSocketServer()
    await server.start("127.0.0.1")
    try:
        reader, writer = await connect(server)
        writer.write(audiosocket.encode_audio(b"\x00\x00" * 160))
        assert await asyncio.wait_for(reader.read(), 2) == b""
        assert server.malformed_connections == 1
    finally:
        await server.close()


async def test_hangup_message_ends_the_stream() -> None:
    server = AudioSocketServer()
    await server.start("127.0.0.1")
    try:
        key, sink = uuid.uuid4(), Sink()
        connected = server.expect(key, sink)
        reader, writer = await connect(server)
        writer.write(audiosocket.encode_uuid(key) + audiosocket.HANGUP)
        await asyncio.wait_for(connected, 2)
        assert await asyncio.wait_for(sink.closed, 2) == "Asterisk sent AudioSocket hangup"
        assert await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        await server.close()


async def test_oversized_declared_length_closes_only_that_connection() -> None:
    server = AudioSocketServer()
    await server.start("127.0.0.1")
    try:
        bad_key, good_key = uuid.uuid4(), uuid.uuid4()
        bad_sink, good_sink = Sink(), Sink()
        bad_conn, good_conn = server.expect(bad_key, bad_sink), server.expect(good_key, good_sink)
        _, bad_writer = await connect(server)
        _, good_writer = await connect(server)
        bad_writer.write(audiosocket.encode_uuid(bad_key) + b"\x10\x00\x00")  # zero-length audio
        good_writer.write(audiosocket.encode_uuid(good_key))
        await asyncio.wait_for(asyncio.gather(bad_conn, good_conn), 2)
        assert "malformed" in await asyncio.wait_for(bad_sink.closed, 2)
        good_writer.write(audiosocket.encode_audio(b"\x07\x00" * 160))
        await asyncio.sleep(0.05)
        assert good_sink.frames == [b"\x07\x00" * 160] and not good_sink.closed.done()
        good_writer.close()
    finally:
        await server.close()
