"""Listen to a call and write what it hears to a WAV file.

This is the shape of a transcriber: a listen-only stream (the gateway never
plays anything into the call), audio in 100 ms chunks of 16-bit 8 kHz samples
(what most speech recognisers take), each chunk handed on as it arrives.

    uv run python examples/python/listen_to_wav.py --call CALL_ID --seconds 5 out.wav
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from mediastream_client import AudioFormat, MediaStreamClient, RPCError
from mediastream_client.wav import write_wav

CHUNK_MS = 100
"""Chunk size: any multiple of 20 ms up to 200 ms. 100 ms suits a recogniser."""


async def listen(server: str, call_id: str, seconds: float, path: str) -> float:
    """Write `seconds` of the call `call_id` to the WAV file `path`; return the seconds written."""
    fmt = AudioFormat.SLIN  # 16-bit little-endian samples at 8 kHz
    audio = bytearray()
    chunks = 0
    async with (
        MediaStreamClient(server) as client,
        # listen(): a listen-only stream. The gateway confirms it (stream.info)
        # before the context manager returns; a refusal raises RPCError.
        client.listen(call_id=call_id, format=fmt, chunk_ms=CHUNK_MS) as stream,
    ):
        assert stream.info is not None
        print(
            f"listening to {call_id}: stream {stream.info.stream_id}, "
            f"{stream.info.sample_rate} Hz, {stream.info.chunk_ms} ms chunks"
        )
        async for chunk in stream.audio():
            # A transcriber would send chunk.data to its recogniser here.
            audio += chunk.data
            chunks += 1
            if chunks * CHUNK_MS >= seconds * 1000:
                break  # leaving the `async with` ends the stream
    write_wav(path, fmt, bytes(audio))
    written = len(audio) / fmt.sample_width / fmt.sample_rate
    print(f"wrote {path}: {written:.2f} s in {chunks} chunks of {CHUNK_MS} ms")
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the example."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="the gateway's gRPC host:port")
    parser.add_argument("--call", required=True, help="ID of the call to listen to")
    parser.add_argument("--seconds", type=float, default=5.0, help="how much to record")
    parser.add_argument("wav", help="the WAV file to write")
    args = parser.parse_args(argv)
    try:
        asyncio.run(listen(args.server, args.call, args.seconds, args.wav))
    except RPCError as exc:
        # The gateway's refusal: a gRPC code and a stable reason, e.g. NOT_FOUND CALL_NOT_FOUND.
        print(f"refused: {exc.code.name} {exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
