"""An AudioSocket host of external media, as a user runs one: it reads, and it sends."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from mediastream.core.audiosocket import AudioSocketDecoder, Message, encode_audio

SILENCE_INTERVAL_S = 0.02


async def send_silence(writer: asyncio.StreamWriter) -> None:
    """Send 20 ms of 8 kHz slin silence every 20 ms, as a host with nothing to say does.

    Until a host has sent a message, Asterisk may hold the channel locked in a read and
    write it nothing; the emulator always does (the contract says so at
    EXTERNAL_MEDIA_ENCAPSULATION_AUDIOSOCKET, docs/api.md).
    """
    while not writer.is_closing():
        writer.write(encode_audio(bytes(320)))
        await asyncio.sleep(SILENCE_INTERVAL_S)


class AudioSocketHost:
    """A TCP server Asterisk connects to; its messages arrive on :attr:`messages`.

    Args:
        sends: Send silence every 20 ms while connected (what a host must do); False
            plays a host that only reads.
    """

    def __init__(self, *, sends: bool = True) -> None:
        self.sends = sends
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        """``host:port`` to name as ``external_host``."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def __aenter__(self) -> AudioSocketHost:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        feeder = asyncio.create_task(send_silence(writer)) if self.sends else None
        decoder = AudioSocketDecoder()
        try:
            while data := await reader.read(65536):
                for message in decoder.feed(data):
                    self.messages.put_nowait(message)
        finally:
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            writer.close()
