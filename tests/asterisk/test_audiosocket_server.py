"""The gateway's AudioSocket listener, with real TCP connections on loopback."""

from __future__ import annotations

import asyncio
import uuid

from mediastream.asterisk.audiosocket import SILENCE, AudioSocketServer
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


async def test_an_idle_connection_gets_silence_every_second_check() -> None:
    # Checks driven by hand: no timer runs by itself.
    server = AudioSocketServer(keep_fed_interval=None)
    await server.start("127.0.0.1")
    try:
        key, sink = uuid.uuid4(), Sink()
        connected = server.expect(key, sink)
        reader, writer = await connect(server)
        writer.write(audiosocket.encode_uuid(key))
        transport = await asyncio.wait_for(connected, 2)
        await asyncio.sleep(0)  # let the connection register for keep-fed checks
        server.keep_fed()
        assert transport.silence_sent == 0  # one idle check: not yet
        server.keep_fed()
        assert transport.silence_sent == 1
        frame = b"\x05\x00" * 160
        transport.send_frame(frame)
        server.keep_fed()  # something was sent since: the count starts again
        assert transport.silence_sent == 1
        server.keep_fed()
        assert transport.silence_sent == 2
        expected = SILENCE + audiosocket.encode_audio(frame) + SILENCE
        assert await asyncio.wait_for(reader.readexactly(len(expected)), 2) == expected
        writer.close()
        await asyncio.wait_for(sink.closed, 2)
        server.keep_fed()  # a closed connection is no longer checked
        assert transport.silence_sent == 2
    finally:
        await server.close()


async def test_asterisk_blocked_in_a_read_is_released_on_a_listen_only_stream() -> None:
    """Issue 25: an emulated Asterisk that, like chan_audiosocket after Stasis joined
    the channel to a bridge, sends no audio until it has read a whole message.

    Before the fix nothing came from the gateway on a listen-only stream, so
    this Asterisk never sent a frame and the stream stayed empty.
    """
    server = AudioSocketServer()  # the real timer: 20 ms checks
    await server.start("127.0.0.1")
    try:
        key, sink = uuid.uuid4(), Sink()
        connected = server.expect(key, sink)
        reader, writer = await connect(server)
        writer.write(audiosocket.encode_uuid(key))
        await asyncio.wait_for(connected, 2)
        # Blocked in audiosocket_read (channel locked): wait for one whole message.
        # Generous bound for a loaded machine; silence is due within 40 ms.
        header = await asyncio.wait_for(reader.readexactly(audiosocket.HEADER_SIZE), 5)
        kind, length = header[0], int.from_bytes(header[1:], "big")
        assert kind == audiosocket.Kind.AUDIO and length == 320
        assert await reader.readexactly(length) == bytes(320)
        # The read returned, the lock is free: the bridge's frame gets through.
        writer.write(audiosocket.encode_audio(b"\x07\x00" * 160))
        for _ in range(200):
            if sink.frames:
                break
            await asyncio.sleep(0.01)
        assert sink.frames == [b"\x07\x00" * 160]
        writer.close()
        await asyncio.wait_for(sink.closed, 2)
    finally:
        await server.close()
