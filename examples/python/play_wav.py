"""Play a WAV file into a call, at the pace the gateway sets.

A two-way stream: the audio sent is heard on the call. The gateway plays one
20 ms frame every 20 ms and asks the client to hold off (a FlowControl pause)
when about 8 s wait to be played, so the client may send as fast as it likes:
`DuplexStream.send` waits while the gateway has paused it. Then `done_sending`
says nothing more will come, and the gateway ends the stream (Stopped,
CLIENT_DONE) once everything has been played.

    uv run python examples/python/play_wav.py --call CALL_ID prompt.wav

The WAV file must be 16-bit mono at 8 or 16 kHz.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from mediastream_client import DuplexStream, FlowControl, MediaStreamClient, RPCError, Stopped
from mediastream_client.wav import read_wav


async def watch(stream: DuplexStream) -> tuple[Stopped | None, int]:
    """Read the stream's events until it ends; return its Stopped event and the pauses seen.

    Reading is what lets flow control work: `send` learns of a pause from here.
    The call's own audio (AudioChunk events) arrives here too; it is not needed.
    """
    pauses = 0
    async for event in stream.events():
        if isinstance(event, FlowControl) and event.paused:
            pauses += 1
            print(f"gateway: pause ({event.buffered_ms} ms queued)")
        elif isinstance(event, FlowControl):
            print(f"gateway: resume ({event.buffered_ms} ms queued)")
    return stream.stopped, pauses


async def play(server: str, call_id: str, path: str) -> float:
    """Play the WAV file `path` into the call `call_id`; return its duration in seconds."""
    fmt, pcm = read_wav(path)  # SLIN (8 kHz) or SLIN16 (16 kHz) and the samples
    duration = len(pcm) / fmt.sample_width / fmt.sample_rate
    async with (
        MediaStreamClient(server) as client,
        client.stream(call_id=call_id, format=fmt) as stream,
    ):
        assert stream.info is not None
        frame = stream.info.frame_bytes  # bytes in 20 ms
        events = asyncio.create_task(watch(stream))
        started = time.monotonic()
        for i in range(0, len(pcm), frame):
            await stream.send(pcm[i : i + frame])  # waits while the gateway says pause
        await stream.done_sending()  # the stream ends once all of it has been played
        stopped, pauses = await events
        elapsed = time.monotonic() - started
    reason = stopped.reason.value if stopped else "no Stopped event"
    print(
        f"played {path}: {duration:.2f} s of audio in {elapsed:.2f} s "
        f"({pauses} pauses); stopped: {reason}"
    )
    return duration


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the example."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="the gateway's gRPC host:port")
    parser.add_argument("--call", required=True, help="ID of the call to play into")
    parser.add_argument("wav", help="16-bit mono WAV file at 8 or 16 kHz")
    args = parser.parse_args(argv)
    try:
        asyncio.run(play(args.server, args.call, args.wav))
    except RPCError as exc:
        print(f"refused: {exc.code.name} {exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # not a WAV file the gateway can take
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
