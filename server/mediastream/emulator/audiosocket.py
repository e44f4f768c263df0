"""AudioSocket externalMedia channels (``chan_audiosocket`` + ``res_audiosocket``).

As recorded from Asterisk 23.4.1:

* Asterisk is the TCP client. It connects to ``external_host`` while handling the
  ``POST /channels/externalMedia`` (2 s timeout; a refused connection makes the
  POST fail with 500) and sends ``01 00 10`` + the 16 UUID bytes first.
* Audio goes out as kind 0x10 with the channel's format bytes (160 B of mu-law for
  ``format=ulaw``, 320 B of slin), or 0x12 for slin16.
* Every incoming 0x10 is read as 8 kHz slin whatever the channel format, so mu-law
  sent back comes out as noise. There is no re-pacing: each message is passed on
  as soon as it is read.
* A DTMF digit leaves as kind 0x03 with the ASCII digit, when the digit ends.
* Nothing reaches the app until the app has sent its first message. Asterisk's
  ``audiosocket_read`` does not return before a whole message header has arrived,
  and ``ast_read`` calls it with the channel locked; Stasis reads once more right
  after putting the channel into a bridge, so an app that sends nothing can hold
  the channel locked for good and the bridge never writes a frame to it (measured:
  about 1 connection in 7 on 20.20.1, 1 in 150 on 23.4.1). The emulator makes that
  race certain, so that an app that never sends finds out here, not in production.
* On hangup Asterisk just closes the socket. An incoming ``00 00 00``, a closed
  connection or a message Asterisk does not take (0x01, 0x03, 0xFF, ...) hangs
  up the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid

from mediastream.core import audiosocket
from mediastream.core.formats import AudioFormat
from mediastream.emulator.model import Channel, Frame

__all__ = ["CONNECT_TIMEOUT", "AudioSocketTech"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
"""``MAX_CONNECT_TIMEOUT_MSEC``: how long Asterisk waits for the TCP connection."""

# Every 0x10 is 8 kHz slin whatever the channel's format (so mu-law sent back is noise).
_INCOMING_FORMATS: dict[int, AudioFormat] = {
    audiosocket.Kind.AUDIO: AudioFormat.SLIN,
    audiosocket.Kind.SLIN16: AudioFormat.SLIN16,
}


class AudioSocketTech:
    """The TCP endpoint of an AudioSocket channel."""

    def __init__(
        self,
        channel: Channel,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        call_uuid: uuid.UUID,
    ) -> None:
        """Wrap a connected socket (see :meth:`connect`)."""
        self.channel = channel
        self.call_uuid = call_uuid
        self._reader = reader
        self._writer = writer
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._heard_from_app = False
        """Whether the app has sent anything: until then no frame is written (see above)."""
        self._kind = (
            audiosocket.Kind.SLIN16
            if channel.native_format is AudioFormat.SLIN16
            else audiosocket.Kind.AUDIO
        )

    @staticmethod
    async def connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to the app's AudioSocket server the way Asterisk does.

        Raises:
            OSError: Refused, unreachable, or no answer within 2 s.
        """
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT
            )
        except TimeoutError as exc:
            raise OSError(f"AudioSocket connect to {host}:{port} timed out") from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    def start(self) -> None:
        """Send the UUID message and start reading."""
        self._writer.write(audiosocket.encode_uuid(self.call_uuid))
        self._task = asyncio.get_running_loop().create_task(
            self._read_loop(), name=f"audiosocket-{self.channel.id}"
        )

    # --- ChannelTech --------------------------------------------------------

    def write_frame(self, frame: Frame) -> None:
        """Send one audio message (the channel's format, as is)."""
        # uvloop raises on a write to a closed transport (asyncio only logs it).
        if self._closed or not frame.payload or self._writer.is_closing():
            return
        if not self._heard_from_app:
            return  # the channel is held locked by a read waiting for the app
        for start in range(0, len(frame.payload), audiosocket.MAX_PAYLOAD - 1):
            chunk = frame.payload[start : start + audiosocket.MAX_PAYLOAD - 1]
            self._writer.write(audiosocket.encode(self._kind, chunk))

    def write_dtmf(self, digit: str, duration_ms: int) -> None:
        """Send the digit as kind 0x03 (at the end of the digit)."""
        if self._heard_from_app and not self._closed and not self._writer.is_closing():
            self._writer.write(audiosocket.encode(audiosocket.Kind.DTMF, digit.encode("ascii")))

    def close(self) -> None:
        """Close the connection without a hangup message, as Asterisk does."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        with contextlib.suppress(Exception):
            self._writer.close()

    # --- receiving ------------------------------------------------------------

    async def _read_loop(self) -> None:
        decoder = audiosocket.AudioSocketDecoder()
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                self._heard_from_app = True
                try:
                    messages = decoder.feed(data)
                except audiosocket.AudioSocketError as exc:
                    self._deliver(exc.messages)
                    break
                if not self._deliver(messages):
                    break
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            return
        if not self._closed:
            self.channel.remote_hangup(16)

    def _deliver(self, messages: list[audiosocket.Message]) -> bool:
        """Pass messages on; False when one of them ends the call."""
        for message in messages:
            if self._closed:
                return False
            fmt = _INCOMING_FORMATS.get(message.kind)
            if fmt is not None:
                if len(message.payload) % 2:
                    return False
                self.channel.read(Frame(fmt, message.payload))
            elif message.is_audio:
                continue  # other slin rates: Asterisk would transcode; not emulated
            else:
                # 0x00 hangup, and anything Asterisk does not accept from the app.
                return False
        return True
