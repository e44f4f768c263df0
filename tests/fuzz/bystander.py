"""Helpers for the end-to-end bad-input tests: a bystander stream, metrics, Asterisk's side.

Each of those tests feeds bad input to one stream (or ingress) and checks, besides its own
outcome, that a *bystander*, another live stream on another call, is unharmed: its chunks
keep coming, numbered without a gap, and it ends only when told to.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mediastream import metrics
from mediastream.emulator.model import Channel
from mediastream_client import AudioFormat, MediaStreamClient, RPCError, Transport


def malformed(ingress: str) -> float:
    """The value of ``mediastream_malformed_input_total{ingress=...}``."""
    value = metrics.REGISTRY.get_sample_value(
        "mediastream_malformed_input_total", {"ingress": ingress}
    )
    return value or 0.0


@dataclass
class Listener:
    """A ListenMedia stream read in the background, recording what it gets."""

    sequence: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    error: BaseException | None = None
    task: asyncio.Task[None] | None = None

    def received_since(self, t: float) -> int:
        return sum(1 for a in self.arrivals if a >= t)

    async def flowing(self, chunks: int = 10, timeout: float = 5.0) -> None:
        """Wait until `chunks` more chunks arrived."""
        want = len(self.sequence) + chunks
        async with asyncio.timeout(timeout):
            while len(self.sequence) < want:
                assert self.error is None, f"stream failed: {self.error!r}"
                await asyncio.sleep(0.02)

    def assert_unharmed(self) -> None:
        assert self.error is None, f"bystander failed: {self.error!r}"
        assert self.sequence, "bystander got nothing"
        assert self.sequence == list(range(self.sequence[0], self.sequence[0] + len(self.sequence)))
        assert self.task is not None and not self.task.done(), "bystander ended"


@contextlib.asynccontextmanager
async def listening(
    client: MediaStreamClient,
    call_id: str,
    transport: Transport = Transport.RTP,
    fmt: AudioFormat = AudioFormat.ULAW,
) -> AsyncIterator[Listener]:
    """Listen to `call_id` in the background for the duration of the block."""
    listener = Listener()

    async def read() -> None:
        try:
            async with client.listen(call_id=call_id, format=fmt, transport=transport) as stream:
                async for chunk in stream.audio():
                    listener.sequence.append(chunk.sequence_number)
                    listener.arrivals.append(time.monotonic())
        except RPCError as exc:
            listener.error = exc

    listener.task = asyncio.create_task(read())
    try:
        await listener.flowing(5)
        yield listener
    finally:
        listener.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener.task


def external_media_channel(
    emulator_channels: dict[str, Channel], channel_ids: list[str]
) -> Channel:
    """Asterisk's side of a stream: the externalMedia channel among its channels."""
    for channel_id in channel_ids:
        channel = emulator_channels.get(channel_id)
        if channel is not None and channel.name.startswith(
            ("UnicastRTP/", "AudioSocket/", "WebSocket/")
        ):
            return channel
    raise AssertionError(f"no externalMedia channel among {channel_ids}")
