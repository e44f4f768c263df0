"""What an AudioSocket host of external media must do beside reading: send."""

from __future__ import annotations

import asyncio

from mediastream.core.audiosocket import encode_audio

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
