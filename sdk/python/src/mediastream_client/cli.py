"""``mediastream-client``: record a call to a WAV file, or play a WAV file into a call."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from mediastream_client.client import DuplexStream, MediaStreamClient
from mediastream_client.errors import RPCError
from mediastream_client.types import AudioFormat
from mediastream_client.wav import level_dbfs, read_wav, write_wav

PLAY_LEAD_S = 1.0
"""How far ahead of real time `play` sends; the server's buffer absorbs it."""


async def record(
    server: str,
    call_id: str | None,
    conference_id: str | None,
    seconds: float,
    fmt: AudioFormat,
    path: str,
) -> bytes:
    """Record `seconds` of a call or conference to a WAV file; return the samples."""
    pcm = bytearray()
    want = int(seconds * fmt.sample_rate) * fmt.sample_width
    async with (
        MediaStreamClient(server) as client,
        client.listen(call_id=call_id, conference_id=conference_id, format=fmt) as stream,
    ):
        async for chunk in stream.audio():
            pcm += chunk.data
            if len(pcm) >= want:
                break
    write_wav(path, fmt, bytes(pcm[:want]))
    return bytes(pcm[:want])


async def play(server: str, call_id: str | None, conference_id: str | None, path: str) -> float:
    """Play a WAV file into a call or conference at real time; return its duration."""
    fmt, pcm = read_wav(path)
    frame = fmt.sample_rate * 20 // 1000 * 2
    async with (
        MediaStreamClient(server) as client,
        client.stream(call_id=call_id, conference_id=conference_id, format=fmt) as stream,
    ):
        drain = asyncio.create_task(_drain(stream))
        start = time.monotonic()
        for i in range(0, len(pcm), frame):
            ahead = i / frame * 0.020 - (time.monotonic() - start)
            if ahead > PLAY_LEAD_S:
                await asyncio.sleep(ahead - PLAY_LEAD_S)
            await stream.send(pcm[i : i + frame])
        await stream.done_sending()
        await drain
    return len(pcm) / 2 / fmt.sample_rate


async def _drain(stream: DuplexStream) -> None:
    async for _ in stream.events():
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mediastream-client``."""
    parser = argparse.ArgumentParser(prog="mediastream-client", description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:50051", help="gateway host:port")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("record", "play"):
        p = sub.add_parser(name)
        target = p.add_mutually_exclusive_group(required=True)
        target.add_argument("--call", dest="call_id")
        target.add_argument("--conference", dest="conference_id")
        p.add_argument("wav")
        if name == "record":
            p.add_argument("--seconds", type=float, default=5.0)
            p.add_argument("--format", choices=["slin", "slin16"], default="slin")
    args = parser.parse_args(argv)
    try:
        if args.command == "record":
            fmt = AudioFormat(args.format)
            pcm = asyncio.run(
                record(args.server, args.call_id, args.conference_id, args.seconds, fmt, args.wav)
            )
            secs = len(pcm) / 2 / fmt.sample_rate
            print(
                f"recorded {args.wav}: {secs:.2f} s at {fmt.sample_rate} Hz, "
                f"level {level_dbfs(pcm):.1f} dBFS"
            )
        else:
            secs = asyncio.run(play(args.server, args.call_id, args.conference_id, args.wav))
            print(f"played {args.wav}: {secs:.2f} s")
    except RPCError as exc:
        print(f"mediastream-client: {exc.code.name}: {exc.message} ({exc.reason})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
